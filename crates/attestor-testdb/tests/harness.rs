//! The throwaway-PostgreSQL harness keeps its promises: a database per test,
//! clones that do not see each other, and no server left behind.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};

#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

#[test]
fn parallel_tests_each_get_their_own_database() {
    let server = attestor_testdb::shared();
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let db = server.test_database().expect("test database");
                let mut conn = db.connect_admin().unwrap();
                diesel::sql_query(format!("CREATE TABLE public.marker_{i} ()"))
                    .execute(&mut conn)
                    .unwrap();
                // Both databases exist at the same time here.
                barrier.wait();
                let tables: Vec<Name> = diesel::sql_query(
                    "SELECT tablename::text AS name FROM pg_tables WHERE tablename LIKE 'marker_%'",
                )
                .load(&mut conn)
                .unwrap();
                barrier.wait();
                (
                    db.name().to_owned(),
                    tables.into_iter().map(|t| t.name).collect::<Vec<_>>(),
                )
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(results[0].0, results[1].0, "each test gets its own database");
    assert_eq!(results[0].1, vec!["marker_0".to_owned()]);
    assert_eq!(results[1].1, vec!["marker_1".to_owned()]);
}

#[test]
fn clones_are_migrated_and_app_role_is_not_a_superuser() {
    let db = attestor_testdb::shared().test_database().unwrap();
    let mut app = db.connect_app().unwrap();
    #[derive(diesel::QueryableByName)]
    struct Who {
        #[diesel(sql_type = diesel::sql_types::Text)]
        user: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        superuser: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        bypassrls: bool,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        tables: i64,
    }
    let who: Who = diesel::sql_query(
        "SELECT current_user::text AS user, rolsuper AS superuser, rolbypassrls AS bypassrls, \
         (SELECT count(*) FROM pg_tables WHERE schemaname = 'attestor') AS tables \
         FROM pg_roles WHERE rolname = current_user",
    )
    .get_result(&mut app)
    .unwrap();
    assert_eq!(who.user, "attestor_app");
    assert!(!who.superuser && !who.bypassrls);
    assert!(who.tables >= 8, "template is migrated, got {} tables", who.tables);
}

#[test]
fn dropping_a_test_database_removes_it() {
    let server = attestor_testdb::shared();
    let db = server.test_database().unwrap();
    let name = db.name().to_owned();
    drop(db);
    let mut conn = server.connect_admin("postgres").unwrap();
    let left: Vec<Name> =
        diesel::sql_query("SELECT datname::text AS name FROM pg_database WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(&name)
            .load(&mut conn)
            .unwrap();
    assert!(left.is_empty(), "{name} still exists");
}

fn postgres_processes_for(dir: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmd| {
            let cmd = String::from_utf8_lossy(cmd);
            cmd.contains(dir) && !cmd.contains("attestor-pg-watchdog")
        })
        .count()
}

#[test]
fn a_killed_owner_leaves_no_server_and_no_files_behind() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_attestor-pg-hold"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let dir = line.trim().to_owned();
    assert!(
        std::path::Path::new(&dir).join("data").exists(),
        "cluster started in {dir}"
    );
    assert!(postgres_processes_for(&dir) > 0, "a postmaster runs for {dir}");
    // SIGKILL: no destructor, no atexit; only the watchdog can clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (std::path::Path::new(&dir).exists() || postgres_processes_for(&dir) > 0)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(postgres_processes_for(&dir), 0, "postgres outlived its owner");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} was not removed");
}

#[test]
fn cloning_is_fast_enough_to_do_per_test() {
    // Not a timing assertion (the machine is shared): report the figure and
    // check the clone is complete.
    let server = attestor_testdb::shared();
    server.template().unwrap();
    let started = Instant::now();
    let db = server.test_database().unwrap();
    let elapsed = started.elapsed();
    eprintln!("cloned {} from the template in {elapsed:?}", db.name());
    let mut conn = PgConnection::establish(&db.admin_url()).unwrap();
    let n: Vec<Name> = diesel::sql_query("SELECT relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'attestor' AND relkind = 'r'")
        .load(&mut conn)
        .unwrap();
    assert!(n.len() >= 8);
}

#[test]
fn a_wrapper_runs_the_postmaster_itself() {
    use std::os::unix::fs::PermissionsExt;
    // The wrapper writes its own pid and then execs the postmaster, so the
    // pid in postmaster.pid is the wrapper's only if the postmaster really
    // runs under it (as `bench guard-cost` runs it under valgrind).
    let dir = std::env::temp_dir().join(format!("attestor-wrapper-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let marker = dir.join("wrapper.pid");
    let options = attestor_testdb::cluster::ClusterOptions {
        wrapper: vec![
            "/bin/sh".into(),
            "-c".into(),
            r#"echo $$ > "$0"; exec "$@""#.into(),
            marker.display().to_string(),
        ],
        ..Default::default()
    };
    let binaries = attestor_testdb::PgBinaries::find().unwrap();
    let cluster = attestor_testdb::cluster::Cluster::start_ephemeral(&binaries, &options).unwrap();
    let mut conn = PgConnection::establish(&cluster.superuser("postgres").url()).unwrap();
    let one: Vec<Name> = diesel::sql_query("SELECT 'up' AS name").load(&mut conn).unwrap();
    assert_eq!(one[0].name, "up");
    let wrapper_pid = std::fs::read_to_string(&marker).expect("the wrapper ran");
    let postmaster_pid = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid")).unwrap();
    assert_eq!(
        wrapper_pid.trim(),
        postmaster_pid.lines().next().unwrap().trim(),
        "the postmaster is the process the wrapper exec'd"
    );
    drop(conn);
    drop(cluster);
    std::fs::remove_dir_all(&dir).unwrap();
}
