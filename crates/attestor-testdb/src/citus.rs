//! Citus: finding the extension next to the server binaries, throwaway
//! Citus clusters (a coordinator and workers), and preparing a database on
//! every node of a coordinator.
//!
//! Owns three things:
//!
//! * [`CitusExtension::find`]: where the `citus` extension of the chosen
//!   server binaries is installed (`pg_config --sharedir`/`--pkglibdir` of
//!   the `pg_config` in that bin directory, or the `share`/`lib` next to it),
//!   or a one-line [`Error::CitusMissing`] saying where it looked;
//! * [`CitusCluster`]: one ephemeral [`Cluster`] per node, each in its own
//!   private directory on its own unix socket (no TCP), under the same
//!   watchdog as every throwaway cluster, with `shared_preload_libraries =
//!   citus` on these clusters only; the nodes reach each other through the
//!   socket directories, which is what they are registered under;
//! * [`Nodes`] and [`Nodes::prepare_database`]: the nodes of a coordinator
//!   as its metadata (`pg_dist_node`) lists them, and the operator's part of
//!   a Citus database — the database on every node, the extension in each,
//!   the coordinator and the workers registered.
//!
//! It never builds, downloads or installs Citus, and never preloads it into
//! a cluster it did not start.

use std::path::{Path, PathBuf};
use std::process::Command;

use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::cluster::{Cluster, ClusterOptions, SOCKET_PORT};
use crate::conn::ConnParams;
use crate::server::ident;
use crate::{Error, PgBinaries, Result};

/// Settings every node of a [`CitusCluster`] gets, on top of the
/// throwaway-cluster defaults.
const NODE_SETTINGS: &[(&str, &str)] = &[
    ("shared_preload_libraries", "citus"),
    // Multi-node writes commit with two-phase commit.
    ("max_prepared_transactions", "100"),
    // Shard moves copy with logical replication.
    ("wal_level", "logical"),
    // One maintenance daemon per Citus database; tests clone many databases.
    ("max_worker_processes", "64"),
    ("max_connections", "300"),
    // A throwaway cluster never reports usage statistics anywhere.
    ("citus.enable_statistics_collection", "off"),
];

/// Where the `citus` extension of one PostgreSQL installation lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitusExtension {
    /// `citus.control`.
    pub control: PathBuf,
    /// `citus.so` (or `citus.dylib`).
    pub library: PathBuf,
    /// `default_version` from the control file, e.g. `13.2-1`.
    pub version: String,
}

fn pg_config_dir(binaries: &PgBinaries, flag: &str) -> Option<PathBuf> {
    let pg_config = binaries.program("pg_config");
    if !pg_config.is_file() {
        return None;
    }
    let out = Command::new(pg_config).arg(flag).output().ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

impl CitusExtension {
    /// Finds the extension installed for `binaries`: the `pg_config` in
    /// that directory first, then the `share`/`lib` trees next to it (the
    /// layout of a relocatable installation).
    pub fn find(binaries: &PgBinaries) -> Result<Self> {
        let parent = binaries.dir().parent().map(Path::to_path_buf).unwrap_or_default();
        let mut share_dirs: Vec<PathBuf> = pg_config_dir(binaries, "--sharedir").into_iter().collect();
        share_dirs.push(parent.join("share"));
        share_dirs.push(parent.join("share").join("postgresql"));
        let mut lib_dirs: Vec<PathBuf> = pg_config_dir(binaries, "--pkglibdir").into_iter().collect();
        lib_dirs.push(parent.join("lib"));
        lib_dirs.push(parent.join("lib").join("postgresql"));
        let control = share_dirs
            .iter()
            .map(|d| d.join("extension").join("citus.control"))
            .find(|p| p.is_file());
        let library = lib_dirs
            .iter()
            .flat_map(|d| [d.join("citus.so"), d.join("citus.dylib")])
            .find(|p| p.is_file());
        match (control, library) {
            (Some(control), Some(library)) => {
                let text = std::fs::read_to_string(&control)
                    .map_err(|e| Error::io(format!("reading {}", control.display()), e))?;
                let version = text
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once('=')?;
                        (k.trim() == "default_version").then(|| v.trim().trim_matches('\'').to_owned())
                    })
                    .unwrap_or_default();
                Ok(CitusExtension {
                    control,
                    library,
                    version,
                })
            }
            _ => {
                let looked: Vec<String> = share_dirs
                    .iter()
                    .map(|d| d.join("extension").display().to_string())
                    .chain(lib_dirs.iter().map(|d| d.display().to_string()))
                    .collect();
                Err(Error::CitusMissing {
                    binaries: binaries.dir().display().to_string(),
                    looked: looked.join(", "),
                })
            }
        }
    }
}

/// A node as the coordinator's metadata names it (`pg_dist_node`): a host
/// name or a unix-socket directory, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `nodename`.
    pub host: String,
    /// `nodeport`.
    pub port: u16,
}

impl Node {
    /// The same credentials as `admin`, this node's address.
    pub fn params(&self, admin: &ConnParams) -> ConnParams {
        ConnParams {
            host: self.host.clone(),
            port: self.port,
            ..admin.clone()
        }
    }
}

