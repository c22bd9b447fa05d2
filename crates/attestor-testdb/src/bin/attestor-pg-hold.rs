//! Test helper: start an ephemeral cluster, print its directory, then wait
//! to be killed. The harness tests SIGKILL this process and check that the
//! watchdog removed the cluster anyway.
fn main() {
    let binaries = attestor_testdb::PgBinaries::find().expect("server binaries");
    let cluster = attestor_testdb::Cluster::start_ephemeral(&binaries, &Default::default()).expect("cluster");
    println!("{}", cluster.root().display());
    std::thread::sleep(std::time::Duration::from_secs(600));
}
