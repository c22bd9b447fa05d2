//! `cargo xtask db up|down`: the development database.
//!
//! `up` starts a long-lived embedded cluster in `target/attestor-db` (or uses
//! `DATABASE_URL`'s server), creates the `attestor` database, runs every
//! migration and prints the admin, app and worker URLs. Against a Citus
//! coordinator (`DATABASE_URL=…/attestor`, the database already on every
//! node with the extension and the workers registered: the operator's part)
//! it then distributes the module (`citus/distribute.sql`, idempotent and
//! recorded), so a second `up` migrates and distributes nothing. `down` stops the
//! embedded cluster and deletes its files. It never touches other databases.

use std::process::ExitCode;

use anyhow::{Context, Result};
use attestor_testdb::cluster::{free_tcp_port, ClusterOptions};
use attestor_testdb::server::{APP_ROLE, WORKER_ROLE};
use attestor_testdb::{Cluster, ConnParams, PgBinaries, Server};

use xtask::cli::DbCommand;

use crate::util::root;

/// Name of the development database.
pub const DATABASE: &str = "attestor";

pub fn run(action: DbCommand) -> Result<ExitCode> {
    match action {
        DbCommand::Up => up(),
        DbCommand::Down => down(),
    }
}

fn state_dir() -> std::path::PathBuf {
    root().join("target").join("attestor-db")
}

fn up() -> Result<ExitCode> {
    let server = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Server::from_url(&url)?,
        _ => {
            let binaries = PgBinaries::find()?;
            let dir = state_dir();
            let port_file = root().join("target").join("attestor-db.port");
            let port = match std::fs::read_to_string(&port_file) {
                Ok(p) if dir.join("data").exists() => p.trim().parse().context("reading the port file")?,
                _ => free_tcp_port()?,
            };
            let options = ClusterOptions {
                tcp_port: Some(port),
                ..Default::default()
            };
            let cluster = Cluster::start_detached(&binaries, &dir, &options)?;
            std::fs::write(&port_file, port.to_string())?;
            Server::with_cluster(cluster)
        }
    };
    let mut admin = server.connect_admin(&server.admin("postgres").database)?;
    let exists: bool = {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Exists {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            exists: bool,
        }
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(DATABASE)
            .get_result::<Exists>(&mut admin)?
            .exists
    };
    drop(admin);
    if !exists {
        server.create_database(DATABASE, Some("template0"))?;
    }
    let ran = server.migrate(DATABASE, attestor_schema::MIGRATIONS)?;
    server.set_dev_passwords()?;
    println!(
        "migrations run: {}",
        if ran.is_empty() {
            "none (up to date)".into()
        } else {
            ran.join(", ")
        }
    );
    if let Some(nodes) = server.citus() {
        let done = server.distribute(DATABASE)?;
        println!(
            "citus coordinator with {} workers; distributed: {}",
            nodes.workers.len(),
            if done.is_empty() {
                "nothing (up to date)".into()
            } else {
                done.join(", ")
            }
        );
    }
    // Print TCP URLs for the embedded cluster: any client can use them.
    let reachable = |mut p: ConnParams| {
        if let Some(port) = server.cluster().and_then(|c| c.tcp_port()) {
            p.host = "127.0.0.1".into();
            p.port = port;
        }
        p.url()
    };
    println!(
        "admin  (superuser, bypasses RLS): {}",
        reachable(server.admin(DATABASE))
    );
    println!(
        "app    ({APP_ROLE}, RLS applies): {}",
        reachable(server.role(APP_ROLE, DATABASE))
    );
    println!(
        "worker ({WORKER_ROLE}, RLS applies): {}",
        reachable(server.role(WORKER_ROLE, DATABASE))
    );
    if server.cluster().is_some() {
        println!("the embedded cluster keeps running until `cargo xtask db down`");
    }
    Ok(ExitCode::SUCCESS)
}

fn down() -> Result<ExitCode> {
    let binaries = PgBinaries::find()?;
    let existed = Cluster::stop_detached(&binaries, &state_dir())?;
    let _ = std::fs::remove_file(root().join("target").join("attestor-db.port"));
    println!(
        "{}",
        if existed {
            "development cluster stopped and removed"
        } else {
            "no development cluster was running"
        }
    );
    Ok(ExitCode::SUCCESS)
}