/// The nodes of one Citus coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    /// The coordinator, as it is registered (`citus_set_coordinator_host`).
    pub coordinator: Node,
    /// The primary workers, in group order.
    pub workers: Vec<Node>,
}

#[derive(diesel::QueryableByName)]
struct NodeRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    host: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    port: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    group: i32,
}

#[derive(diesel::QueryableByName)]
struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    on: bool,
}

fn execute(conn: &mut PgConnection, sql: &str) -> Result<()> {
    diesel::sql_query(sql)
        .execute(conn)
        .map(|_| ())
        .map_err(|e| Error::sql(sql.to_owned(), e))
}

fn connect(params: &ConnParams) -> Result<PgConnection> {
    let url = params.url();
    PgConnection::establish(&url).map_err(|source| Error::Connect { url, source })
}

/// Runs `f` for every item at once, one thread each; the first error wins.
pub(crate) fn on_each<T: Sync>(items: &[T], f: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|item| s.spawn(|| f(item))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::io(
                        "a node thread panicked",
                        std::io::Error::other("panic"),
                    ))
                })
            })
            .collect::<Result<Vec<()>>>()
            .map(|_| ())
    })
}

impl Nodes {
    /// The nodes registered in the database `admin` points at, or `None`
    /// when that database has no `citus` extension (plain PostgreSQL).
    pub fn discover(admin: &ConnParams) -> Result<Option<Nodes>> {
        let mut conn = connect(admin)?;
        let has: Flag = diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') AS on",
        )
        .get_result(&mut conn)
        .map_err(|e| Error::sql("looking for the citus extension", e))?;
        if !has.on {
            return Ok(None);
        }
        let rows: Vec<NodeRow> = diesel::sql_query(
            "SELECT nodename::text AS host, nodeport AS port, groupid AS group \
               FROM pg_catalog.pg_dist_node \
              WHERE noderole = 'primary' AND isactive \
              ORDER BY groupid",
        )
        .load(&mut conn)
        .map_err(|e| Error::sql("reading pg_dist_node", e))?;
        let node = |r: &NodeRow| Node {
            host: r.host.clone(),
            port: u16::try_from(r.port).unwrap_or(SOCKET_PORT),
        };
        let coordinator = rows.iter().find(|r| r.group == 0).map(node).ok_or_else(|| {
            Error::BadUrl(format!(
                "database {} has the citus extension but no registered coordinator \
                 (SELECT citus_set_coordinator_host('<host>', <port>) on it)",
                admin.database
            ))
        })?;
        let workers = rows.iter().filter(|r| r.group != 0).map(node).collect();
        Ok(Some(Nodes { coordinator, workers }))
    }

    /// Every node, the coordinator first.
    pub fn all(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.coordinator).chain(&self.workers)
    }

    /// The operator's part of a Citus database, for a database that exists
    /// on no node yet: `CREATE DATABASE` on every node (from `template0`),
    /// `CREATE EXTENSION citus` in each, then the coordinator and every
    /// worker registered on the coordinator. `admin` is a superuser's
    /// parameters for the coordinator; its database, which must exist on
    /// every node, is where `CREATE DATABASE` runs.
    pub fn prepare_database(&self, admin: &ConnParams, name: &str) -> Result<()> {
        let nodes: Vec<&Node> = self.all().collect();
        on_each(&nodes, |n| {
            let p = n.params(admin);
            execute(
                &mut connect(&p)?,
                &format!("CREATE DATABASE {} TEMPLATE template0", ident(name)),
            )?;
            execute(&mut connect(&p.with_database(name))?, "CREATE EXTENSION citus")
        })?;
        let mut coordinator = connect(&self.coordinator.params(admin).with_database(name))?;
        execute(
            &mut coordinator,
            &format!(
                "SELECT citus_set_coordinator_host({}, {})",
                literal(&self.coordinator.host),
                self.coordinator.port
            ),
        )?;
        for w in &self.workers {
            execute(
                &mut coordinator,
                &format!("SELECT citus_add_node({}, {})", literal(&w.host), w.port),
            )?;
        }
        Ok(())
    }
}

impl Nodes {
    /// Adds `worker`, a running node not registered yet, to the coordinator
    /// of `database`, the way an operator adds a worker: the database on the
    /// new node (from `template0`) with the extension, `citus_add_node` on
    /// the coordinator (which copies the roles, schemas, functions and
    /// metadata there), then [`attestor_schema::CITUS_REBALANCE`] to move
    /// shards onto it. Returns how many shard placements the new node holds
    /// afterwards.
    pub fn add_worker(&self, admin: &ConnParams, database: &str, worker: &Node) -> Result<i64> {
        let p = worker.params(admin);
        execute(
            &mut connect(&p)?,
            &format!("CREATE DATABASE {} TEMPLATE template0", ident(database)),
        )?;
        execute(
            &mut connect(&p.with_database(database))?,
            "CREATE EXTENSION citus",
        )?;
        let mut coordinator = connect(&self.coordinator.params(admin).with_database(database))?;
        execute(
            &mut coordinator,
            &format!(
                "SELECT citus_add_node({}, {})",
                literal(&worker.host),
                worker.port
            ),
        )?;
        diesel::connection::SimpleConnection::batch_execute(
            &mut coordinator,
            attestor_schema::CITUS_REBALANCE,
        )
        .map_err(|e| Error::sql("citus/rebalance.sql", e))?;
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let sql = format!(
            "SELECT count(*) AS n FROM pg_catalog.citus_shards WHERE nodename = {} AND nodeport = {}",
            literal(&worker.host),
            worker.port
        );
        diesel::sql_query(&sql)
            .get_result::<Count>(&mut coordinator)
            .map(|c| c.n)
            .map_err(|e| Error::sql(sql, e))
    }
}

