//! A private PostgreSQL cluster started from the local server binaries.
//!
//! Owns the cluster's life cycle: `initdb` into a fresh directory, start the
//! postmaster on a unix socket in that directory, wait until it accepts
//! connections, and stop it again. Two flavours:
//!
//! * [`Cluster::start_ephemeral`]: the postmaster runs under a tiny `sh`
//!   watchdog whose stdin is a pipe held by this process. When the pipe closes
//!   — the process exits, panics, is killed with SIGKILL, or the [`Cluster`]
//!   is dropped — the watchdog stops the postmaster (immediate shutdown) and
//!   deletes the directory. No `postgres` process can outlive its owner.
//! * [`Cluster::start_detached`]: a long-lived development cluster in a fixed
//!   directory (`cargo xtask db up`), stopped by [`Cluster::stop_detached`].
//!
//! As root (CI, containers) every server binary runs as the `postgres` user,
//! because `initdb` refuses to run as root. This module never downloads
//! anything and never touches a cluster it did not create.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection};

use crate::conn::ConnParams;
use crate::{Error, PgBinaries, Result};

/// The superuser `initdb` creates (trust authentication, private socket).
pub const SUPERUSER: &str = "postgres";
/// The port number; it only names the socket file inside the private
/// directory, so it never collides with another server.
pub const SOCKET_PORT: u16 = 5432;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Server settings for throwaway clusters: fast and disposable.
const FAST_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "200"),
    ("shared_buffers", "128MB"),
];

/// How a cluster should be configured.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Keep `fsync`/`synchronous_commit` on (benchmarks that claim durability).
    pub durable: bool,
    /// Also listen on 127.0.0.1 at this TCP port.
    pub tcp_port: Option<u16>,
    /// Extra `-c name=value` settings.
    pub settings: Vec<(String, String)>,
    /// A command the postmaster runs under (ephemeral clusters only), e.g.
    /// `["valgrind", "--tool=callgrind", …]` for `cargo xtask bench
    /// guard-cost`; empty for none. Backends are forked, so they run under it too.
    pub wrapper: Vec<String>,
}

/// A running cluster; see the module docs for the two flavours.
#[derive(Debug)]
pub struct Cluster {
    binaries: PgBinaries,
    root: PathBuf,
    tcp_port: Option<u16>,
    watchdog: Option<Watchdog>,
}

#[derive(Debug)]
struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

/// The user to run server binaries as: `postgres` when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

fn run_as() -> Result<Option<RunAs>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new(SUPERUSER).expect("no NUL");
    // SAFETY: getpwnam returns a pointer to static storage or NULL; we copy
    // the two fields out immediately and never keep the pointer.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(Error::io(
            "running as root requires a `postgres` system user to run the server binaries \
             (installing the `postgresql` package creates it)",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    // SAFETY: pw is non-null and points to a valid passwd struct.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some(RunAs { uid, gid }))
}

fn command_as(program: &Path, who: Option<RunAs>) -> Command {
    let mut cmd = Command::new(program);
    if let Some(who) = who {
        cmd.uid(who.uid).gid(who.gid);
    }
    // Server processes should not inherit a locale that initdb dislikes.
    cmd.env("LC_ALL", "C");
    cmd
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running {what}"), e))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(Error::Command {
            command: what.to_owned(),
            status: out.status.to_string(),
            output: text,
        });
    }
    Ok(text)
}

fn make_private_dir(path: &Path, who: Option<RunAs>) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
    if let Some(who) = who {
        std::os::unix::fs::chown(path, Some(who.uid), Some(who.gid))
            .map_err(|e| Error::io(format!("chown {} to postgres", path.display()), e))?;
    }
    Ok(())
}

/// The watchdog: starts the postmaster, waits for EOF on stdin, then stops
/// it and removes the cluster directory.
const WATCHDOG_SCRIPT: &str = r#"
root="$1"; log="$2"; shift 2
"$@" </dev/null >>"$log" 2>&1 &
pid=$!
trap '' INT TERM HUP
while read -r _line; do :; done
kill -QUIT "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$root"
"#;

impl Cluster {
    /// `initdb` a fresh cluster in a new temporary directory and start it
    /// under the watchdog. Dropping the value (or ending the process) stops
    /// the server and deletes its files.
    pub fn start_ephemeral(binaries: &PgBinaries, options: &ClusterOptions) -> Result<Cluster> {
        Self::start_ephemeral_with(binaries, options, |_| Vec::new())
    }

