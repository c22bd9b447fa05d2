//! TI021 `setting-defaults`: no default pre-empts the tenant context or
//! weakens the rules — no role, database or role-in-database default and no
//! function `SET` clause gives the tenant or actor settings a value, and no
//! default turns `row_security` off or puts a schema a runtime role can
//! write to on the search_path. Owns this rule only; it reads
//! `pg_db_role_setting` and the functions' `proconfig`, and never writes.

use serde::Deserialize;

use super::prelude::*;
use super::for_each_function;

/// The settings the tenant helper and the actor helper read.
pub(crate) const CONTEXT_SETTINGS: [&str; 2] = ["app.tenant_id", "app.actor"];

rule! {
    /// A connection that forgets to set its tenant must fail loudly: the helper
    /// raises when `app.tenant_id` is unset. A default value defeats that silently:
    /// `ALTER ROLE attestor_app SET app.tenant_id = '…'`, the same `IN DATABASE`,
    /// `ALTER DATABASE … SET`, `ALTER ROLE ALL SET` or the server's configuration
    /// (postgresql.conf, `ALTER SYSTEM`) hand every session that forgets
    /// its tenant one tenant's rows, and a function with `SET app.tenant_id = …` runs
    /// in a tenant it was never given. The same holds for the actor (`app.actor`),
    /// which the audit trail records. Defaults must not weaken the other rules
    /// either: `row_security = off` as a default, or a default `search_path` that
    /// names a schema a runtime role (or PUBLIC) may create objects in, or puts
    /// `pg_temp` before `pg_catalog`, lets a session shadow what the helpers and
    /// queries resolve. Role defaults apply only to real login sessions, which is
    /// why a proof that switches roles never sees them (probe TD018 sees their
    /// effect; this rule names the setting).
    pub static RULE = {
        id: "TI021",
        name: "setting-defaults",
        summary: "no role/database default or function SET clause sets the tenant or actor, disables row_security or opens search_path",
        fix: "ALTER ROLE … [IN DATABASE …] RESET …; ALTER DATABASE … RESET …; ALTER FUNCTION … RESET ….",
        needs: None,
        kind: Kind::Static(check),
    };
}

#[derive(Deserialize)]
struct SettingDefault {
    /// The role the default applies to; `None` for every role.
    role: Option<String>,
    /// The database it applies in; `None` for every database.
    database: Option<String>,
    name: String,
    value: String,
    /// For search_path: the schemas it names that a runtime role or PUBLIC
    /// may create objects in.
    writable: Vec<String>,
}

