//! The worker runtime: claim, submit, complete, retry — concurrently, with
//! wake-ups, heartbeats and a graceful shutdown.
//!
//! Owns [`Worker`] / [`WorkerHandle`]: a claim loop that keeps up to
//! `concurrency` jobs in flight, claiming at most `batch` at a time (one
//! statement, see [`mod@crate::claim`]); a LISTEN connection that wakes the loop
//! when jobs are enqueued (polling every `poll_interval` as the fallback,
//! and whenever NOTIFY is lost, e.g. across a server restart); one task per
//! job with a `tracing` span carrying the tenant, which heartbeats the
//! lease while the [`Submitter`] runs, verifies its answer against the
//! config's trusted root ([`verify_log_answer`]; an answer that is not
//! evidence fails the job with the reason) and then completes the job in the
//! job's tenant transaction (as `attestor_app`, through the attestor-repo
//! guard) or fails it with backoff; a purge task that deletes finished
//! jobs past their [`Retention`] in small batches; and the counters in
//! [`Metrics`].
//!
//! It must never run tenant SQL outside a tenant transaction of the job's
//! own tenant, never change a job without its lease token, never hold a
//! database transaction open while the submitter talks to the log, and
//! never give up on a claimed job silently: every job ends completed,
//! failed (retry/dead), released, or fenced off (`LeaseLost`); and never
//! complete a job with an entry that did not verify.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attestor_formats::{Limits, TlogEntry};
use attestor_repo::{Database, TenantContext, TenantId};
use attestor_transparency::{TrustedRoot, VerifiedTlogEntry};
use diesel::sql_types::{Jsonb, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use scoped_futures::ScopedFutureExt;
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::claim::{claim, ClaimOptions, ClaimedJob, Lease};
use crate::error::{QueueError, Result};
use crate::lease::{self, FailOutcome, Failure};
use crate::retention::{self, Retention};
use crate::submitter::{SubmitError, SubmitRequest, Submitter};

/// The NOTIFY channel the enqueue trigger (migration 000005) signals.
pub const NOTIFY_CHANNEL: &str = "attestor_queue";

/// Pool of `attestor_worker` connections.
pub type WorkerPool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

/// Build a pool of `attestor_worker` connections for `url`. It connects
/// lazily, so it can be built while the database is down.
pub fn worker_pool(url: &str, max_size: u32) -> WorkerPool {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
    bb8::Pool::builder()
        .max_size(max_size.max(1))
        .connection_timeout(Duration::from_secs(5))
        .test_on_check_out(true)
        .build_unchecked(manager)
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Recorded in `locked_by` and as the audit actor.
    pub worker_id: String,
    /// The logs whose entries are evidence: every entry the submitter
    /// returns must verify against it ([`verify_log_answer`]) before it is
    /// stored. Required, with no default: there is no worker that stores
    /// unverified entries.
    pub trust: Arc<TrustedRoot>,
    /// Jobs in flight at most (K).
    pub concurrency: usize,
    /// Jobs per claim at most (B). A claim never takes more than the free
    /// slots, and waits until at least half of `min(B, K)` slots are free.
    pub batch: u32,
    /// Lease given at claim and by each heartbeat.
    pub lease: Duration,
    /// Heartbeat period (should be well under `lease`).
    pub heartbeat: Duration,
    /// Claim at least this often when idle (fallback for lost NOTIFYs).
    pub poll_interval: Duration,
    /// Retry delays.
    pub backoff: Backoff,
    /// LISTEN for enqueue notifications.
    pub listen: bool,
    /// Size of the worker connection pool.
    pub pool_size: u32,
    /// Jobs per tenant a claim aims for (see [`ClaimOptions::tenant_chunk`]);
    /// completions of one tenant that are ready together share one tenant
    /// transaction, so larger chunks mean fewer commits.
    pub tenant_chunk: u32,
    /// Retention of finished jobs; `None` keeps them (no purge task).
    pub retention: Option<Retention>,
    /// How often the purge task looks for finished jobs past their retention.
    pub purge_interval: Duration,
    /// Rows one purge statement deletes at most (small, so each is short).
    pub purge_batch: u32,
    /// How long the completion batcher waits, after the first completion of
    /// a round, for more to join it (one durable commit per round).
    pub completion_linger: Duration,
    /// Claim by tenant group ([`ClaimOptions::per_tenant`]); `None` (the
    /// default) decides at the first claim: by tenant group when the
    /// database has the `citus` extension, the one statement otherwise.
    pub per_tenant_claims: Option<bool>,
}

impl WorkerConfig {
    /// Defaults: K = 16, B = 16, 30 s lease, 10 s heartbeat, 1 s polling;
    /// entries are verified against `trust`.
    pub fn new(worker_id: impl Into<String>, trust: Arc<TrustedRoot>) -> Self {
        WorkerConfig {
            worker_id: worker_id.into(),
            trust,
            concurrency: 16,
            batch: 16,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            backoff: Backoff::default(),
            listen: true,
            pool_size: 8,
            tenant_chunk: 1,
            retention: Some(Retention::default()),
            purge_interval: Duration::from_secs(10),
            purge_batch: 500,
            completion_linger: COMPLETION_LINGER,
            per_tenant_claims: None,
        }
    }

    /// Set [`Self::per_tenant_claims`].
    pub fn per_tenant_claims(mut self, per_tenant: bool) -> Self {
        self.per_tenant_claims = Some(per_tenant);
        self
    }

    /// Set the retention of finished jobs (`None`: never purge).
    pub fn retention(mut self, retention: Option<Retention>) -> Self {
        self.retention = retention;
        self
    }

    /// Set K and B.
    pub fn concurrency(mut self, concurrency: usize, batch: u32) -> Self {
        self.concurrency = concurrency.max(1);
        self.batch = batch.max(1);
        self
    }

    /// Set the lease; the heartbeat becomes a third of it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.heartbeat = lease / 3;
        self
    }

    /// Set the polling interval.
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll_interval = poll;
        self
    }

    /// Set the backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

