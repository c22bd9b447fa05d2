//! TI023 `rls-egress`: no path copies or serves a module's rows past RLS —
//! no publication of tenant tables, no rewrite rule on a module table, no
//! foreign table in a module schema, no foreign server a runtime role can
//! use, no event trigger. Owns this rule only; it reads the catalog and
//! never writes.

use serde::Deserialize;

use super::prelude::*;

rule! {
    /// Row-Level Security filters what a session reads; some paths copy rows without
    /// any session's policies. Logical replication publishes every change of a
    /// published table to its subscribers, whatever the policies (`FOR ALL TABLES`
    /// and `FOR TABLES IN SCHEMA` include each new tenant table silently). A rewrite
    /// rule (`CREATE RULE … DO ALSO INSERT INTO elsewhere …`) runs its actions with
    /// the table owner's rights and can copy every written row where RLS does not
    /// follow it. A foreign table in a module schema serves rows of another server
    /// that no policy of this one covers, and a foreign server a runtime role can use
    /// (USAGE, or a user mapping for it or PUBLIC) lets it ship rows out. An event
    /// trigger runs its function on the DDL of every role, including the owner's
    /// migrations, and can rewrite what they create. Each of these is a finding
    /// unless reviewed in rls.toml; event triggers that belong to an extension are
    /// the extension's.
    pub static RULE = {
        id: "TI023",
        name: "rls-egress",
        summary: "no publication of tenant tables, rules on module tables, foreign tables or servers the runtime roles use, or event triggers",
        fix: "DROP PUBLICATION / ALTER PUBLICATION … DROP TABLE …; DROP RULE …; DROP FOREIGN TABLE …; REVOKE USAGE ON FOREIGN SERVER …; DROP USER MAPPING …; DROP EVENT TRIGGER ….",
        needs: None,
        kind: Kind::Static(check),
    };
}

#[derive(Deserialize)]
struct Named {
    name: String,
    /// What it covers or does, as text for the message.
    detail: String,
    /// A second name: the table of a rule, the role of a user mapping.
    other: Option<String>,
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let m = cx.module;
    let schemas = super::text_array(&m.schemas());
    let tenant_tables: Vec<String> = cx
        .catalog
        .tables
        .iter()
        .filter(|t| t.schema == m.schema && t.is_tenant())
        .map(|t| t.key())
        .collect();
    for t in &tenant_tables {
        cx.examine(t);
    }
    let tables = super::text_array(&tenant_tables);
    let roles = super::text_array(m.runtime_roles().as_slice());
    let version = crate::membership::server_version(cx.db)?;
    let by_schema = if version >= 150_000 {
        format!(
            "UNION SELECT p.pubname::text, 'tables in schema ' || n.nspname, NULL
             FROM pg_publication p JOIN pg_publication_namespace pn ON pn.pnpubid = p.oid
             JOIN pg_namespace n ON n.oid = pn.pnnspid WHERE n.nspname = ANY ({schemas})"
        )
    } else {
        String::new()
    };
    let publications: Vec<Named> = cx.db.json(&format!(
        "SELECT name, string_agg(detail, ', ' ORDER BY detail) AS detail, NULL AS other FROM (
             SELECT p.pubname::text AS name, 'all tables' AS detail, NULL AS other
             FROM pg_publication p WHERE p.puballtables
             UNION SELECT p.pubname::text, 'table ' || n.nspname || '.' || c.relname, NULL
             FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
             JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE (n.nspname || '.' || c.relname) = ANY ({tables})
             {by_schema}) q
         GROUP BY name ORDER BY name"
    ))?;
    for p in publications {
        let object = format!("publication {}", p.name);
        cx.examine(&object);
        cx.finding(
            &object,
            format!(
                "publishes {} of module {}: subscribers receive every tenant's rows, past every policy",
                p.detail, m.key
            ),
            format!("DROP PUBLICATION {}", ident(&p.name)),
        );
    }
    let rules: Vec<Named> = cx.db.json(&format!(
        "SELECT r.rulename::text AS name, pg_get_ruledef(r.oid) AS detail, n.nspname || '.' || c.relname AS other
         FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY ({schemas}) AND r.rulename <> '_RETURN'
         ORDER BY 3, 1"
    ))?;
    for r in rules {
        let table = r.other.unwrap_or_default();
        cx.finding(
            &table,
            format!(
                "rewrite rule {} runs its actions with the table owner's rights, where the policies do not \
                 follow the rows ({})",
                r.name, r.detail
            ),
            format!(
                "DROP RULE {} ON {}",
                ident(&r.name),
                table.split_once('.').map_or(table.clone(), |(s, t)| qualified(s, t))
            ),
        );
    }
    let foreign: Vec<_> = cx
        .catalog
        .tables
        .iter()
        .filter(|t| m.schemas().contains(&t.schema) && t.kind == "f")
        .collect();
    for t in foreign {
        cx.finding(
            t.key(),
            "foreign table in a module schema: its rows come from another server, under no policy of this one",
            format!("DROP FOREIGN TABLE {}", t.qualified()),
        );
    }
    let servers: Vec<Named> = cx.db.json(&format!(
        "SELECT s.srvname::text AS name, 'USAGE' AS detail, r.rolname::text AS other
         FROM pg_foreign_server s CROSS JOIN pg_roles r
         WHERE r.rolname = ANY ({roles}) AND has_server_privilege(r.oid, s.oid, 'USAGE')
         UNION
         SELECT um.srvname::text, 'a user mapping', um.usename::text
         FROM pg_user_mappings um WHERE um.usename = ANY ({roles}) OR um.umuser = 0
         ORDER BY 1, 3"
    ))?;
    for s in servers {
        let role = s.other.unwrap_or_default();
        let object = format!("server {}", s.name);
        cx.examine(&object);
        let fix = if s.detail == "USAGE" {
            format!("REVOKE USAGE ON FOREIGN SERVER {} FROM {}", ident(&s.name), ident(&role))
        } else {
            format!("DROP USER MAPPING FOR {} SERVER {}", ident(&role), ident(&s.name))
        };
        cx.finding(
            &object,
            format!("{role} has {} on foreign server {}: it can ship rows to another server", s.detail, s.name),
            fix,
        );
    }
    // Event triggers belong to the database, not to a module: report them once.
    if cx.modules.first() == Some(m) {
        let triggers: Vec<Named> = cx.db.json(
            "SELECT e.evtname::text AS name, e.evtevent::text || ' → ' || e.evtfoid::regproc::text AS detail,
                    NULL AS other
             FROM pg_event_trigger e
             WHERE e.evtenabled <> 'D'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_event_trigger'::regclass
                               AND d.objid = e.oid AND d.deptype = 'e')
             ORDER BY 1",
        )?;
        for e in triggers {
            let object = format!("event trigger {}", e.name);
            cx.examine(&object);
            cx.finding(
                &object,
                format!(
                    "event trigger ({}) runs on the DDL of every role, the owner's migrations included",
                    e.detail
                ),
                format!("DROP EVENT TRIGGER {}", ident(&e.name)),
            );
        }
    }
    Ok(())
}
