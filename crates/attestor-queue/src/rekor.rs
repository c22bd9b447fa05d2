//! The real submitter: Rekor's v1 HTTP API.
//!
//! Owns [`RekorSubmitter`]: `POST {base}/api/v1/log/entries` with a proposed
//! entry built from the job's envelope, and the mapping of HTTP outcomes to
//! the queue's retry policy:
//!
//! | response                         | outcome                                        |
//! |----------------------------------|------------------------------------------------|
//! | 201 Created                      | the returned entry (checked, see below)        |
//! | 409 Conflict                     | fetch the existing entry (`Location`, else `/retrieve`) and use it |
//! | 408, 429, 5xx, timeout, I/O      | [`SubmitError::Retryable`]                     |
//! | any other 4xx                    | [`SubmitError::Permanent`] (dead-letter)       |
//!
//! A returned entry must parse and its inclusion proof, when present, must
//! lead to its stated root; one that does not is [`SubmitError::Retryable`].
//! Whether the entry is *evidence* (signed by a log of the trusted root) is
//! decided in one place, by the worker before it stores anything
//! ([`crate::worker::verify_log_answer`], against the trusted root its
//! [`crate::WorkerConfig`] requires), not here.
//!
//! It must never touch the database, never follow redirects to another
//! host, and never return an entry that does not parse.

use std::sync::Arc;
use std::time::Duration;

use attestor_formats::{Limits, TlogEntry};
use base64::Engine as _;
use serde_json::Value;

use crate::submitter::{BoxFuture, SubmitError, SubmitRequest, Submitter};

/// Builds the proposed entry (request body) for a job.
pub type ProposedEntryFn = dyn Fn(&SubmitRequest) -> Result<Value, SubmitError> + Send + Sync;

/// HTTP client for Rekor v1.
#[derive(Clone)]
pub struct RekorSubmitter {
    base: String,
    client: reqwest::Client,
    proposed: Arc<ProposedEntryFn>,
    limits: Limits,
}

impl std::fmt::Debug for RekorSubmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RekorSubmitter")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The default proposed entry: Rekor's `dsse` kind v0.0.1 with the envelope
/// as received and `verifiers` (base64 of PEM public keys) taken from the
/// envelope's signatures' `publicKey` fields when present. Deployments that
/// keep keys elsewhere pass their own builder to
/// [`RekorSubmitter::with_proposed_entry`].
pub fn dsse_proposed_entry(request: &SubmitRequest) -> Result<Value, SubmitError> {
    let envelope = request
        .envelope
        .as_ref()
        .ok_or_else(|| SubmitError::Permanent("no envelope to submit".into()))?;
    let verifiers: Vec<Value> = envelope
        .get("signatures")
        .and_then(Value::as_array)
        .map(|sigs| {
            sigs.iter()
                .filter_map(|s| s.get("publicKey").and_then(Value::as_str))
                .map(|pem| Value::String(base64::engine::general_purpose::STANDARD.encode(pem)))
                .collect()
        })
        .unwrap_or_default();
    let envelope_text =
        serde_json::to_string(envelope).map_err(|e| SubmitError::Permanent(format!("envelope: {e}")))?;
    Ok(serde_json::json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "proposedContent": {
                "envelope": envelope_text,
                "verifiers": verifiers,
            }
        }
    }))
}

impl RekorSubmitter {
    /// A submitter for the Rekor instance at `base` (e.g.
    /// `https://rekor.sigstore.dev`), with a 30 s request timeout.
    pub fn new(base: impl Into<String>) -> Result<Self, SubmitError> {
        Self::with_timeout(base, Duration::from_secs(30))
    }

    /// Same, with a request timeout.
    pub fn with_timeout(base: impl Into<String>, timeout: Duration) -> Result<Self, SubmitError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("attestor-queue/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SubmitError::Permanent(format!("building the HTTP client: {e}")))?;
        Ok(RekorSubmitter {
            base: base.into().trim_end_matches('/').to_owned(),
            client,
            proposed: Arc::new(dsse_proposed_entry),
            limits: Limits::default(),
        })
    }