/// Live counters of one worker.
#[derive(Debug, Default)]
pub struct Metrics {
    claimed: AtomicU64,
    completed: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    lease_lost: AtomicU64,
    released: AtomicU64,
    purged: AtomicU64,
    errors: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs completed (entry stored, job succeeded).
    pub completed: u64,
    /// Failed attempts put back with backoff.
    pub retried: u64,
    /// Jobs dead-lettered.
    pub dead_lettered: u64,
    /// Jobs whose lease was lost (re-claimed by someone else).
    pub lease_lost: u64,
    /// Jobs released at shutdown.
    pub released: u64,
    /// Finished jobs deleted by the retention purge.
    pub purged: u64,
    /// Database errors seen by the loops (claims, heartbeats, completions).
    pub errors: u64,
}

impl Metrics {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            claimed: l(&self.claimed),
            completed: l(&self.completed),
            retried: l(&self.retried),
            dead_lettered: l(&self.dead_lettered),
            lease_lost: l(&self.lease_lost),
            released: l(&self.released),
            purged: l(&self.purged),
            errors: l(&self.errors),
        }
    }
}

/// A worker, ready to [`start`](Worker::start).
pub struct Worker<S: Submitter> {
    config: WorkerConfig,
    worker_url: String,
    app: Database,
    submitter: Arc<S>,
}

struct Ctx<S> {
    config: WorkerConfig,
    pool: WorkerPool,
    app: Database,
    submitter: Arc<S>,
    metrics: Arc<Metrics>,
    limits: Limits,
    completer: mpsc::UnboundedSender<Completion>,
    /// Set once the claim loop found a Citus coordinator.
    distributed: Arc<AtomicBool>,
}

/// A running worker.
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    abort: watch::Sender<bool>,
    main: tokio::task::JoinHandle<()>,
    listener: Option<tokio::task::JoinHandle<()>>,
    purger: Option<tokio::task::JoinHandle<()>>,
    metrics: Arc<Metrics>,
}

impl<S: Submitter> Worker<S> {
    /// A worker claiming as `attestor_worker` at `worker_url` and running
    /// tenant transactions through `app` (the guard, as `attestor_app`).
    pub fn new(
        config: WorkerConfig,
        worker_url: impl Into<String>,
        app: Database,
        submitter: Arc<S>,
    ) -> Self {
        Worker {
            config,
            worker_url: worker_url.into(),
            app,
            submitter,
        }
    }

