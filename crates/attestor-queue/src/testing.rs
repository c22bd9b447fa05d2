//! Deterministic stand-ins for tests, benchmarks and the crash-test worker.
//!
//! Owns [`fake_rekor_entry`] (a valid Rekor v1 API entry with a verifiable
//! single-leaf inclusion proof, derived only from its inputs) and
//! [`FakeSubmitter`]. Never use them in production: the "log" they
//! describe does not exist. They must never touch the database or network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::submitter::{BoxFuture, SubmitError, SubmitRequest, Submitter};

/// Log id used by the fakes (hex of sha256("attestor-queue fake log")).
pub fn fake_log_id() -> String {
    hex::encode(Sha256::digest(b"attestor-queue fake log"))
}

/// A Rekor v1 response `{"<uuid>": entry}` for a `dsse` entry whose body
/// names `job_id`, at global index `log_index`, with a one-leaf inclusion
/// proof (tree size 1, root = leaf hash) that verifies. The same inputs
/// always give the same entry (what a real log returns on resubmission).
pub fn fake_rekor_entry(job_id: Uuid, log_index: i64) -> serde_json::Value {
    let body = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {"job": job_id.to_string()},
    }))
    .expect("serializable");
    let leaf = attestor_formats::merkle::leaf_hash(&body);
    let uuid = hex::encode(leaf);
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::json!({
        uuid: {
            "body": b64.encode(&body),
            "integratedTime": 1_700_000_000i64,
            "logID": fake_log_id(),
            "logIndex": log_index,
            "verification": {
                "inclusionProof": {
                    "logIndex": 0,
                    "treeSize": 1,
                    "rootHash": hex::encode(leaf),
                    "hashes": [],
                },
                "signedEntryTimestamp": b64.encode(b"fake-set"),
            }
        }
    })
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
