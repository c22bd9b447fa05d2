//! The database server tests and tools talk to, its migrated template, and
//! one cloned database per test.
//!
//! Owns the choice between the embedded cluster and `DATABASE_URL`, the
//! template database (migrated once per process), and [`TestDatabase`], a
//! database cloned from the template that is dropped again when the value is
//! dropped.
//!
//! A server whose database has the `citus` extension is a Citus
//! coordinator: every database made here is then made on every node (a
//! fresh one gets the extension and the node registrations, a clone is
//! cloned on each node from the same template), migrated on the
//! coordinator and distributed ([`Server::distribute`]), and dropped on
//! every node. Role URLs for `attestor_app` / `attestor_worker` come from here so
//! tests never have to guess them. It must never run tests as a superuser on
//! their behalf: [`TestDatabase::admin_url`] exists for setup and inspection
//! only, and is named so.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::{Connection, PgConnection, RunQueryDsl};
use diesel_migrations::MigrationHarness;

use crate::citus::{on_each, CitusCluster, Nodes};
use crate::cluster::{Cluster, ClusterOptions};
use crate::conn::ConnParams;
use crate::{Error, PgBinaries, Result};

/// Role that owns every object (NOLOGIN; migrations `SET ROLE` to it).
pub const OWNER_ROLE: &str = "attestor_owner";
/// Role the application logs in as; subject to RLS.
pub const APP_ROLE: &str = "attestor_app";
/// Role queue workers log in as; subject to RLS.
pub const WORKER_ROLE: &str = "attestor_worker";

/// A PostgreSQL server: the embedded throwaway cluster or `DATABASE_URL`'s.
#[derive(Debug)]
pub struct Server {
    admin: ConnParams,
    cluster: Option<Cluster>,
    citus: Option<Nodes>,
    citus_cluster: Option<CitusCluster>,
    template: OnceLock<std::result::Result<String, String>>,
    counter: AtomicU64,
}