    /// Spawn the claim loop (and the listener) on the current runtime.
    pub fn start(self) -> WorkerHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (abort_tx, abort_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let wake = Arc::new(Notify::new());
        let pool = worker_pool(&self.worker_url, self.config.pool_size);
        let (completer, completions) = mpsc::unbounded_channel();
        let distributed = Arc::new(AtomicBool::new(false));
        tokio::spawn(completion_batcher(
            self.app.clone(),
            self.config.worker_id.clone(),
            self.config.completion_linger,
            completions,
            distributed.clone(),
        ));
        let listener = self
            .config
            .listen
            .then(|| tokio::spawn(listen(self.worker_url.clone(), wake.clone(), stop_rx.clone())));
        let ctx = Arc::new(Ctx {
            config: self.config,
            pool,
            app: self.app,
            submitter: self.submitter,
            metrics: metrics.clone(),
            limits: Limits::default(),
            completer,
            distributed,
        });
        let purger = ctx
            .config
            .retention
            .map(|r| tokio::spawn(purge_loop(ctx.clone(), r, stop_rx.clone())));
        let main = tokio::spawn(claim_loop(ctx, wake, stop_rx, abort_rx));
        WorkerHandle {
            stop: stop_tx,
            abort: abort_tx,
            main,
            listener,
            purger,
            metrics,
        }
    }
}

impl WorkerHandle {
    /// The counters so far.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Stop claiming, let in-flight jobs finish for up to `deadline`, then
    /// cancel the rest and release their leases (not counting the attempt).
    /// Returns the final counters.
    pub async fn shutdown(self, deadline: Duration) -> MetricsSnapshot {
        let _ = self.stop.send(true);
        let mut main = self.main;
        if tokio::time::timeout(deadline, &mut main).await.is_err() {
            let _ = self.abort.send(true);
            // Releasing takes one short statement per job.
            if tokio::time::timeout(Duration::from_secs(10), &mut main)
                .await
                .is_err()
            {
                main.abort();
            }
        }
        for task in [self.listener, self.purger].into_iter().flatten() {
            task.abort();
            let _ = task.await;
        }
        self.metrics.snapshot()
    }
}

/// Every `purge_interval`, delete finished jobs past their retention in
/// batches of `purge_batch` until none is left (see [`crate::retention`]).
/// Errors only cost a round: the next one tries again. The server's
/// topology is asked once, on the first batch that gets a connection.
async fn purge_loop<S>(ctx: Arc<Ctx<S>>, retention: Retention, mut stop: watch::Receiver<bool>) {
    let mut topology: Option<crate::citus::Topology> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ctx.config.purge_interval) => {}
            _ = stop.changed() => return,
        }
        loop {
            if *stop.borrow() {
                return;
            }
            let purged = async {
                let mut conn = ctx.pool.get().await?;
                let on = match topology {
                    Some(t) => t,
                    None => *topology.insert(crate::citus::Topology::probe(&mut conn).await?),
                };
                retention::purge_on(&mut conn, on, &retention, ctx.config.purge_batch.max(1)).await
            }
            .await;
            match purged {
                Ok(p) => {
                    ctx.metrics.purged.fetch_add(p.total(), Ordering::Relaxed);
                    if p.total() < u64::from(ctx.config.purge_batch.max(1)) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purge of finished jobs failed");
                    Metrics::bump(&ctx.metrics.errors);
                    break;
                }
            }
        }
    }
}

