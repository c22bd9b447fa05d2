-- Revert migration 1: drop the module schemas (and everything in them),
-- the CONNECT grants and the owner's default privileges.
--
-- The roles attestor_owner / attestor_app / attestor_worker are deliberately
-- NOT dropped: roles are cluster-wide and other databases of the same cluster
-- (other tenants' test databases, other deployments) may still use them.
-- Runs as a superuser, like up.sql.

DROP SCHEMA attestor CASCADE;
DROP SCHEMA attestor_app CASCADE;

DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM attestor_app, attestor_worker',
                   current_database());
END
$$;

-- Back to the built-in default (PUBLIC may execute new functions); this
-- removes the pg_default_acl entry that up.sql created.
ALTER DEFAULT PRIVILEGES FOR ROLE attestor_owner GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
