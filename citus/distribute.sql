-- Distribution of every module of the database on a Citus coordinator.
--
-- Runs after the migrations, as a superuser, in one transaction
-- (`cargo xtask db up` against a coordinator, and the test harness on one).
-- The operator's part comes before: the database exists on every node with
-- the `citus` extension, and the workers are registered. Idempotent: each
-- run distributes what is not distributed yet and appends a row per object
-- to public.__attestor_citus_distribution (tooling state, like diesel's
-- __diesel_schema_migrations: owned by the superuser; no module role has
-- any privilege on it).
--
-- A module is found by the convention every module's first migration
-- follows: a schema <m> owned by the role <m>_owner, next to a schema
-- <m>_app with the same owner (`attestor` and `attestor_app`, and each
-- module `cargo xtask module new` adds).
--
--   1. Anywhere but a Citus coordinator it raises and changes nothing; so
--      it does where it finds no module.
--   2. Every function of the modules' schemas (<m> and <m>_app) goes
--      to the workers with create_distributed_function(), sent by the
--      superuser. The migrations create them as <m>_owner, which may
--      not log in, so Citus cannot send them as their creator; and the
--      dependencies Citus finds by itself miss a function that is only
--      called from a PL/pgSQL body (current_actor() from audit_row()).
--      Citus replays a function's grants on the workers but not the revoke
--      of PUBLIC's default EXECUTE, so PUBLIC's EXECUTE is revoked again,
--      on every node, wherever the coordinator's copy does not grant it.
--   3. Every table of a module schema <m> is distributed by tenant_id,
--      parents before the tables whose foreign keys point at them, all of
--      every module in the colocation group of the first one (or of the
--      module table already distributed), so that a tenant's rows of every
--      table of every module share a node.
--      Every table has triggers, which Citus accepts only with
--      citus.enable_unsafe_triggers on (here, for this transaction): they
--      fire on the shards and run the workers' copies of the functions.
--   4. A table without tenant_id, a module table distributed another way or
--      in another colocation group (of its own module or another), and a
--      table left over are errors: nothing is left local without saying so.