async fn listen(url: String, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        if let Ok(mut conn) = AsyncPgConnection::establish(&url).await {
            let listening = diesel::sql_query(format!("LISTEN {NOTIFY_CHANNEL}"))
                .execute(&mut conn)
                .await
                .is_ok();
            if listening {
                // Anything enqueued while we were not listening.
                wake.notify_one();
                let mut stream = std::pin::pin!(conn.notifications_stream());
                loop {
                    tokio::select! {
                        n = stream.next() => match n {
                            Some(Ok(_)) => wake.notify_one(),
                            _ => break,
                        },
                        _ = stop.changed() => return,
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn claim_loop<S: Submitter>(
    ctx: Arc<Ctx<S>>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(ctx.config.concurrency));
    let mut jobs = JoinSet::new();
    let mut options = ClaimOptions::new(ctx.config.worker_id.clone(), ctx.config.batch, ctx.config.lease)
        .tenant_chunk(ctx.config.tenant_chunk);
    let mut per_tenant = ctx.config.per_tenant_claims;
    let mut citus = None;
    let low_water = (ctx.config.batch as usize)
        .min(ctx.config.concurrency)
        .div_ceil(2)
        .max(1);
    loop {
        while jobs.try_join_next().is_some() {}
        if *stop.borrow() {
            break;
        }
        // Wait for half a batch of free slots (all of them are free when
        // idle), so that a busy worker keeps claiming in batches instead of
        // one job per statement as single jobs finish.
        let mut permits = Vec::with_capacity(ctx.config.batch as usize);
        let mut stopped = false;
        while permits.len() < low_water {
            tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => permits.push(p),
                    Err(_) => { stopped = true; break }
                },
                _ = stop.changed() => { stopped = true; break }
            }
        }
        if stopped {
            break;
        }
        while permits.len() < ctx.config.batch as usize {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let want = permits.len();
        let claimed = async {
            let mut conn = ctx.pool.get().await?;
            if citus.is_none() {
                let found = crate::citus::has_citus(&mut conn).await?;
                citus = Some(found);
                ctx.distributed.store(found, Ordering::Relaxed);
                if per_tenant.is_none() {
                    per_tenant = Some(found);
                    options = options.clone().per_tenant(found);
                }
            }
            if citus == Some(true) {
                // Claim nothing that could not be completed: a job whose
                // entry the log accepted but the app pool cannot store is
                // submitted again after its lease.
                app_pool_fits_citus(&ctx.app)?;
            }
            claim(
                &mut conn,
                &ClaimOptions {
                    batch: want as u32,
                    ..options.clone()
                },
            )
            .await
        }
        .await;
        let idle = match claimed {
            Ok(batch) => {
                let got = batch.len();
                ctx.metrics.claimed.fetch_add(got as u64, Ordering::Relaxed);
                for job in batch {
                    let permit = permits.pop().expect("one permit per claimed job");
                    let ctx = ctx.clone();
                    let abort = abort.clone();
                    jobs.spawn(async move {
                        run_job(ctx, job, abort).await;
                        drop(permit);
                    });
                }
                got < want
            }
            Err(e) => {
                Metrics::bump(&ctx.metrics.errors);
                tracing::warn!(error = %e, "claim failed; retrying after the poll interval");
                true
            }
        };
        drop(permits);
        if idle {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(ctx.config.poll_interval) => {}
                _ = stop.changed() => break,
            }
        }
    }
    // Stopped: no more claims. In-flight jobs finish (or are told to abort
    // by the handle after its deadline and release their leases).
    while jobs.join_next().await.is_some() {}
}

/// Refuses an app pool that cannot complete jobs on a Citus coordinator:
/// only `SET LOCAL` reaches the shards, and Citus cannot plan the
/// completion statement as a generic plan (see
/// [`attestor_repo::DatabaseConfig::on_citus`]).
fn app_pool_fits_citus(app: &Database) -> Result<()> {
    if app.tenant_context_mode() != attestor_repo::TenantContextMode::SetLocal {
        return Err(QueueError::InvalidInput(
            "on a Citus coordinator the app pool must send the tenant context with SET LOCAL \
             (DatabaseConfig::on_citus): set_config does not reach the shards"
                .into(),
        ));
    }
    if app.plan_cache_mode() == attestor_repo::PlanCacheMode::ForceGenericPlan {
        return Err(QueueError::InvalidInput(
            "on a Citus coordinator the app pool's plan_cache_mode must not be force_generic_plan \
             (DatabaseConfig::on_citus): Citus cannot plan the completion statement without its \
             parameter values"
                .into(),
        ));
    }
    Ok(())
}

enum Outcome {
    Submitted(serde_json::Value),
    Failed(SubmitError),
    Aborted,
    LeaseLost,
}

async fn run_job<S: Submitter>(ctx: Arc<Ctx<S>>, job: ClaimedJob, mut abort: watch::Receiver<bool>) {
    let span = tracing::info_span!(
        "queue_job",
        tenant_id = %job.tenant_id(),
        job_id = %job.job_id(),
        attempt = job.attempt,
        reclaimed = job.reclaimed,
    );
    async move {
        let mut lease = job.lease;
        let work = prepare_and_submit(&ctx, &job);
        let mut work = std::pin::pin!(work);
        let mut beat = tokio::time::interval_at(
            tokio::time::Instant::now() + ctx.config.heartbeat,
            ctx.config.heartbeat.max(Duration::from_millis(10)),
        );
        let outcome = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = beat.tick() => {
                    match heartbeat(&ctx, &lease).await {
                        Ok(l) => lease = l,
                        Err(QueueError::LeaseLost { .. }) => break Outcome::LeaseLost,
                        Err(e) => {
                            Metrics::bump(&ctx.metrics.errors);
                            tracing::warn!(error = %e, "heartbeat failed");
                        }
                    }
                }
                _ = abort.changed() => break Outcome::Aborted,
            }
        };
        match outcome {
            Outcome::LeaseLost => {
                Metrics::bump(&ctx.metrics.lease_lost);
                tracing::warn!("lease lost while submitting; another worker owns the job now");
            }
            Outcome::Aborted => {
                let r = with_retry(&ctx, lease.expires_at, || async {
                    let mut conn = ctx.pool.get().await?;
                    lease::release(&mut conn, &lease).await
                })
                .await;
                match r {
                    Ok(()) => Metrics::bump(&ctx.metrics.released),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not release lease at shutdown; it will expire")
                    }
                }
            }
            Outcome::Submitted(value) => finish(&ctx, &job, &lease, value).await,
            Outcome::Failed(err) => fail_job(&ctx, &job, &lease, err).await,
        }
    }
    .instrument(span)
    .await
}

