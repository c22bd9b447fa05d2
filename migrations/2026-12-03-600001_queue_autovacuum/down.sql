SET LOCAL ROLE attestor_owner;

ALTER TABLE attestor.rekor_submission_queue RESET (
    autovacuum_vacuum_scale_factor,
    autovacuum_vacuum_threshold,
    autovacuum_vacuum_cost_delay,
    autovacuum_analyze_scale_factor,
    autovacuum_analyze_threshold
);

SET LOCAL ROLE NONE;
