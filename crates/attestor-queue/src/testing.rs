//! Deterministic stand-ins for tests, benchmarks and the crash-test worker
//! (feature `test-support`).
//!
//! Owns [`fake_log`] (a transparency log of the tests' own, with a key made
//! from a fixed seed, and [`fake_trusted_root`], the trusted root that lists
//! it), [`fake_rekor_entry`] (a Rekor v1 API entry that this log really
//! signed: a one-leaf tree whose checkpoint and SET verify with its key,
//! derived only from its inputs) and [`FakeSubmitter`]. Never use them in
//! production: the "log" they describe does not exist, and its private key
//! is derived from a constant. They must never touch the database or network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use attestor_transparency::testlog::{to_rekor_v1_response, Style, TestLog};
use attestor_transparency::TrustedRoot;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::submitter::{BoxFuture, SubmitError, SubmitRequest, Submitter};

/// The fakes' log: Ed25519 (fast to sign and verify, which the benchmarks
/// need), entries in the Rekor v1 style (integrated time and SET).
pub fn fake_log() -> &'static TestLog {
    static LOG: OnceLock<TestLog> = OnceLock::new();
    LOG.get_or_init(|| TestLog::ed25519(0x51, "fake-log.attestor-queue.test"))
}

/// The trusted root that lists [`fake_log`] (and nothing else).
pub fn fake_trusted_root() -> TrustedRoot {
    TestLog::trusted_root(&[fake_log()])
}

/// Log id of [`fake_log`] (lowercase hex).
pub fn fake_log_id() -> String {
    fake_log().log.log_id_hex()
}

/// A Rekor v1 response `{"<uuid>": entry}` for a `dsse` entry whose body
/// names `job_id`, at global index `log_index`, signed by [`fake_log`]: a
/// one-leaf tree (size 1, root = the leaf hash) with its signed checkpoint,
/// and the SET over the body, integrated time, log id and `log_index`. The
/// same inputs always give the same entry (what a real log returns on
/// resubmission; Ed25519 signatures are deterministic).
pub fn fake_rekor_entry(job_id: Uuid, log_index: i64) -> serde_json::Value {
    let body = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {"job": job_id.to_string()},
    }))
    .expect("serializable");
    let log = fake_log();
    let mut entry = log.entry(Style::V1, &[body], 0);
    entry.log_index = log_index;
    log.resign_set(&mut entry);
    serde_json::from_slice(&to_rekor_v1_response(&entry)).expect("the test log writes JSON")
}

/// A log index derived from the job id (stable across resubmissions).
pub fn fake_log_index(job_id: Uuid) -> i64 {
    let d = Sha256::digest(job_id.as_bytes());
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&d[..6]);
    i64::from_be_bytes(b)
}

/// What [`FakeSubmitter`] does with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeBehavior {
    /// Succeed.
    Succeed,
    /// Fail retryably this many times, then succeed.
    FailTimes(u32),
    /// Always fail retryably.
    AlwaysRetryable,
    /// Always fail permanently.
    AlwaysPermanent,
}

/// A submitter that returns [`fake_rekor_entry`] for each job (optionally
/// after a delay or some failures) and records the order of submissions.
#[derive(Debug)]
pub struct FakeSubmitter {
    /// Simulated latency per submission.
    pub delay: Duration,
    /// What to do.
    pub behavior: FakeBehavior,
    /// Whether the worker should load the envelope.
    pub needs_envelope: bool,
    calls: AtomicU64,
    log: Mutex<Vec<(Uuid, Uuid)>>,
    failures: Mutex<std::collections::HashMap<Uuid, u32>>,
}

impl FakeSubmitter {
    /// A submitter with `behavior` and no delay.
    pub fn new(behavior: FakeBehavior) -> Self {
        FakeSubmitter {
            delay: Duration::ZERO,
            behavior,
            needs_envelope: false,
            calls: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            failures: Mutex::new(Default::default()),
        }
    }

    /// Set the simulated latency.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Ask the worker to load envelopes.
    pub fn with_envelope(mut self) -> Self {
        self.needs_envelope = true;
        self
    }

    /// Number of submit calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// `(tenant_id, job_id)` of every successful submission, in order.
    pub fn successes(&self) -> Vec<(Uuid, Uuid)> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Submitter for FakeSubmitter {
    fn needs_envelope(&self) -> bool {
        self.needs_envelope
    }

    fn submit<'a>(
        &'a self,
        request: &'a SubmitRequest,
    ) -> BoxFuture<'a, Result<serde_json::Value, SubmitError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let job = request.job.job_id();
            let fail = match self.behavior {
                FakeBehavior::Succeed => None,
                FakeBehavior::AlwaysRetryable => Some(SubmitError::Retryable("fake: log unavailable".into())),
                FakeBehavior::AlwaysPermanent => Some(SubmitError::Permanent("fake: entry refused".into())),
                FakeBehavior::FailTimes(n) => {
                    let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
                    let count = f.entry(job).or_insert(0);
                    if *count < n {
                        *count += 1;
                        Some(SubmitError::Retryable(format!("fake: failure {}", *count)))
                    } else {
                        None
                    }
                }
            };
            if let Some(e) = fail {
                return Err(e);
            }
            self.log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((request.job.tenant_id(), job));
            Ok(fake_rekor_entry(job, fake_log_index(job)))
        })
    }
}

/// A [`fake_rekor_entry`] answer verified against [`fake_trusted_root`], as
/// the worker verifies it before completing (panics if it does not verify:
/// the fakes' own entries always do).
pub fn fake_verified(value: &serde_json::Value) -> attestor_transparency::VerifiedTlogEntry {
    static ROOT: OnceLock<TrustedRoot> = OnceLock::new();
    let root = ROOT.get_or_init(fake_trusted_root);
    crate::worker::verify_log_answer(
        value,
        root,
        &attestor_formats::Limits::default(),
        chrono::Utc::now(),
    )
    .expect("the fake log's entries verify against its trusted root")
}