async fn heartbeat<S>(ctx: &Ctx<S>, lease: &Lease) -> Result<Lease> {
    let mut conn = ctx.pool.get().await?;
    lease::heartbeat(&mut conn, lease, ctx.config.lease).await
}

#[derive(QueryableByName)]
struct EnvelopeRow {
    #[diesel(sql_type = Jsonb)]
    envelope: serde_json::Value,
}

async fn prepare_and_submit<S: Submitter>(ctx: &Ctx<S>, job: &ClaimedJob) -> Outcome {
    let envelope = if ctx.submitter.needs_envelope() {
        match load_envelope(ctx, job).await {
            Ok(Some(e)) => Some(e),
            Ok(None) => {
                return Outcome::Failed(SubmitError::Permanent(format!(
                    "envelope {} not found",
                    job.envelope_id
                )))
            }
            Err(e) => return Outcome::Failed(SubmitError::Retryable(format!("loading the envelope: {e}"))),
        }
    } else {
        None
    };
    let request = SubmitRequest {
        job: job.clone(),
        envelope,
    };
    match ctx.submitter.submit(&request).await {
        Ok(v) => Outcome::Submitted(v),
        Err(e) => Outcome::Failed(e),
    }
}

async fn load_envelope<S>(ctx: &Ctx<S>, job: &ClaimedJob) -> Result<Option<serde_json::Value>> {
    let tenant = TenantId::try_from(job.tenant_id())?;
    let envelope_id = job.envelope_id;
    let context = TenantContext::new(tenant).with_actor(ctx.config.worker_id.clone());
    ctx.app
        .transaction(context, |tx| {
            async move {
                let rows: Vec<EnvelopeRow> = diesel::sql_query(
                    "SELECT envelope FROM attestor.dsse_envelopes
                      WHERE tenant_id = (SELECT attestor_app.require_current_tenant()) AND id = $1",
                )
                .bind::<SqlUuid, _>(envelope_id)
                .load(tx.conn())
                .await?;
                Ok::<_, QueueError>(rows.into_iter().next().map(|r| r.envelope))
            }
            .scope_boxed()
        })
        .await
}

