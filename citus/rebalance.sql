-- Moving shards onto a worker just added (citus_add_node) on a Citus
-- coordinator: the module's step around citus_rebalance_start().
--
-- Runs as a superuser, as the only statement of its call (it commits
-- between its phases: the rebalance runs as a background job that must see
-- them). Citus moves a shard by connecting to the nodes as the table's
-- owner, and no module's <m>_owner may log in (on any node), so:
--
--   1. The modules' distributed tables owned by their <m>_owner are handed
--      to the superuser running this (ALTER TABLE … OWNER TO, which Citus
--      propagates to every shard; the grants go with the table).
--   2. citus_rebalance_start(shard_transfer_mode => 'block_writes') moves
--      shards; this waits for the job (at most 10 minutes, then cancels it).
--   3. Every table handed over goes back to its owner, whether the
--      job finished or not, and a row in public.__attestor_citus_distribution
--      records the run. A job that did not finish then raises, with the
--      message of its failing task.
--
-- Afterwards re-run verify-rls against the coordinator (rule TI026 reads
-- every shard placement, those on the new worker included).

DO $$
DECLARE
    t        record;
    handed   regclass[] := '{}';
    owners   text[] := '{}';
    job      bigint;
    job_state text := 'finished';
    failure  text;
    deadline timestamptz := clock_timestamp() + interval '10 minutes';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')
       OR (SELECT groupid FROM pg_catalog.pg_dist_local_group) <> 0 THEN
        RAISE EXCEPTION 'database % is not a Citus coordinator', current_database();
    END IF;

    FOR t IN
        SELECT d.logicalrelid AS rel, pg_catalog.pg_get_userbyid(c.relowner)::text AS owner
          FROM pg_catalog.pg_dist_partition d
          JOIN pg_catalog.pg_class c ON c.oid = d.logicalrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE pg_catalog.pg_get_userbyid(n.nspowner) = n.nspname || '_owner'
           AND c.relowner = n.nspowner
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_namespace a
                        WHERE a.nspname = n.nspname || '_app' AND a.nspowner = n.nspowner)
         ORDER BY n.nspname, c.relname
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO %I', t.rel, current_user);
        handed := handed || t.rel;
        owners := owners || t.owner;
    END LOOP;
    COMMIT;

    job := pg_catalog.citus_rebalance_start(shard_transfer_mode => 'block_writes');
    COMMIT;
    IF job IS NOT NULL THEN
        LOOP
            SELECT j.state::text INTO job_state FROM pg_catalog.pg_dist_background_job j WHERE j.job_id = job;
            EXIT WHEN job_state IN ('finished', 'failed', 'cancelled');
            IF clock_timestamp() > deadline THEN
                PERFORM pg_catalog.citus_job_cancel(job);
                job_state := 'timed out';
                EXIT;
            END IF;
            PERFORM pg_catalog.pg_sleep(0.2);
        END LOOP;
        SELECT string_agg(k.message, '; ') INTO failure
          FROM pg_catalog.pg_dist_background_task k
         WHERE k.job_id = job AND k.status::text <> 'done' AND k.message <> '';
    END IF;

    FOR t IN SELECT h.rel, h.owner FROM unnest(handed, owners) AS h(rel, owner) LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO %I', t.rel, t.owner);
    END LOOP;
    INSERT INTO public.__attestor_citus_distribution (object, kind, detail, citus_version)
    VALUES (current_database(), 'rebalance',
            format('job %s %s over %s nodes', coalesce(job::text, '(no moves needed)'), job_state,
                   (SELECT count(*) FROM pg_catalog.pg_dist_node WHERE noderole = 'primary' AND isactive)),
            pg_catalog.citus_version());
    COMMIT;

    IF job_state <> 'finished' THEN
        RAISE EXCEPTION 'rebalance job % %: %', job, job_state, coalesce(failure, '(no task message)');
    END IF;
END
$$;
