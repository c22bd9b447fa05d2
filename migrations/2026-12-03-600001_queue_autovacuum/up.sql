-- Migration 2026-12-03-600001: the queue table is vacuumed by churn, not by
-- its size.
--
-- Every job inserts a row, updates it (claim, completion) and, after its
-- retention, the purge deletes it, so the table turns over its whole
-- content every few minutes while its live row count stays small. The
-- cluster's autovacuum defaults wait for dead rows to reach 20 % of the
-- table plus 50 (`autovacuum_vacuum_scale_factor`) and then throttle the
-- vacuum (`autovacuum_vacuum_cost_delay`). Until a vacuum records the free
-- space of the pages the purge emptied, inserts cannot reuse it and extend
-- the table and its indexes instead; a throttled vacuum that falls behind
-- lets the table grow with the rate, not with the backlog.
--
-- Here a vacuum is due after a fixed number of dead rows, whatever the
-- table's size, and runs unthrottled: a vacuum of a table of this size and
-- shape (a few tens of thousands of live rows) takes milliseconds, and its
-- I/O is small next to the queue's own. Analyze follows the same churn so
-- the claim's plan sees the backlog's current size. How often autovacuum
-- looks at a table at all is the cluster's `autovacuum_naptime` (default one
-- minute); an operator with a higher job rate lowers it there.

SET LOCAL ROLE attestor_owner;

ALTER TABLE attestor.rekor_submission_queue SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 2000
);

SET LOCAL ROLE NONE;