/// Complete `lease` with the Rekor response `value` in the job's tenant
/// transaction, through the guard.
pub async fn complete_in_tenant(
    app: &Database,
    actor: &str,
    lease: &Lease,
    entry: &VerifiedTlogEntry,
    value: &serde_json::Value,
) -> Result<Uuid> {
    let tenant = TenantId::try_from(lease.tenant_id)?;
    let context = TenantContext::new(tenant).with_actor(actor.to_owned());
    app.transaction(context, |tx| {
        async move { lease::complete(tx.conn(), lease, entry, value).await }.scope_boxed()
    })
    .await
}

/// The submitter's answer `value` (a Rekor v1 `{uuid: entry}` response)
/// as an entry verified against `trust`, its key checked at the entry's
/// integrated time or, without one, at `observed_at` (when the answer
/// arrived). Errors: [`QueueError::InvalidEntry`] when it does not parse,
/// [`QueueError::NotEvidence`] when it is not evidence under `trust`.
pub fn verify_log_answer(
    value: &serde_json::Value,
    trust: &TrustedRoot,
    limits: &Limits,
    observed_at: chrono::DateTime<chrono::Utc>,
) -> Result<VerifiedTlogEntry> {
    let bytes = serde_json::to_vec(value).map_err(|e| QueueError::InvalidInput(e.to_string()))?;
    let entry = TlogEntry::from_rekor_v1_response(&bytes, limits)?;
    Ok(VerifiedTlogEntry::verify(entry, trust, observed_at)?)
}

async fn finish<S>(ctx: &Ctx<S>, job: &ClaimedJob, lease: &Lease, value: serde_json::Value) {
    let entry = match verify_log_answer(&value, &ctx.config.trust, &ctx.limits, chrono::Utc::now()) {
        Ok(e) => e,
        Err(e) => {
            // Nothing is stored; the job is retried (a stale trusted root or
            // a log mid-rotation can heal) and dead-lettered with this
            // reason once its attempts are used up.
            let err = SubmitError::Retryable(format!("the log's answer was not stored: {e}"));
            return fail_job(ctx, job, lease, err).await;
        }
    };
    let entry = Arc::new(entry);
    let value = Arc::new(value);
    let r = with_retry(ctx, lease.expires_at, || async {
        let (reply, answer) = oneshot::channel();
        let request = Completion {
            lease: *lease,
            entry: entry.clone(),
            value: value.clone(),
            reply,
        };
        if ctx.completer.send(request).is_err() {
            return Err(QueueError::Stopped);
        }
        answer.await.unwrap_or_else(|_| Err(QueueError::Stopped))
    })
    .await;
    match r {
        Ok(_) => {
            Metrics::bump(&ctx.metrics.completed);
            tracing::debug!("completed");
        }
        Err(QueueError::LeaseLost { .. }) => {
            Metrics::bump(&ctx.metrics.lease_lost);
            tracing::warn!("lease lost before completion; the new holder will complete the job");
        }
        Err(e) if e.is_transient() => {
            Metrics::bump(&ctx.metrics.errors);
            tracing::warn!(error = %e, "could not complete; the lease will expire and the job be retried");
        }
        Err(e) => {
            let err = SubmitError::Retryable(format!("storing the entry failed: {e}"));
            fail_job(ctx, job, lease, err).await
        }
    }
}

async fn fail_job<S>(ctx: &Ctx<S>, job: &ClaimedJob, lease: &Lease, err: SubmitError) {
    let (failure, message) = match &err {
        SubmitError::Retryable(m) => (
            Failure::Retry {
                delay: ctx.config.backoff.delay(job.attempt.max(1) as u32),
            },
            m.clone(),
        ),
        SubmitError::Permanent(m) => (Failure::Permanent, m.clone()),
    };
    let r = with_retry(ctx, lease.expires_at, || async {
        let mut conn = ctx.pool.get().await?;
        lease::fail(&mut conn, lease, &message, failure).await
    })
    .await;
    match r {
        Ok(FailOutcome::Retrying { run_at, .. }) => {
            Metrics::bump(&ctx.metrics.retried);
            tracing::info!(error = %message, %run_at, "attempt failed; retrying later");
        }
        Ok(FailOutcome::Dead { .. }) => {
            Metrics::bump(&ctx.metrics.dead_lettered);
            tracing::warn!(error = %message, "job dead-lettered");
        }
        Err(QueueError::LeaseLost { .. }) => Metrics::bump(&ctx.metrics.lease_lost),
        Err(e) => {
            Metrics::bump(&ctx.metrics.errors);
            tracing::warn!(error = %e, "could not record the failure; the lease will expire");
        }
    }
}