impl Server {
    /// `DATABASE_URL` (a superuser URL) when set, otherwise a fresh embedded
    /// cluster owned by this process.
    pub fn from_env() -> Result<Server> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => Server::from_url(&url),
            _ => Server::embedded(&ClusterOptions::default()),
        }
    }

    /// Start an embedded cluster with the given options.
    pub fn embedded(options: &ClusterOptions) -> Result<Server> {
        let binaries = PgBinaries::find()?;
        let cluster = Cluster::start_ephemeral(&binaries, options)?;
        Ok(Server::with_cluster(cluster))
    }

    /// Wrap an already running cluster (it stops when the server is dropped).
    pub fn with_cluster(cluster: Cluster) -> Server {
        Server {
            admin: cluster.superuser("postgres"),
            cluster: Some(cluster),
            citus: None,
            citus_cluster: None,
            template: OnceLock::new(),
            counter: AtomicU64::new(0),
        }
    }

    /// Wrap a running Citus cluster (every node stops when the server is
    /// dropped); the coordinator is the server, its `postgres` database the
    /// maintenance database.
    pub fn with_citus_cluster(cluster: CitusCluster) -> Server {
        Server {
            admin: cluster.admin("postgres"),
            cluster: None,
            citus: Some(cluster.nodes()),
            citus_cluster: Some(cluster),
            template: OnceLock::new(),
            counter: AtomicU64::new(0),
        }
    }

    /// Use an existing server; `url` must be a superuser's. When its
    /// database has the `citus` extension, the server is that Citus
    /// coordinator with the nodes its `pg_dist_node` lists.
    pub fn from_url(url: &str) -> Result<Server> {
        let admin = ConnParams::parse(url)?;
        let citus = Nodes::discover(&admin)?;
        Ok(Server {
            admin,
            cluster: None,
            citus,
            citus_cluster: None,
            template: OnceLock::new(),
            counter: AtomicU64::new(0),
        })
    }

    /// The nodes, when this server is a Citus coordinator.
    pub fn citus(&self) -> Option<&Nodes> {
        self.citus.as_ref()
    }

    /// Whether a tenant context must be sent as `SET LOCAL` on this server
    /// (the repository's `TenantContextMode::SetLocal`) for the shards to
    /// see it: `true` on a Citus coordinator, which does not pass
    /// `set_config(…, true)` on to the workers, `false` on plain
    /// PostgreSQL, where tests use `set_config` (the default mode). A test
    /// pool uses the one mode this says, never a mix.
    pub fn tenant_context_needs_set_local(&self) -> bool {
        self.citus.is_some()
    }

    /// Whether the server is one this process started (no passwords needed).
    fn is_own(&self) -> bool {
        self.cluster.is_some() || self.citus_cluster.is_some()
    }

    /// The embedded cluster, if this server is one.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Superuser connection parameters for `database`.
    pub fn admin(&self, database: &str) -> ConnParams {
        self.admin.with_database(database)
    }

    /// Connection parameters for a login role in `database`. On servers
    /// other than the embedded one the role's password is its name, set by
    /// [`Server::set_dev_passwords`]; never point this at production.
    pub fn role(&self, role: &str, database: &str) -> ConnParams {
        let password = if self.is_own() { None } else { Some(role) };
        self.admin(database).with_user(role, password)
    }

    /// Open a superuser connection to `database`.
    pub fn connect_admin(&self, database: &str) -> Result<PgConnection> {
        let url = self.admin(database).url();
        PgConnection::establish(&url).map_err(|source| Error::Connect { url, source })
    }

    /// Run SQL as the superuser in the server's maintenance database.
    pub fn execute_admin(&self, sql: &str) -> Result<()> {
        execute_at(&self.admin, sql)
    }

    /// What the server reports about its version: `server_version_num`
    /// (`150020`, `180006`), for code and tests whose behaviour differs
    /// across versions, and `server_version`, for the lines that say what ran.
    pub fn version(&self) -> Result<ServerVersion> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            num: i32,
            #[diesel(sql_type = diesel::sql_types::Text)]
            full: String,
        }
        let sql = "SELECT current_setting('server_version_num')::int AS num, \
                   current_setting('server_version') AS full";
        let url = self.admin.url();
        let mut conn = PgConnection::establish(&url).map_err(|source| Error::Connect { url, source })?;
        let row: Row = diesel::sql_query(sql)
            .get_result(&mut conn)
            .map_err(|e| Error::sql(sql.to_owned(), e))?;
        Ok(ServerVersion {
            num: u32::try_from(row.num).unwrap_or_default(),
            full: row.full,
        })
    }

    /// The maintenance database's superuser parameters on every node: the
    /// coordinator first, then the workers (only the server on plain
    /// PostgreSQL).
    pub fn node_admins(&self) -> Vec<ConnParams> {
        match &self.citus {
            Some(nodes) => nodes.all().map(|n| n.params(&self.admin)).collect(),
            None => vec![self.admin.clone()],
        }
    }

    /// `CREATE DATABASE name [TEMPLATE template]`, retrying while the
    /// template is briefly in use by another clone. On Citus: a fresh
    /// database (no template, `template0` or `template1`) is prepared on
    /// every node with the extension and the registrations; a clone is made
    /// on every node from that node's copy of the template.
    pub fn create_database(&self, name: &str, template: Option<&str>) -> Result<()> {
        if let Some(nodes) = &self.citus {
            if matches!(template, None | Some("template0" | "template1")) {
                return nodes.prepare_database(&self.admin, name);
            }
        }
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {} TEMPLATE {}", ident(name), ident(t)),
            None => format!("CREATE DATABASE {}", ident(name)),
        };
        on_each(&self.node_admins(), |admin| {
            let mut attempt = 0;
            loop {
                match execute_at(admin, &sql) {
                    Err(Error::Sql { source, .. })
                        if attempt < 50
                            && source.to_string().contains("is being accessed by other users") =>
                    {
                        attempt += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    other => return other,
                }
            }
        })
    }

    /// `DROP DATABASE IF EXISTS name WITH (FORCE)` (on Citus on every node,
    /// the coordinator first so that it stops reaching the workers').
    pub fn drop_database(&self, name: &str) -> Result<()> {
        drop_everywhere(&self.node_admins(), name)
    }

    /// Run every pending migration of `source` in `database` as the
    /// superuser (the migrations before the cutoff `SET LOCAL ROLE
    /// attestor_owner`; later ones run as this superuser and hand what they
    /// create to the owner).
    /// Returns the versions that ran.
    ///
    /// Runs are serialised within the process: the first migration creates
    /// cluster-wide roles, and two databases migrated at once would race on
    /// `CREATE ROLE`/`ALTER ROLE` (unique violation, "tuple concurrently
    /// updated").
    ///
    /// On a Citus coordinator whose database has no distributed table yet,
    /// the migrations run with `citus.create_object_propagation = deferred`:
    /// the migrations create their functions as `attestor_owner`, which
    /// may not log in, and Citus would otherwise propagate each `CREATE
    /// FUNCTION` at once over a connection to every worker *as that role*.
    /// Deferred, nothing of the module reaches the workers before
    /// [`Server::distribute`] hands it over as the superuser. Once anything
    /// is distributed, migrations run with Citus' defaults (see
    /// [`Server::distribute`] for what that asks of a migration).
    pub fn migrate<S: MigrationSource<Pg>>(&self, database: &str, source: S) -> Result<Vec<String>> {
        let _one_at_a_time = migration_lock();
        let mut conn = self.connect_migrator(database)?;
        let ran = conn
            .run_pending_migrations(source)
            .map_err(|e| Error::Migration {
                database: database.to_owned(),
                message: e.to_string(),
            })?;
        Ok(ran.iter().map(|v| v.to_string()).collect())
    }

    /// A superuser connection to `database` set up for running migrations
    /// by hand (`MigrationHarness`): on a Citus coordinator before anything
    /// is distributed, object propagation is deferred (see
    /// [`Server::migrate`]); elsewhere a plain admin connection.
    pub fn connect_migrator(&self, database: &str) -> Result<PgConnection> {
        let mut conn = self.connect_admin(database)?;
        if self.citus.is_some() && !has_distributed_tables(&mut conn)? {
            diesel::sql_query("SET citus.create_object_propagation = deferred")
                .execute(&mut conn)
                .map_err(|e| Error::sql("deferring Citus object propagation", e))?;
        }
        Ok(conn)
    }

    /// Distributes `database` when the server is a Citus coordinator (a
    /// no-op on plain PostgreSQL): runs [`attestor_schema::CITUS_DISTRIBUTION`]
    /// as the superuser, in one transaction. The step is idempotent and
    /// records what it did in `public.__attestor_citus_distribution`; it
    /// returns the objects it distributed in this run (empty when there was
    /// nothing left to do).
    pub fn distribute(&self, database: &str) -> Result<Vec<String>> {
        if self.citus.is_none() {
            return Ok(Vec::new());
        }
        let mut conn = self.connect_admin(database)?;
        #[derive(diesel::QueryableByName)]
        struct Done {
            #[diesel(sql_type = diesel::sql_types::Text)]
            object: String,
        }
        conn.transaction(|c| {
            diesel::connection::SimpleConnection::batch_execute(c, attestor_schema::CITUS_DISTRIBUTION)?;
            diesel::sql_query(
                "SELECT object FROM public.__attestor_citus_distribution \
                  WHERE distributed_at = now() ORDER BY step",
            )
            .load::<Done>(c)
        })
        .map(|rows| rows.into_iter().map(|r| r.object).collect())
        .map_err(|e| Error::Distribution {
            database: database.to_owned(),
            message: Error::describe(&e),
        })
    }

    /// On servers not created by us, give the login roles a known dev
    /// password (their own name) so tests can log in as them.
    pub fn set_dev_passwords(&self) -> Result<()> {
        self.set_dev_passwords_for(&[APP_ROLE, WORKER_ROLE])
    }

    /// [`Server::set_dev_passwords`] for the given login roles (another
    /// module's `<module>_app` and `<module>_worker`).
    pub fn set_dev_passwords_for(&self, roles: &[&str]) -> Result<()> {
        if self.is_own() {
            return Ok(());
        }
        for role in roles {
            self.execute_admin(&format!(
                "ALTER ROLE \"{r}\" PASSWORD '{r}'",
                r = role.replace('"', "\"\"")
            ))?;
        }
        Ok(())
    }

    /// The template database holding the migrated project schema, created
    /// on first use (once per process).
    pub fn template(&self) -> Result<&str> {
        let built = self.template.get_or_init(|| {
            let name = format!("attestor_template_{}", std::process::id());
            let build = || -> Result<String> {
                self.drop_database(&name)?;
                self.create_database(&name, Some("template0"))?;
                if !self.is_own() {
                    remember_for_exit_cleanup(self.node_admins(), name.clone());
                }
                self.migrate(&name, attestor_schema::MIGRATIONS)?;
                self.distribute(&name)?;
                self.set_dev_passwords()?;
                self.freeze_template(&name)?;
                Ok(name.clone())
            };
            build().map_err(|e| e.to_string())
        });
        match built {
            Ok(name) => Ok(name),
            Err(message) => Err(Error::Migration {
                database: "template".into(),
                message: message.clone(),
            }),
        }
    }

    /// Marks `name` a template on every node. On Citus it also refuses new
    /// connections and ends the ones it has: Citus' maintenance daemon and
    /// the nodes' cached connections sit in every Citus database, and a
    /// database cannot be cloned while anyone is connected to it.
    fn freeze_template(&self, name: &str) -> Result<()> {
        let citus = self.citus.is_some();
        on_each(&self.node_admins(), |admin| {
            execute_at(admin, &format!("ALTER DATABASE {} IS_TEMPLATE true", ident(name)))?;
            if citus {
                execute_at(
                    admin,
                    &format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", ident(name)),
                )?;
                execute_at(
                    admin,
                    &format!(
                        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
                          WHERE datname = {} AND pid <> pg_backend_pid()",
                        crate::citus::literal(name)
                    ),
                )?;
            }
            Ok(())
        })
    }

    /// A fresh database cloned from the migrated template, dropped again
    /// when the returned value is dropped.
    pub fn test_database(&self) -> Result<TestDatabase<'_>> {
        let template = self.template()?;
        let name = format!(
            "attestor_test_{}_{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        self.create_database(&name, Some(template))?;
        Ok(TestDatabase { server: self, name })
    }
}

