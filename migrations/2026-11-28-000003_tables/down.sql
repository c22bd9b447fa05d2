-- Revert migration 3: drop the eight tables (with their constraints, indexes,
-- triggers and grants), children before parents.

SET LOCAL ROLE attestor_owner;

DROP TABLE attestor.rekor_submission_queue;  -- -> rekor_entries, dsse_envelopes
DROP TABLE attestor.audit_log;
DROP TABLE attestor.verdict_ledger;
DROP TABLE attestor.trust_anchors;
DROP TABLE attestor.spines;                  -- -> sbom_entries
DROP TABLE attestor.sbom_entries;
DROP TABLE attestor.rekor_entries;           -- -> dsse_envelopes
DROP TABLE attestor.dsse_envelopes;

SET LOCAL ROLE NONE;
