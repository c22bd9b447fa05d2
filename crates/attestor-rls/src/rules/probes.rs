//! The probes of the dynamic proof (`TD…`), as registry entries: the same
//! id, name, summary, doc and fix as a static rule, run by `crate::dynamic`
//! with real rows of two fresh tenants A and B inside transactions that are
//! always rolled back. A finding's message is the probe's summary followed
//! by what the statement did. Owns the declarations only; it never runs SQL.

use super::prelude::*;

macro_rules! probe {
    ($(#[doc = $doc:literal])* $id:ident, $name:literal, $summary:literal, $fix:expr) => {
        rule! {
            $(#[doc = $doc])*
            pub static $id = {
                id: stringify!($id),
                name: $name,
                summary: $summary,
                fix: $fix,
                needs: None,
                kind: Kind::Probe,
            };
        }
    };
}

const RLS_FIX: &str = "run `cargo xtask gen-rls`, apply it, and fix the findings of TI001-TI003";

probe! {
    /// The proof needs one valid row per tenant in every tenant table; they are
    /// generated from the catalog (types, defaults, foreign keys to the parent rows
    /// of the same tenant, CHECK constraints solved and re-checked by the server).
    /// A table it cannot fill is a finding, never a silent pass: its isolation
    /// would otherwise be unproven.
    TD001, "rows-fillable", "every tenant table can be filled with valid rows (else its isolation is unproven)",
    "give the column a default or a CHECK the generator understands, or extend crates/attestor-rls/src/fill.rs"
}
probe! {
    /// In tenant B's transaction no row of any other tenant is visible: the first
    /// thing a leaky policy (a `USING (true)`, RLS disabled, a policy for PUBLIC)
    /// gives away.
    TD002, "other-tenant-invisible", "A's rows are invisible to B", RLS_FIX
}
probe! {
    /// Looked up by its full primary key, A's row is still invisible to B: a
    /// policy that filters scans but not key look-ups (or an index-only path)
    /// would leak here.
    TD003, "other-tenant-key-invisible", "A's row is invisible by its key", RLS_FIX
}
probe! {
    /// B sees its own row: without it the other probes would pass on a table that
    /// denies everything (a missing or broken policy), which is not isolation but
    /// an outage, and hides whether the policy works at all.
    TD004, "own-row-visible", "B sees its own row", RLS_FIX
}
probe! {
    /// An UPDATE of every row of tenant A, run in B's transaction, touches nothing
    /// (or is refused): USING must filter writes, not only reads.
    TD005, "other-tenant-update", "UPDATE of A's rows touches nothing", RLS_FIX
}
probe! {
    /// A DELETE of every row of tenant A, run in B's transaction, touches nothing
    /// (or is refused).
    TD006, "other-tenant-delete", "DELETE of A's rows touches nothing", RLS_FIX
}
probe! {
    /// B cannot INSERT a row that carries tenant A's id: WITH CHECK must refuse it
    /// (42501), or B could plant data in another tenant.
    TD007, "insert-for-other-tenant", "INSERT of a row for tenant A is refused", RLS_FIX
}
probe! {
    /// B cannot move its own row to tenant A with an UPDATE of `tenant_id`
    /// (refused by WITH CHECK or by a missing column grant; on a Citus
    /// coordinator also by Citus, which never changes a distribution column).
    TD008, "move-to-other-tenant", "UPDATE of B's row to tenant A is refused", RLS_FIX
}
probe! {
    /// `INSERT … ON CONFLICT DO NOTHING` with A's key touches nothing: the conflict
    /// check must not tell B that A's key exists, nor insert A's row.
    TD009, "upsert-nothing-other-tenant", "INSERT … ON CONFLICT DO NOTHING on A's key is refused", RLS_FIX
}
probe! {
    /// `INSERT … ON CONFLICT DO UPDATE` with A's key is refused: an upsert takes
    /// the UPDATE path on the conflicting row, which must be A's policy's business,
    /// never B's.
    TD010, "upsert-update-other-tenant", "INSERT … ON CONFLICT DO UPDATE on A's key is refused", RLS_FIX
}
probe! {
    /// With no tenant set, a SELECT fails with the helper's AT001 instead of
    /// returning nothing: a connection that forgot its tenant fails loudly. The
    /// tenant is "not set" the way the login session has it, so a default from
    /// the role or the database is caught too.
    TD011, "select-without-tenant", "SELECT without a tenant fails with AT001",
    "the policies must call the helper: run `cargo xtask gen-rls` and fix TI002 and TI004"
}
probe! {
    /// With no tenant set, an INSERT fails with AT001 (or is refused for lack of a
    /// grant). On a Citus coordinator, which evaluates the helper's cast of the
    /// empty setting before it routes the row, it fails on that cast (22P02).
    TD012, "insert-without-tenant", "INSERT without a tenant fails with AT001",
    "the policies must call the helper: run `cargo xtask gen-rls` and fix TI002 and TI004"
}
probe! {
    /// With no tenant set, an UPDATE fails with AT001 (or is refused for lack of a
    /// grant).
    TD013, "update-without-tenant", "UPDATE without a tenant fails with AT001",
    "the policies must call the helper: run `cargo xtask gen-rls` and fix TI002 and TI004"
}
probe! {
    /// With no tenant set, a DELETE fails with AT001 (or is refused for lack of a
    /// grant).
    TD014, "delete-without-tenant", "DELETE without a tenant fails with AT001",
    "the policies must call the helper: run `cargo xtask gen-rls` and fix TI002 and TI004"
}
probe! {
    /// A tenant id that is not a UUID fails with AT002 instead of matching
    /// nothing or being cast to something.
    TD015, "malformed-tenant", "a malformed tenant fails with AT002",
    "restore the canonical helper and its slow path (TI004)"
}
probe! {
    /// After all of B's attempts, A's row is still there and unchanged, checked
    /// back in A's own transaction.
    TD016, "other-tenant-row-unchanged", "A's row is unchanged after B's attempts", RLS_FIX
}
probe! {
    /// The worker role sees no row of a table that has no policy declared for it
    /// (or may not read it at all): the queue worker's cross-tenant reach stops at
    /// the queue.
    TD017, "worker-sees-nothing", "the worker sees no rows",
    "drop the worker's policy or grant, or declare the policy in rls.toml"
}
probe! {
    /// In a fresh login session of each runtime role, before anything sets a
    /// tenant, the helper raises AT001. A role-level, database-level or
    /// role-in-database default for `app.tenant_id` (`ALTER ROLE … SET
    /// app.tenant_id = '…'`) would hand every connection that forgets its tenant a
    /// tenant instead of an error; a superuser session that switches roles never
    /// sees such defaults, so this probe runs only in real login sessions.
    TD018, "fresh-session-no-tenant", "a fresh login session has no tenant: the helper raises AT001",
    "remove the default: ALTER ROLE … RESET app.tenant_id / ALTER DATABASE … RESET app.tenant_id (also IN DATABASE)"
}
probe! {
    /// The worker cannot change a row's tenant: an UPDATE of `tenant_id` on a table
    /// where it has a declared pass-all policy is refused for lack of the column
    /// grant. Runs in the worker's real login session.
    TD019, "worker-cannot-move-tenant", "the worker cannot update tenant_id",
    "REVOKE UPDATE (tenant_id) ON the table FROM the worker role"
}
probe! {
    /// Each module owns its schemas. As each login role of one module, in its own
    /// login session, looking a name up in another module's schema (USAGE) and
    /// creating an object there (CREATE) are both refused with 42501. A module
    /// that may resolve names in another's schema is one grant away from its
    /// tables and functions; one that may create there can plant objects the other
    /// module's code runs.
    TD020, "other-module-schema", "another module's schemas are refused (USAGE and CREATE)",
    "REVOKE ALL ON SCHEMA … FROM the role (and from any role it reaches)"
}
probe! {
    /// As each login role of one module, SELECT, INSERT, UPDATE and DELETE on every
    /// table and view of another module are refused for lack of privilege (42501
    /// "permission denied"). The other module's policies name only its own roles,
    /// so a privilege there is a door its RLS never considered.
    TD021, "other-module-tables", "another module's tables are refused (SELECT, INSERT, UPDATE, DELETE)",
    "REVOKE ALL ON TABLE … FROM the role (and from any role it reaches)"
}
probe! {
    /// As each login role of one module, calling any function of another module
    /// (its tenant helper, its trigger functions, anything in its schemas) is
    /// refused with 42501: a module's functions work on its own tables with its own
    /// assumptions.
    TD022, "other-module-functions", "another module's functions are refused",
    "REVOKE EXECUTE ON FUNCTION … FROM the role (and from PUBLIC)"
}
probe! {
    /// As each login role of one module, reading another module's sequences
    /// (`currval`, which needs USAGE or SELECT, and `SELECT … FROM` the sequence)
    /// is refused with 42501. The try changes nothing: `nextval` and `setval` are
    /// not transactional, so they are never called; the schema-isolation rule
    /// (TI017) reads the UPDATE privilege from the catalog.
    TD023, "other-module-sequences", "another module's sequences are refused",
    "REVOKE ALL ON SEQUENCE … FROM the role"
}
probe! {
    /// As each login role of one module, `SET ROLE` to each of another module's
    /// roles (its owner, app and worker) is refused with 42501. A runtime role is
    /// NOINHERIT, so a membership grants nothing until it is used with SET ROLE;
    /// this is the try that uses it.
    TD024, "other-module-roles", "another module's roles cannot be reached with SET ROLE",
    "REVOKE <other module's role> FROM the role (and any chain of memberships that reaches it)"
}
probe! {
    /// The tenant GUC `app.tenant_id` is one for the whole service, so a module's
    /// tenant context is also set for every other module's tables. That must open
    /// none of their rows: as each runtime role of one module, in tenant T's
    /// context, another module's tables holding rows of T return nothing (or are
    /// refused). The rows are written in the owner session and the roles taken
    /// with SET ROLE, since uncommitted rows of one session are invisible to
    /// every other; a refusal in the login session proves it without rows.
    TD025, "other-module-tenant-rows", "a module's tenant context opens none of another module's rows",
    "drop the policy or grant that lets this module's roles into the other module's table"
}