/// A database of its own for one test, cloned from the template.
#[derive(Debug)]
pub struct TestDatabase<'s> {
    server: &'s Server,
    name: String,
}

impl TestDatabase<'_> {
    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server it lives on.
    pub fn server(&self) -> &Server {
        self.server
    }

    /// Superuser URL: for setup and inspection only. A superuser bypasses
    /// RLS, so isolation tests must never use it to read tenant rows.
    pub fn admin_url(&self) -> String {
        self.server.admin(&self.name).url()
    }

    /// URL for `attestor_app`, the role the application uses (RLS applies).
    pub fn app_url(&self) -> String {
        self.server.role(APP_ROLE, &self.name).url()
    }

    /// URL for `attestor_worker`, the queue workers' role (RLS applies).
    pub fn worker_url(&self) -> String {
        self.server.role(WORKER_ROLE, &self.name).url()
    }

    /// A superuser connection (setup/inspection only; see [`Self::admin_url`]).
    pub fn connect_admin(&self) -> Result<PgConnection> {
        self.server.connect_admin(&self.name)
    }

    /// A connection as `attestor_app`.
    pub fn connect_app(&self) -> Result<PgConnection> {
        let url = self.app_url();
        PgConnection::establish(&url).map_err(|source| Error::Connect { url, source })
    }
}