/// A completion waiting for its tenant transaction.
struct Completion {
    lease: Lease,
    entry: Arc<VerifiedTlogEntry>,
    value: Arc<serde_json::Value>,
    reply: oneshot::Sender<Result<Uuid>>,
}

/// How long the batcher waits for more completions after the first, by
/// default ([`WorkerConfig::completion_linger`]).
pub const COMPLETION_LINGER: Duration = Duration::from_millis(2);

/// Most completions one tenant transaction takes.
const MAX_COMPLETIONS_PER_TX: usize = 64;

/// Collects completions from the job tasks and runs those of the same
/// tenant that are ready together in *one* set-based statement
/// ([`lease::complete_many`]'s, sent with `Database::fetch`: the tenant
/// guard and the statement in one request, one implicit transaction), each
/// still fenced by its own token. A job-level refusal (lease lost, different
/// entry) writes nothing for that job and does not undo the others; a
/// database error rolls the group back and its jobs are retried one by one.
///
/// The groups that are ready together form a *round* with one durable
/// commit: every group but the last commits with a transaction-local
/// `synchronous_commit = off`, all of them concurrently; then the last
/// group commits durably, which flushes the WAL up to its commit record and
/// so the earlier groups' records with it. Only then are the round's jobs
/// reported completed. A crash before that flush can lose the earlier
/// groups' commits: their jobs were never reported completed, their leases
/// expire and they run again (at-least-once delivery; the completion stays
/// exactly-once, and storing the same entry again is idempotent).
///
/// On a Citus coordinator each group is instead one tenant transaction that
/// completes its jobs one after the other with router statements
/// ([`lease::complete_each`], [`crate::routed_complete`]) and
/// commits durably ([`Durability::OnItsOwnNode`]).
async fn completion_batcher(
    app: Database,
    actor: String,
    linger: Duration,
    mut rx: mpsc::UnboundedReceiver<Completion>,
    distributed: Arc<AtomicBool>,
) {
    let mut rounds_in_flight = JoinSet::new();
    while let Some(first) = rx.recv().await {
        // Jobs of one claim finish close together: linger a moment so that
        // a tenant's chunk shares one transaction (one commit).
        tokio::time::sleep(linger).await;
        let mut ready = vec![first];
        while ready.len() < 4 * MAX_COMPLETIONS_PER_TX {
            match rx.try_recv() {
                Ok(c) => ready.push(c),
                Err(_) => break,
            }
        }
        let mut by_tenant: std::collections::HashMap<Uuid, Vec<Completion>> = Default::default();
        for c in ready {
            by_tenant.entry(c.lease.tenant_id).or_default().push(c);
        }
        let mut groups = Vec::new();
        for (_, mut group) in by_tenant {
            while !group.is_empty() {
                let rest = group.split_off(group.len().min(MAX_COMPLETIONS_PER_TX));
                groups.push(std::mem::replace(&mut group, rest));
            }
        }
        let on_citus = AtomicBool::load(&distributed, Ordering::Relaxed);
        rounds_in_flight.spawn(complete_round(app.clone(), actor.clone(), groups, on_citus));
        while rounds_in_flight.try_join_next().is_some() {}
    }
    while rounds_in_flight.join_next().await.is_some() {}
}