/// A SQL string literal.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A throwaway Citus cluster: a coordinator and workers, each an ephemeral
/// [`Cluster`] (its own directory, socket and watchdog). Dropping it stops
/// every node and deletes its files.
#[derive(Debug)]
pub struct CitusCluster {
    extension: CitusExtension,
    coordinator: Cluster,
    workers: Vec<Cluster>,
}

impl CitusCluster {
    /// Starts a coordinator and `workers` workers from `binaries`, which
    /// must have the `citus` extension installed. The nodes are started
    /// together; nothing is registered yet (see [`Nodes::prepare_database`]).
    pub fn start(binaries: &PgBinaries, workers: usize, options: &ClusterOptions) -> Result<CitusCluster> {
        let extension = CitusExtension::find(binaries)?;
        let started: Vec<Result<Cluster>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..=workers)
                .map(|_| s.spawn(|| CitusCluster::start_node(binaries, options)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::io("starting a node", std::io::Error::other("panic"))))
                })
                .collect()
        });
        let mut nodes = Vec::with_capacity(started.len());
        for node in started {
            nodes.push(node?);
        }
        let coordinator = nodes.remove(0);
        Ok(CitusCluster {
            extension,
            coordinator,
            workers: nodes,
        })
    }

    /// Starts one more node like the cluster's (its own directory, socket and
    /// watchdog, Citus preloaded), registered nowhere: a worker to add to a
    /// running cluster (`citus_add_node`, then a rebalance). It stops when
    /// the returned cluster is dropped.
    pub fn start_node(binaries: &PgBinaries, options: &ClusterOptions) -> Result<Cluster> {
        CitusExtension::find(binaries)?;
        let mut options = options.clone();
        options.settings.extend(
            NODE_SETTINGS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Cluster::start_ephemeral_with(binaries, &options, citus_local_hostname)
    }

    /// The extension the nodes run.
    pub fn extension(&self) -> &CitusExtension {
        &self.extension
    }

    /// The coordinator's cluster.
    pub fn coordinator(&self) -> &Cluster {
        &self.coordinator
    }

    /// The workers' clusters.
    pub fn workers(&self) -> &[Cluster] {
        &self.workers
    }

    /// The nodes as they are registered: each by its socket directory.
    pub fn nodes(&self) -> Nodes {
        let node = |c: &Cluster| Node {
            host: c.root().display().to_string(),
            port: SOCKET_PORT,
        };
        Nodes {
            coordinator: node(&self.coordinator),
            workers: self.workers.iter().map(node).collect(),
        }
    }

    /// Superuser parameters for `database` on the coordinator.
    pub fn admin(&self, database: &str) -> ConnParams {
        self.coordinator.superuser(database)
    }
}

/// Each node's own address for connections to itself (Citus defaults to
/// `localhost`, which a socket-only node does not listen on).
fn citus_local_hostname(root: &Path) -> Vec<(String, String)> {
    vec![("citus.local_hostname".into(), root.display().to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake installation under a fresh directory: `bin/` with the
    /// required (empty) programs; returns the directory and its binaries.
    fn fake_install(name: &str) -> (PathBuf, PgBinaries) {
        let dir = std::env::temp_dir().join(format!("attestor-testdb-{name}-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for b in crate::binaries::REQUIRED {
            std::fs::write(bin.join(b), "").unwrap();
        }
        let binaries = PgBinaries::find_in(&crate::binaries::SearchPaths {
            override_dir: Some(bin),
            ..Default::default()
        })
        .unwrap();
        (dir, binaries)
    }

    #[test]
    fn missing_extension_says_where_it_looked_in_one_line() {
        let (dir, binaries) = fake_install("no-citus");
        let err = CitusExtension::find(&binaries).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::CitusMissing { .. }), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert!(
            msg.contains(&dir.join("share").join("extension").display().to_string()),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_an_extension_next_to_the_binaries() {
        let (dir, binaries) = fake_install("fake-citus");
        std::fs::create_dir_all(dir.join("share/extension")).unwrap();
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(
            dir.join("share/extension/citus.control"),
            "comment = 'Citus'\ndefault_version = '13.2-1'\n",
        )
        .unwrap();
        std::fs::write(dir.join("lib/citus.so"), "").unwrap();
        let ext = CitusExtension::find(&binaries).unwrap();
        assert_eq!(ext.version, "13.2-1");
        assert_eq!(ext.library, dir.join("lib/citus.so"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