impl Drop for TestDatabase<'_> {
    fn drop(&mut self) {
        let _ = self.server.drop_database(&self.name);
    }
}

/// The process-wide server for tests: started on first use from
/// `DATABASE_URL` or as an embedded cluster, stopped when the process ends.
///
/// # Panics
/// When no server can be had; the message says why and how to fix it.
pub fn shared() -> &'static Server {
    static SERVER: OnceLock<std::result::Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(|| Server::from_env().map_err(|e| e.to_string())) {
        Ok(server) => server,
        Err(message) => panic!("no PostgreSQL server for tests: {message}"),
    }
}

/// Held while migrations run in this process (see [`Server::migrate`]); take
/// it too when driving a `MigrationHarness` by hand.
pub fn migration_lock() -> std::sync::MutexGuard<'static, ()> {
    static MIGRATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    MIGRATING.lock().unwrap_or_else(|p| p.into_inner())
}

fn execute_at(admin: &ConnParams, sql: &str) -> Result<()> {
    let url = admin.url();
    let mut conn = PgConnection::establish(&url).map_err(|source| Error::Connect { url, source })?;
    diesel::sql_query(sql)
        .execute(&mut conn)
        .map(|_| ())
        .map_err(|e| Error::sql(sql.to_owned(), e))
}