/// One round of groups, one durable commit (see [`completion_batcher`]).
/// On a Citus coordinator (`distributed`) every group commits durably: the
/// groups' tenants live on different nodes, and one node's WAL flush makes
/// no other node's commit durable.
async fn complete_round(app: Database, actor: String, mut groups: Vec<Vec<Completion>>, distributed: bool) {
    let Some(last) = groups.pop() else { return };
    let early_durability = if distributed {
        Durability::OnItsOwnNode
    } else {
        Durability::Later
    };
    let last_durability = if distributed {
        Durability::OnItsOwnNode
    } else {
        Durability::Now
    };
    let early: Vec<_> = groups
        .into_iter()
        .map(|g| complete_group(app.clone(), actor.clone(), g, early_durability))
        .collect();
    let early = futures_util::future::join_all(early).await;
    let last = complete_group(app, actor, last, last_durability).await;
    for replies in early.into_iter().chain([last]) {
        for (reply, r) in replies {
            let _ = reply.send(r);
        }
    }
}

/// How a group's transaction commits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Wait for the WAL flush (`synchronous_commit` as configured).
    Now,
    /// `synchronous_commit = off`: a later durable commit of the same round
    /// flushes it.
    Later,
    /// Durable, on a Citus coordinator: one tenant transaction completing
    /// each job with router statements ([`crate::routed_complete`]; the
    /// set-based statement does not run there, see [`lease::complete_many`]).
    OnItsOwnNode,
}

type Replies = Vec<(oneshot::Sender<Result<Uuid>>, Result<Uuid>)>;

/// Completes one tenant's group and returns the replies to send.
async fn complete_group(
    app: Database,
    actor: String,
    group: Vec<Completion>,
    durability: Durability,
) -> Replies {
    // Even a group of one job goes as the set-based statement, so that it
    // too commits durably only when it is the round's last group.
    if !group.is_empty() && durability == Durability::OnItsOwnNode {
        let items: Vec<_> = group.iter().map(|c| (c.lease, &*c.entry, &*c.value)).collect();
        let tenant = TenantId::try_from(group[0].lease.tenant_id);
        let results = match tenant {
            Ok(tenant) => {
                let context = TenantContext::new(tenant).with_actor(actor.clone());
                app.transaction(context, |tx| {
                    let items = &items;
                    async move { lease::complete_each(tx.conn(), items).await }.scope_boxed()
                })
                .await
            }
            Err(e) => Err(e.into()),
        };
        if let Ok(results) = results {
            drop(items);
            return group.into_iter().map(|c| c.reply).zip(results).collect();
        }
    } else if !group.is_empty() {
        let items: Vec<_> = group.iter().map(|c| (c.lease, &*c.entry, &*c.value)).collect();
        let mut plan = lease::CompleteMany::plan(&items);
        let rows = match plan.statement.take() {
            Some(mut statement) => {
                if durability == Durability::Later {
                    statement = statement.durable_later();
                }
                complete_many_rows(app.clone(), actor.clone(), group[0].lease.tenant_id, statement).await
            }
            None => Ok(Vec::new()),
        };
        if let Ok(rows) = rows {
            let results = plan.finish(&items, rows);
            drop(items);
            return group.into_iter().map(|c| c.reply).zip(results).collect();
        }
    }
    // The group failed as a whole: one (durable) transaction per job.
    let mut replies = Vec::with_capacity(group.len());
    for c in group {
        let r = complete_in_tenant(&app, &actor, &c.lease, &c.entry, &c.value).await;
        replies.push((c.reply, r));
    }
    replies
}

/// Runs a group's completion statement for `tenant` in one request
/// (`Database::fetch`: the tenant guard and the statement share one implicit
/// transaction, as `actor` for the audit log).
async fn complete_many_rows(
    app: Database,
    actor: String,
    tenant: Uuid,
    statement: lease::CompleteManyStatement,
) -> Result<lease::CompleteManyRows> {
    let context = TenantContext::new(TenantId::try_from(tenant)?).with_actor(actor);
    Ok(app.fetch(context, statement.into_query()).await?)
}

/// Retry `op` on transient errors (database restarting) until the lease
/// would have expired anyway.
async fn with_retry<S, T, F, Fut>(ctx: &Ctx<S>, until: chrono::DateTime<chrono::Utc>, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let started = Instant::now();
    let budget = (until - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO);
    let mut pause = Duration::from_millis(50);
    loop {
        match op().await {
            Err(e) if e.is_transient() && started.elapsed() + pause < budget => {
                Metrics::bump(&ctx.metrics.errors);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}
