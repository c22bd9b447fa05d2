-- Revert the first migration of module `{{module}}`: drop the module schemas
-- (and everything in them), the CONNECT grants and the owner's default
-- privileges.
--
-- The roles {{module}}_owner / {{module}}_app / {{module}}_worker are
-- deliberately NOT dropped: roles are cluster-wide and other databases of the
-- same cluster may still use them. Runs as a superuser, like up.sql.

DROP SCHEMA {{module}} CASCADE;
DROP SCHEMA {{module}}_app CASCADE;

DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM {{module}}_app, {{module}}_worker',
                   current_database());
END
$$;

-- Back to the built-in default (PUBLIC may execute new functions); this
-- removes the pg_default_acl entry that up.sql created.
ALTER DEFAULT PRIVILEGES FOR ROLE {{module}}_owner GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