    /// [`Cluster::start_ephemeral`] with extra settings that depend on the
    /// cluster's own directory (known only once it is made), e.g. a node's
    /// address for connections to itself.
    pub fn start_ephemeral_with(
        binaries: &PgBinaries,
        options: &ClusterOptions,
        own_settings: impl FnOnce(&Path) -> Vec<(String, String)>,
    ) -> Result<Cluster> {
        let who = run_as()?;
        let root = std::env::temp_dir().join(format!(
            "attestor-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        make_private_dir(&root, who)?;
        let mut options = options.clone();
        options.settings.extend(own_settings(&root));
        let options = &options;
        let mut cluster = Cluster {
            binaries: binaries.clone(),
            root: root.clone(),
            tcp_port: options.tcp_port,
            watchdog: None,
        };
        let result = (|| {
            cluster.initdb(who)?;
            let mut cmd = command_as(Path::new("/bin/sh"), who);
            cmd.arg("-c")
                .arg(WATCHDOG_SCRIPT)
                .arg("attestor-pg-watchdog")
                .arg(&root)
                .arg(cluster.log_file())
                .args(&options.wrapper)
                .arg(binaries.program("postgres"))
                .arg("-D")
                .arg(cluster.data_dir())
                .args(cluster.server_args(options))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0);
            let mut child = cmd
                .spawn()
                .map_err(|e| Error::io("starting the PostgreSQL watchdog", e))?;
            let stdin = child.stdin.take();
            cluster.watchdog = Some(Watchdog { child, stdin });
            cluster.wait_ready()
        })();
        match result {
            Ok(()) => Ok(cluster),
            Err(e) => {
                drop(cluster);
                let _ = fs::remove_dir_all(&root);
                Err(e)
            }
        }
    }

    /// Start (or reuse, if already running) a long-lived cluster in `root`,
    /// listening on the private socket and on 127.0.0.1:`tcp_port`.
    pub fn start_detached(binaries: &PgBinaries, root: &Path, options: &ClusterOptions) -> Result<Cluster> {
        let who = run_as()?;
        let mut cluster = Cluster {
            binaries: binaries.clone(),
            root: root.to_path_buf(),
            tcp_port: options.tcp_port,
            watchdog: None,
        };
        if cluster.is_running_detached(who) {
            return Ok(cluster);
        }
        if !cluster.data_dir().join("PG_VERSION").exists() {
            make_private_dir(root, who)?;
            cluster.initdb(who)?;
        }
        let opts = cluster
            .server_args(options)
            .into_iter()
            .map(|a| {
                if a.contains(' ') || a.is_empty() {
                    format!("'{a}'")
                } else {
                    a
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        run(
            command_as(&binaries.program("pg_ctl"), who)
                .arg("-D")
                .arg(cluster.data_dir())
                .arg("-l")
                .arg(cluster.log_file())
                .arg("-o")
                .arg(opts)
                .arg("-w")
                .arg("start"),
            "pg_ctl start",
        )?;
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// Stop a detached cluster in `root` and delete its files. Succeeds when
    /// there is nothing to stop.
    pub fn stop_detached(binaries: &PgBinaries, root: &Path) -> Result<bool> {
        let who = run_as()?;
        let data = root.join("data");
        let existed = data.join("PG_VERSION").exists();
        if data.join("postmaster.pid").exists() {
            run(
                command_as(&binaries.program("pg_ctl"), who)
                    .arg("-D")
                    .arg(&data)
                    .arg("-m")
                    .arg("fast")
                    .arg("-w")
                    .arg("stop"),
                "pg_ctl stop",
            )?;
        }
        if root.exists() {
            fs::remove_dir_all(root).map_err(|e| Error::io(format!("removing {}", root.display()), e))?;
        }
        Ok(existed)
    }

    fn is_running_detached(&self, who: Option<RunAs>) -> bool {
        self.data_dir().join("postmaster.pid").exists()
            && command_as(&self.binaries.program("pg_ctl"), who)
                .arg("-D")
                .arg(self.data_dir())
                .arg("status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
    }

    fn initdb(&self, who: Option<RunAs>) -> Result<()> {
        run(
            command_as(&self.binaries.program("initdb"), who)
                .arg("-D")
                .arg(self.data_dir())
                .args([
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]),
            "initdb",
        )
        .map(|_| ())
    }

    fn server_args(&self, options: &ClusterOptions) -> Vec<String> {
        let mut args = vec![
            "-k".to_owned(),
            self.root.display().to_string(),
            "-p".to_owned(),
            SOCKET_PORT.to_string(),
        ];
        let listen = match options.tcp_port {
            Some(_) => "127.0.0.1",
            None => "",
        };
        args.push("-c".into());
        args.push(format!("listen_addresses={listen}"));
        if let Some(port) = options.tcp_port {
            // The socket file is named after the port, so both share it.
            args[3] = port.to_string();
        }
        if !options.durable {
            for (k, v) in FAST_SETTINGS {
                args.push("-c".into());
                args.push(format!("{k}={v}"));
            }
        }
        for (k, v) in &options.settings {
            args.push("-c".into());
            args.push(format!("{k}={v}"));
        }
        args
    }

    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        let url = self.superuser("postgres").url();
        loop {
            if PgConnection::establish(&url).is_ok() {
                return Ok(());
            }
            let exited = match &mut self.watchdog {
                Some(w) => w.child.try_wait().ok().flatten(),
                None => None,
            };
            if exited.is_some() || started.elapsed() >= READY_TIMEOUT {
                return Err(Error::NotReady {
                    seconds: started.elapsed().as_secs(),
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The cluster directory (socket, data, log).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// The server log so far (for error messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_file()).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// The binaries the cluster runs from.
    pub fn binaries(&self) -> &PgBinaries {
        &self.binaries
    }

    /// Connection parameters for the superuser and `database`, over the
    /// private unix socket.
    pub fn superuser(&self, database: &str) -> ConnParams {
        ConnParams::unix_socket(
            &self.root,
            self.tcp_port.unwrap_or(SOCKET_PORT),
            SUPERUSER,
            database,
        )
    }

    /// The TCP port, for detached clusters started with one.
    pub fn tcp_port(&self) -> Option<u16> {
        self.tcp_port
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            if let Some(mut stdin) = w.stdin.take() {
                let _ = stdin.flush();
            }
            // stdin is closed now: the watchdog stops the server and cleans up.
            let _ = w.child.wait();
        }
    }
}

/// A free TCP port on 127.0.0.1 (racy by nature; good enough for a dev
/// cluster, which reports the clash clearly if it happens).
pub fn free_tcp_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("finding a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port", e))
}
