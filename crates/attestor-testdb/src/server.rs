//! The database server tests and tools talk to, its migrated template, and
//! one cloned database per test.
//!
//! Owns the choice between the embedded cluster and `DATABASE_URL`, the
//! template database (migrated once per process), and [`TestDatabase`], a
//! database cloned from the template that is dropped again when the value is
//! dropped. Role URLs for `attestor_app` / `attestor_worker` come from here so
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
            template: OnceLock::new(),
            counter: AtomicU64::new(0),
        }
    }

    /// Use an existing server; `url` must be a superuser's.
    pub fn from_url(url: &str) -> Result<Server> {
        let admin = ConnParams::parse(url)?;
        let server = Server {
            admin,
            cluster: None,
            template: OnceLock::new(),
            counter: AtomicU64::new(0),
        };
        server.connect_admin(&server.admin.database)?;
        Ok(server)
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
        let password = if self.cluster.is_some() { None } else { Some(role) };
        self.admin(database).with_user(role, password)
    }

    /// Open a superuser connection to `database`.
    pub fn connect_admin(&self, database: &str) -> Result<PgConnection> {
        let url = self.admin(database).url();
        PgConnection::establish(&url).map_err(|source| Error::Connect { url, source })
    }

    /// Run SQL as the superuser in the server's maintenance database.
    pub fn execute_admin(&self, sql: &str) -> Result<()> {
        let mut conn = self.connect_admin(&self.admin.database)?;
        diesel::sql_query(sql)
            .execute(&mut conn)
            .map(|_| ())
            .map_err(|e| Error::sql(sql.to_owned(), e))
    }

    /// `CREATE DATABASE name [TEMPLATE template]`, retrying while the
    /// template is briefly in use by another clone.
    pub fn create_database(&self, name: &str, template: Option<&str>) -> Result<()> {
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {} TEMPLATE {}", ident(name), ident(t)),
            None => format!("CREATE DATABASE {}", ident(name)),
        };
        let mut attempt = 0;
        loop {
            match self.execute_admin(&sql) {
                Err(Error::Sql { source, .. })
                    if attempt < 50 && source.to_string().contains("is being accessed by other users") =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// `DROP DATABASE IF EXISTS name WITH (FORCE)`.
    pub fn drop_database(&self, name: &str) -> Result<()> {
        self.execute_admin(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name)))
    }

    /// Run every pending migration of `source` in `database` as the
    /// superuser (the migrations themselves `SET LOCAL ROLE attestor_owner`).
    /// Returns the versions that ran.
    ///
    /// Runs are serialised within the process: the first migration creates
    /// cluster-wide roles, and two databases migrated at once would race on
    /// `CREATE ROLE`/`ALTER ROLE` (unique violation, "tuple concurrently
    /// updated").
    pub fn migrate<S: MigrationSource<Pg>>(&self, database: &str, source: S) -> Result<Vec<String>> {
        let _one_at_a_time = migration_lock();
        let mut conn = self.connect_admin(database)?;
        let ran = conn
            .run_pending_migrations(source)
            .map_err(|e| Error::Migration {
                database: database.to_owned(),
                message: e.to_string(),
            })?;
        Ok(ran.iter().map(|v| v.to_string()).collect())
    }

    /// On servers not created by us, give the login roles a known dev
    /// password (their own name) so tests can log in as them.
    pub fn set_dev_passwords(&self) -> Result<()> {
        if self.cluster.is_some() {
            return Ok(());
        }
        for role in [APP_ROLE, WORKER_ROLE] {
            self.execute_admin(&format!("ALTER ROLE {role} PASSWORD '{role}'"))?;
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
                self.migrate(&name, attestor_schema::MIGRATIONS)?;
                self.set_dev_passwords()?;
                self.execute_admin(&format!("ALTER DATABASE {} IS_TEMPLATE true", ident(&name)))?;
                if self.cluster.is_none() {
                    remember_for_exit_cleanup(self.admin.clone(), name.clone());
                }
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

/// Quote an identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

static EXIT_CLEANUP: std::sync::Mutex<Vec<(ConnParams, String)>> = std::sync::Mutex::new(Vec::new());

extern "C" fn drop_templates_at_exit() {
    let Ok(list) = EXIT_CLEANUP.lock() else { return };
    for (admin, name) in list.iter() {
        if let Ok(mut conn) = PgConnection::establish(&admin.url()) {
            let _ = diesel::sql_query(format!("ALTER DATABASE {} IS_TEMPLATE false", ident(name)))
                .execute(&mut conn);
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name)))
                .execute(&mut conn);
        }
    }
}

/// On servers we do not own, drop the per-process template when the process
/// exits normally (the embedded cluster disappears as a whole instead).
fn remember_for_exit_cleanup(admin: ConnParams, name: String) {
    let mut list = EXIT_CLEANUP.lock().unwrap_or_else(|p| p.into_inner());
    if list.is_empty() {
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(drop_templates_at_exit);
        }
    }
    list.push((admin, name));
}