    /// Use `f` to build the proposed entry of each job.
    pub fn with_proposed_entry(
        mut self,
        f: impl Fn(&SubmitRequest) -> Result<Value, SubmitError> + Send + Sync + 'static,
    ) -> Self {
        self.proposed = Arc::new(f);
        self
    }

    /// Submit one proposed entry; see the module docs for the outcomes.
    pub async fn submit_entry(&self, proposed: &Value) -> Result<Value, SubmitError> {
        let url = format!("{}/api/v1/log/entries", self.base);
        let response = self
            .client
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(serde_json::to_vec(proposed).map_err(|e| SubmitError::Permanent(e.to_string()))?)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        match status {
            201 => {
                let body = response.bytes().await.map_err(transport)?;
                self.checked(&body)
            }
            409 => {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                self.fetch_existing(location.as_deref(), proposed).await
            }
            _ => Err(classify(status, response.text().await.unwrap_or_default())),
        }
    }

    async fn fetch_existing(&self, location: Option<&str>, proposed: &Value) -> Result<Value, SubmitError> {
        if let Some(location) = location {
            // Only paths on our own Rekor: never follow an absolute URL elsewhere.
            let path = location
                .strip_prefix(&self.base)
                .unwrap_or(location)
                .trim_start_matches('/');
            if !path.contains("://") {
                let url = format!("{}/{}", self.base, path);
                let response = self.client.get(&url).send().await.map_err(transport)?;
                let status = response.status().as_u16();
                if status == 200 {
                    let body = response.bytes().await.map_err(transport)?;
                    return self.checked(&body);
                }
                return Err(classify(status, response.text().await.unwrap_or_default()));
            }
        }
        // No usable Location: search by content.
        let url = format!("{}/api/v1/log/entries/retrieve", self.base);
        let response = self
            .client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(
                serde_json::to_vec(&serde_json::json!({ "entries": [proposed] }))
                    .map_err(|e| SubmitError::Permanent(e.to_string()))?,
            )
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(classify(status, response.text().await.unwrap_or_default()));
        }
        let body: Value = serde_json::from_slice(&response.bytes().await.map_err(transport)?)
            .map_err(|e| SubmitError::Retryable(format!("retrieve response is not JSON: {e}")))?;
        let first =
            body.as_array().and_then(|a| a.first()).cloned().ok_or_else(|| {
                SubmitError::Retryable("409 but the existing entry could not be found".into())
            })?;
        self.checked(&serde_json::to_vec(&first).map_err(|e| SubmitError::Retryable(e.to_string()))?)
    }

    /// Parse a `{uuid: entry}` body and check its inclusion proof, when
    /// present, against its stated root (the signatures are the worker's).
    fn checked(&self, body: &[u8]) -> Result<Value, SubmitError> {
        let entry = TlogEntry::from_rekor_v1_response(body, &self.limits)
            .map_err(|e| SubmitError::Retryable(format!("unusable entry from the log: {e}")))?;
        if entry.inclusion_proof.is_some() {
            entry
                .verify_inclusion()
                .map_err(|e| SubmitError::Retryable(format!("inclusion proof does not verify: {e}")))?;
        }
        serde_json::from_slice(body).map_err(|e| SubmitError::Retryable(e.to_string()))
    }
}

fn transport(e: reqwest::Error) -> SubmitError {
    SubmitError::Retryable(format!("transport: {e}"))
}

fn classify(status: u16, body: String) -> SubmitError {
    let mut snippet = body;
    if snippet.len() > 512 {
        let mut end = 512;
        while !snippet.is_char_boundary(end) {
            end -= 1;
        }
        snippet.truncate(end);
    }
    let message = format!("rekor answered {status}: {snippet}");
    match status {
        408 | 429 | 500..=599 => SubmitError::Retryable(message),
        400..=499 => SubmitError::Permanent(message),
        _ => SubmitError::Retryable(message),
    }
}

impl Submitter for RekorSubmitter {
    fn submit<'a>(&'a self, request: &'a SubmitRequest) -> BoxFuture<'a, Result<Value, SubmitError>> {
        Box::pin(async move {
            let proposed = (self.proposed)(request)?;
            self.submit_entry(&proposed).await
        })
    }
}