DO $$
DECLARE
    f        record;
    t        record;
    anchor   regclass;
    progress boolean;
    left_over text;
    -- The module schemas <m>, and those with their <m>_app schemas.
    tables_in oid[];
    code_in   oid[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'the citus extension is not installed in database %: distribution runs on a Citus coordinator only',
            current_database();
    END IF;
    IF NOT pg_catalog.citus_is_coordinator() THEN
        RAISE EXCEPTION 'database % is not the Citus coordinator (register it with citus_set_coordinator_host)',
            current_database();
    END IF;

    SELECT coalesce(array_agg(n.oid ORDER BY n.nspname), '{}'),
           coalesce(array_agg(n.oid ORDER BY n.nspname), '{}') || coalesce(array_agg(a.oid ORDER BY n.nspname), '{}')
      INTO tables_in, code_in
      FROM pg_catalog.pg_namespace n
      JOIN pg_catalog.pg_namespace a ON a.nspname = n.nspname || '_app' AND a.nspowner = n.nspowner
     WHERE pg_catalog.pg_get_userbyid(n.nspowner) = n.nspname || '_owner';
    IF cardinality(tables_in) = 0 THEN
        RAISE EXCEPTION 'database % holds no module (a schema <m> owned by <m>_owner, next to a schema <m>_app): migrate it first',
            current_database();
    END IF;

    CREATE TABLE IF NOT EXISTS public.__attestor_citus_distribution (
        step            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        object          text        NOT NULL,
        kind            text        NOT NULL,
        detail          text        NOT NULL,
        citus_version   text        NOT NULL,
        distributed_at  timestamptz NOT NULL DEFAULT now()
    );
    REVOKE ALL ON public.__attestor_citus_distribution FROM PUBLIC;

    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);

    -- 2. Functions -----------------------------------------------------------
    FOR f IN
        SELECT p.oid::regprocedure AS fn
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = ANY (code_in)
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_object o
                            WHERE o.classid = 'pg_catalog.pg_proc'::regclass AND o.objid = p.oid)
         ORDER BY p.oid::regprocedure::text
    LOOP
        PERFORM pg_catalog.create_distributed_function(f.fn);
        INSERT INTO public.__attestor_citus_distribution (object, kind, detail, citus_version)
        VALUES (f.fn::text, 'function', 'created on every node by the superuser',
                pg_catalog.citus_version());
    END LOOP;

    FOR f IN
        SELECT p.oid::regprocedure AS fn
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = ANY (code_in)
           AND p.proacl IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(p.proacl) a WHERE a.grantee = 0)
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.fn);
    END LOOP;

    -- 3. Tables --------------------------------------------------------------
    FOR t IN
        SELECT d.logicalrelid, d.partmethod, d.colocationid,
               pg_catalog.column_to_column_name(d.logicalrelid, d.partkey) AS dist_column
          FROM pg_catalog.pg_dist_partition d
          JOIN pg_catalog.pg_class c ON c.oid = d.logicalrelid
         WHERE c.relnamespace = ANY (tables_in)
         ORDER BY d.colocationid, c.relname
    LOOP
        IF t.partmethod <> 'h' OR t.dist_column IS DISTINCT FROM 'tenant_id' THEN
            RAISE EXCEPTION '% is distributed, but not by hash of tenant_id (method %, column %)',
                t.logicalrelid, t.partmethod, t.dist_column;
        END IF;
        IF anchor IS NULL THEN
            anchor := t.logicalrelid;
        ELSIF t.colocationid <> (SELECT colocationid FROM pg_catalog.pg_dist_partition
                                  WHERE logicalrelid = anchor) THEN
            RAISE EXCEPTION '% is not colocated with % (colocation group % against %)',
                t.logicalrelid, anchor, t.colocationid,
                (SELECT colocationid FROM pg_catalog.pg_dist_partition WHERE logicalrelid = anchor);
        END IF;
    END LOOP;

    LOOP
        progress := false;
        FOR t IN
            SELECT c.oid::regclass AS rel, c.relname
              FROM pg_catalog.pg_class c
             WHERE c.relnamespace = ANY (tables_in)
               AND c.relkind IN ('r', 'p')
               AND NOT c.relispartition
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = c.oid)
             ORDER BY c.relname
        LOOP
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                            WHERE a.attrelid = t.rel AND a.attname = 'tenant_id' AND NOT a.attisdropped) THEN
                RAISE EXCEPTION '% has no tenant_id column: it cannot be distributed by tenant, and no global (reference) table is declared for this module',
                    t.rel;
            END IF;
            -- Parents first: every table a foreign key of this one points at
            -- must be distributed already.
            CONTINUE WHEN EXISTS (
                SELECT 1 FROM pg_catalog.pg_constraint k
                 WHERE k.conrelid = t.rel AND k.contype = 'f' AND k.confrelid <> k.conrelid
                   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d
                                    WHERE d.logicalrelid = k.confrelid));
            IF anchor IS NULL THEN
                PERFORM pg_catalog.create_distributed_table(t.rel::text, 'tenant_id');
                anchor := t.rel;
            ELSE
                PERFORM pg_catalog.create_distributed_table(t.rel::text, 'tenant_id',
                                                            colocate_with => anchor::text);
            END IF;
            INSERT INTO public.__attestor_citus_distribution (object, kind, detail, citus_version)
            VALUES (t.rel::text, 'table',
                    format('distributed by tenant_id, %s shards, colocated with %s',
                           (SELECT count(*) FROM pg_catalog.pg_dist_shard s WHERE s.logicalrelid = t.rel),
                           anchor),
                    pg_catalog.citus_version());
            progress := true;
        END LOOP;
        EXIT WHEN NOT progress;
    END LOOP;

    SELECT string_agg(c.oid::regclass::text, ', ' ORDER BY c.relname) INTO left_over
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = ANY (tables_in)
       AND c.relkind IN ('r', 'p')
       AND NOT c.relispartition
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = c.oid);
    IF left_over IS NOT NULL THEN
        RAISE EXCEPTION 'not distributed (a foreign key points at a table outside the module or in a cycle): %',
            left_over;
    END IF;
END
$$;