/// A server's version, as [`Server::version`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// `server_version_num`, e.g. `180006` for 18.6.
    pub num: u32,
    /// `server_version`, e.g. `18.6` or `15.20 (Debian 15.20-0+deb12u1)`.
    pub full: String,
}

impl std::fmt::Display for ServerVersion {
    /// `PostgreSQL 18.6`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgreSQL {}", self.full)
    }
}

impl ServerVersion {
    /// The major version (`15`, `18`).
    pub fn major(&self) -> u32 {
        self.num / 10_000
    }

    /// PostgreSQL `major` or newer.
    pub fn at_least(&self, major: u32) -> bool {
        self.major() >= major
    }
}

/// Drops `name` on each node in turn, the first (the coordinator) first.
fn drop_everywhere(admins: &[ConnParams], name: &str) -> Result<()> {
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name));
    let (first, rest) = admins.split_first().expect("at least one node");
    execute_at(first, &sql)?;
    on_each(rest, |a| execute_at(a, &sql))
}

fn has_distributed_tables(conn: &mut PgConnection) -> Result<bool> {
    #[derive(diesel::QueryableByName)]
    struct Any {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        any: bool,
    }
    diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition) AS any")
        .get_result::<Any>(conn)
        .map(|r| r.any)
        .map_err(|e| Error::sql("reading pg_dist_partition", e))
}

/// Quote an identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

type Cleanup = (Vec<ConnParams>, String);
static EXIT_CLEANUP: std::sync::Mutex<Vec<Cleanup>> = std::sync::Mutex::new(Vec::new());

extern "C" fn drop_templates_at_exit() {
    let Ok(list) = EXIT_CLEANUP.lock() else { return };
    for (admins, name) in list.iter() {
        for admin in admins {
            let _ = execute_at(
                admin,
                &format!("ALTER DATABASE {} IS_TEMPLATE false", ident(name)),
            );
        }
        let _ = drop_everywhere(admins, name);
    }
}

/// On servers we do not own, drop the per-process template (on every node)
/// when the process exits normally (an embedded cluster disappears as a
/// whole instead).
fn remember_for_exit_cleanup(admin: Vec<ConnParams>, name: String) {
    let mut list = EXIT_CLEANUP.lock().unwrap_or_else(|p| p.into_inner());
    if list.is_empty() {
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(drop_templates_at_exit);
        }
    }
    list.push((admin, name));
}