#[derive(Deserialize)]
struct ServerSetting {
    name: String,
    value: String,
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let m = cx.module;
    let roles = m.runtime_roles().to_vec();
    let db_name = cx.db.text("SELECT current_database()::text AS v")?.unwrap_or_default();
    cx.examine(format!("database {db_name}"));
    let defaults: Vec<SettingDefault> = cx.db.json(&format!(
        "SELECT r.rolname::text AS role, d.datname::text AS database,
                split_part(c.setting, '=', 1) AS name,
                substr(c.setting, length(split_part(c.setting, '=', 1)) + 2) AS value,
                ARRAY(SELECT DISTINCT btrim(s, ' \"') FROM unnest(string_to_array(
                          substr(c.setting, length(split_part(c.setting, '=', 1)) + 2), ',')) AS s
                      JOIN pg_namespace n ON n.nspname = btrim(s, ' \"')
                      WHERE has_schema_privilege('public', n.oid, 'CREATE')
                         OR EXISTS (SELECT 1 FROM unnest({roles}) AS rr(name)
                                    JOIN pg_roles x ON x.rolname = rr.name
                                    WHERE has_schema_privilege(x.oid, n.oid, 'CREATE'))
                      ORDER BY 1) AS writable
         FROM pg_db_role_setting s
         LEFT JOIN pg_roles r ON r.oid = s.setrole
         LEFT JOIN pg_database d ON d.oid = s.setdatabase
         CROSS JOIN LATERAL unnest(s.setconfig) AS c(setting)
         WHERE (s.setrole = 0 OR r.rolname = ANY ({roles}))
           AND (s.setdatabase = 0 OR d.datname = current_database())
         ORDER BY 1, 2, 3",
        roles = super::text_array(&roles),
    ))?;
    // Database-wide defaults and the server's belong to no one module:
    // report them once.
    let first = cx.modules.first() == Some(m);
    for d in defaults.into_iter().filter(|d| first || d.role.is_some()) {
        let name = d.name.to_ascii_lowercase();
        let problem = if CONTEXT_SETTINGS.contains(&name.as_str()) {
            format!(
                "a session that forgets its tenant context still gets one: {name} defaults to {:?}",
                d.value
            )
        } else if name == "row_security" && matches!(d.value.to_ascii_lowercase().as_str(), "off" | "of" | "false" | "f" | "no" | "n" | "0") {
            "row_security defaults to off".to_owned()
        } else if name == "search_path" && !d.writable.is_empty() {
            format!(
                "search_path defaults to {} and names {}, where a runtime role or PUBLIC can create objects \
                 that shadow what the helpers and queries resolve",
                d.value,
                d.writable.join(", ")
            )
        } else if name == "search_path" && pg_temp_before_catalog(&d.value) {
            format!(
                "search_path defaults to {}, which puts pg_temp before pg_catalog: a session's temporary \
                 objects shadow the built-in ones",
                d.value
            )
        } else {
            continue;
        };
        let (object, scope, fix) = match (&d.role, &d.database) {
            (Some(r), Some(db)) => (
                format!("role {r}"),
                format!("ALTER ROLE {r} IN DATABASE {db} SET"),
                format!("ALTER ROLE {} IN DATABASE {} RESET {name}", ident(r), ident(db)),
            ),
            (Some(r), None) => (
                format!("role {r}"),
                format!("ALTER ROLE {r} SET"),
                format!("ALTER ROLE {} RESET {name}", ident(r)),
            ),
            (None, Some(db)) => (
                format!("database {db}"),
                format!("ALTER DATABASE {db} SET"),
                format!("ALTER DATABASE {} RESET {name}", ident(db)),
            ),
            (None, None) => (
                format!("database {db_name}"),
                "ALTER ROLE ALL SET".to_owned(),
                format!("ALTER ROLE ALL RESET {name}"),
            ),
        };
        cx.finding(&object, format!("{problem} ({scope} {name})"), fix);
    }
    // The server's own defaults (postgresql.conf, ALTER SYSTEM, the command
    // line or the connection's options), as this session sees them before
    // anything set a value. Custom settings are not listed in pg_settings:
    // a value no role or database default explains comes from there.
    let server: Vec<ServerSetting> = if !first {
        Vec::new()
    } else {
        cx.db.json(
        "SELECT n AS name, current_setting(n, true) AS value
         FROM unnest(ARRAY['app.tenant_id', 'app.actor']) AS n
         WHERE coalesce(current_setting(n, true), '') <> ''
           AND NOT EXISTS (
               SELECT 1 FROM pg_db_role_setting s CROSS JOIN LATERAL unnest(s.setconfig) AS c(setting)
               WHERE (s.setrole = 0 OR s.setrole = (SELECT oid FROM pg_roles WHERE rolname = session_user))
                 AND (s.setdatabase = 0
                      OR s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()))
                 AND split_part(c.setting, '=', 1) = n)
         UNION ALL
         SELECT name, setting FROM pg_settings
         WHERE name = 'row_security' AND setting = 'off'
           AND source IN ('configuration file', 'command line', 'environment variable', 'client')
         ORDER BY 1",
        )?
    };
    for s in server {
        let problem = if s.name == "row_security" {
            "row_security defaults to off".to_owned()
        } else {
            format!(
                "a session that forgets its tenant context still gets one: {} defaults to {:?}",
                s.name, s.value
            )
        };
        cx.finding(
            format!("database {db_name}"),
            format!(
                "{problem} (the server's configuration: postgresql.conf, ALTER SYSTEM, the command line or \
                 the connection's options)"
            ),
            format!(
                "ALTER SYSTEM RESET {}; SELECT pg_reload_conf(); (and remove it from postgresql.conf and the \
                 connection's options)",
                s.name
            ),
        );
    }
    for_each_function(cx, |cx, f, key, q| {
        for setting in f.config.iter().flatten() {
            let name = setting.split('=').next().unwrap_or_default().to_ascii_lowercase();
            if CONTEXT_SETTINGS.contains(&name.as_str()) {
                cx.finding(
                    key,
                    format!(
                        "the function runs in a tenant context of its own (SET {setting}): callers' context is \
                         replaced"
                    ),
                    format!("ALTER FUNCTION {q} RESET {name}"),
                );
            } else if name == "row_security" && setting.to_ascii_lowercase().ends_with("=off") {
                cx.finding(
                    key,
                    format!("the function turns row security off (SET {setting})"),
                    format!("ALTER FUNCTION {q} RESET row_security"),
                );
            }
        }
    });
    Ok(())
}

/// `pg_temp` is named before `pg_catalog` (or `pg_catalog` is not named).
fn pg_temp_before_catalog(path: &str) -> bool {
    let items: Vec<String> = path
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_ascii_lowercase())
        .collect();
    let temp = items.iter().position(|s| s == "pg_temp");
    let catalog = items.iter().position(|s| s == "pg_catalog");
    match (temp, catalog) {
        (Some(t), Some(c)) => t < c,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::pg_temp_before_catalog;

    #[test]
    fn pg_temp_first_is_seen() {
        assert!(pg_temp_before_catalog("pg_temp, pg_catalog"));
        assert!(pg_temp_before_catalog("\"$user\", pg_temp"));
        assert!(!pg_temp_before_catalog("pg_catalog, pg_temp"));
        assert!(!pg_temp_before_catalog("\"$user\", public"));
    }
}
