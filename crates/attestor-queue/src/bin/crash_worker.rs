//! Crash-test worker: runs a [`attestor_queue::Worker`] with the fake
//! submitter until killed (the crash test SIGKILLs it at random moments).
//!
//! Usage: `attestor-queue-crash-worker <worker_url> <app_url> <worker_id> <mode>`,
//! `<mode>` the app pool's tenant context mode (`set_config` or `set_local`), or
//! `citus` for a coordinator (`DatabaseConfig::on_citus`).
//! Must never be used outside tests: its "log" is a deterministic fake.

use std::sync::Arc;
use std::time::Duration;

use attestor_queue::testing::{fake_trusted_root, FakeBehavior, FakeSubmitter};
use attestor_queue::{Worker, WorkerConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!(
            "usage: attestor-queue-crash-worker <worker_url> <app_url> <worker_id> <set_config|set_local|citus>"
        );
        std::process::exit(2);
    }
    let config = attestor_repo::DatabaseConfig::new(args[2].clone());
    let config = match args[4].as_str() {
        "citus" => config.on_citus(),
        mode => config.with_tenant_context_mode(mode.parse().expect("tenant context mode")),
    };
    let app = attestor_repo::Database::connect(config)
        .await
        .expect("app database");
    let submitter = Arc::new(FakeSubmitter::new(FakeBehavior::Succeed).with_delay(Duration::from_millis(2)));
    let config = WorkerConfig::new(args[3].clone(), Arc::new(fake_trusted_root()))
        .concurrency(8, 8)
        .lease(Duration::from_millis(1500))
        .poll_interval(Duration::from_millis(50));
    let handle = Worker::new(config, args[1].clone(), app, submitter).start();
    println!("ready");
    tokio::signal::ctrl_c().await.ok();
    handle.shutdown(Duration::from_secs(5)).await;
}
