//! The tenant guard: the pool and the only way to run tenant-scoped SQL.
//!
//! Owns: [`Database`] (a bb8 pool of `AsyncPgConnection`s logged in as
//! `attestor_app`, opened through `wire::connect`; they do not
//! deliver LISTEN notifications, open a connection of your own for that),
//! [`Database::transaction`] and the [`TenantTx`] it lends
//! to the closure; [`WorkerDatabase`]/[`WorkerTx`], the separately named
//! path for work that spans tenants (the queue worker, as `attestor_worker`,
//! also over `wire::connect`);
//! and the pool wrapper that decides whether a returned connection may be
//! reused.
//!
//! ## How a tenant transaction runs
//!
//! 1. A connection is checked out and marked *in use* (our own flag, see below).
//! 2. The opening (`BEGIN` and the guard statement that runs
//!    `set_config(…, true)` for the tenant and the actor) has no request of
//!    its own: `wire`'s splice carries it inside the extended-protocol group
//!    of the transaction's first request, so the opening and the first
//!    statement share one fate, and holds everything after that group until
//!    the server confirms the transaction is open. diesel-async's
//!    transaction manager is told the transaction is open, so nested
//!    `conn.transaction(…)` calls inside the closure still become
//!    savepoints. A transaction whose closure sends nothing sends nothing at
//!    all. On the worker pool the opening is one simple-query message of its
//!    own, `BEGIN; SELECT set_config('app.tenant_id', '', true),
//!    set_config('app.actor', E'…', true)`, through
//!    `AnsiTransactionManager::begin_transaction_sql` (the actor a quoted
//!    literal, NUL refused). How the context is sent is the pool's
//!    [`TenantContextMode`], fixed when it is built: `set_config(…, true)`
//!    (default) or `SET LOCAL …` inside `BEGIN` (what Citus forwards to the
//!    shards; `fetch` then runs as a one-statement transaction). The
//!    mechanism, and what fails closed, is documented in one place: the
//!    `wire` module.
//! 3. The closure runs with `&mut TenantTx`.
//! 4. `Ok` → `COMMIT`, behind a check that the tenant and actor are still
//!    what the guard set (else [`RepoError::TenantContextChanged`], rolled
//!    back, the connection discarded); `Err` → `ROLLBACK`. On both pools the splice reads
//!    what the server says the `COMMIT` did: a `ROLLBACK` tag (the
//!    transaction was aborted, even by an error the closure never saw, such
//!    as one raised while a row stream was read) or a status other than idle
//!    gives [`RepoError::TransactionAborted`], never `Ok`; so does an
//!    opening that failed. `set_config(…, true)` values end with the transaction, so the
//!    connection goes back to the pool with no tenant. Only after a clean
//!    end, with diesel-async reporting no open transaction, is the *in use*
//!    flag cleared.
//!
//! [`Database::fetch`] runs a single statement in *one* request: the
//! splice writes the guard into the statement's own extended-protocol
//! group, so guard and statement share one implicit transaction that the
//! statement's `Sync` ends; the group's `ReadyForQuery` must report the
//! connection idle.
//!
//! The pool's `has_broken` hook discards any connection whose flag is still
//! set when it comes back, which covers every way out that is not a clean
//! end: the future dropped mid-transaction (cancellation, timeout), a panic in
//! the closure (the connection is dropped while unwinding), a failed `COMMIT`
//! or `ROLLBACK`, a lost connection; it also discards a connection whose
//! splice lost the protocol framing or closed. Dropping an
//! `AsyncPgConnection` closes the socket, and the server rolls the
//! transaction back.
//!
//! New connections get the configured `plan_cache_mode`
//! ([`crate::PlanCacheMode`]) and, under [`TenantContextMode::SetLocal`],
//! `citus.propagate_set_commands = 'local'`: the only session-level settings
//! a pool makes.
//!
//! Must never: hand out a pooled connection outside a transaction that set a
//! tenant (the worker path is separately named and sets the tenant GUC to the
//! empty string), set tenant context (or the actor) at session level, or
//! return a connection to the pool that still has an open transaction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use attestor_formats::Limits;
use bb8::ManageConnection;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, PoolError};
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, TransactionManager};
use futures_util::future::BoxFuture;
use scoped_futures::ScopedBoxFuture;
use tracing::Instrument as _;

use crate::config::{DatabaseConfig, PlanCacheMode, TenantContextMode};
use crate::error::RepoError;
use crate::tenant::{TenantContext, TenantId, MAX_ACTOR_BYTES};
use crate::wire::{self, Splice};

/// bb8 manager: diesel-async's manager plus the *in use* flag check.
pub(crate) struct GuardedManager {
    inner: AsyncDieselConnectionManager<AsyncPgConnection>,
    url: String,
    /// Open connections through [`wire::connect`] (both pools: the splice
    /// carries the tenant pool's guard and reads every pool's `COMMIT`);
    /// `false` opens diesel-async's own connections, whose transactions are
    /// checked by a `SELECT 1` after a failed statement instead.
    splice: bool,
    /// Run once on every new connection (the configured `plan_cache_mode`,
    /// and what the tenant context mode needs).
    session_setup: Option<String>,
    /// How this pool's transactions send their context (fixed for its life).
    mode: TenantContextMode,
}

/// A pooled connection and whether a transaction we opened on it has not yet
/// ended cleanly.
pub(crate) struct GuardedConnection {
    conn: AsyncPgConnection,
    in_use: bool,
    /// The guard splice of this connection's socket (tenant pool only).
    splice: Option<Splice>,
    /// Set by [`ErrorFlag`] whenever a statement on this connection fails.
    query_failed: Arc<AtomicBool>,
}

/// diesel instrumentation that notes failed statements (and forwards every
/// event to the process-wide default instrumentation, if one is installed),
/// so that a transaction whose error the closure swallowed is not "committed"
/// (PostgreSQL answers `COMMIT` of an aborted transaction with a silent `ROLLBACK`).
struct ErrorFlag {
    failed: Arc<AtomicBool>,
    inner: Option<Box<dyn Instrumentation>>,
}

impl Instrumentation for ErrorFlag {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery { error: Some(_), .. } = &event {
            self.failed.store(true, Ordering::Relaxed);
        }
        if let Some(inner) = &mut self.inner {
            inner.on_connection_event(event);
        }
    }
}

impl ManageConnection for GuardedManager {
    type Connection = GuardedConnection;
    type Error = PoolError;

    async fn connect(&self) -> Result<GuardedConnection, PoolError> {
        use diesel_async::AsyncConnection as _;
        let (mut conn, splice) = if self.splice {
            let (conn, splice) = wire::connect(&self.url, self.mode)
                .await
                .map_err(PoolError::ConnectionError)?;
            (conn, Some(splice))
        } else {
            (self.inner.connect().await?, None)
        };
        if let Some(sql) = &self.session_setup {
            use diesel_async::SimpleAsyncConnection as _;
            conn.batch_execute(sql).await.map_err(PoolError::QueryError)?;
        }
        let query_failed = Arc::new(AtomicBool::new(false));
        conn.set_instrumentation(ErrorFlag {
            failed: query_failed.clone(),
            inner: diesel::connection::get_default_instrumentation(),
        });
        Ok(GuardedConnection {
            conn,
            in_use: false,
            splice,
            query_failed,
        })
    }

    async fn is_valid(&self, conn: &mut GuardedConnection) -> Result<(), PoolError> {
        self.inner.is_valid(&mut conn.conn).await
    }

    fn has_broken(&self, conn: &mut GuardedConnection) -> bool {
        // `inner.has_broken` is `thread::panicking() || transaction manager broken/open`.
        conn.in_use
            || conn.splice.as_ref().is_some_and(Splice::is_broken)
            || self.inner.has_broken(&mut conn.conn)
    }
}

type Pool = bb8::Pool<GuardedManager>;
type Pooled = bb8::PooledConnection<'static, GuardedManager>;

async fn build_pool(config: &DatabaseConfig, splice: bool) -> Result<Pool, RepoError> {
    if config.max_connections == 0 {
        return Err(RepoError::invalid("max_connections must be at least 1"));
    }
    let mode = config.tenant_context_mode;
    let session_setup = [
        config.plan_cache_mode.session_setup(),
        mode.session_setup().map(str::to_owned),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let manager = GuardedManager {
        inner: AsyncDieselConnectionManager::new(config.url.clone()),
        url: config.url.clone(),
        splice,
        session_setup: (!session_setup.is_empty()).then(|| session_setup.join("; ")),
        mode,
    };
    let pool = bb8::Pool::builder()
        .max_size(config.max_connections)
        .min_idle(config.min_idle)
        .connection_timeout(config.connection_timeout)
        .idle_timeout(config.idle_timeout)
        .max_lifetime(config.max_lifetime)
        .test_on_check_out(config.test_on_checkout)
        .build(manager)
        .await
        .map_err(|e| RepoError::Unavailable {
            message: e.to_string(),
        })?;
    // Fail fast on a wrong URL or an unreachable server.
    drop(pool.get().await?);
    Ok(pool)
}

/// What [`Database`] and [`WorkerDatabase`] share: the guarded pool and the
/// per-transaction settings taken from the configuration.
#[derive(Clone)]
struct PoolCore {
    pool: Pool,
    limits: Limits,
    statement_timeout: Option<Duration>,
    mode: TenantContextMode,
    plan_cache_mode: PlanCacheMode,
}

impl PoolCore {
    async fn connect(config: &DatabaseConfig, splice: bool) -> Result<PoolCore, RepoError> {
        Ok(PoolCore {
            pool: build_pool(config, splice).await?,
            limits: config.limits(),
            statement_timeout: config.statement_timeout,
            mode: config.tenant_context_mode,
            plan_cache_mode: config.plan_cache_mode,
        })
    }

    fn debug(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("state", &self.pool.state())
            .field("tenant_context_mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The tenant-guarded pool (role `attestor_app`). Cheap to clone.
#[derive(Clone)]
pub struct Database {
    core: PoolCore,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.debug("Database", f)
    }
}

/// A tenant transaction's handle, lent to the closure of [`Database::transaction`].
pub struct TenantTx {
    conn: Pooled,
    tenant: TenantId,
    limits: Limits,
    /// Plans of the repository statements, when recording (see `statement`).
    pub(crate) plans: Option<Vec<crate::statement::StatementPlan>>,
}

impl TenantTx {
    /// The connection, inside the open transaction with `app.tenant_id` set.
    /// Do not `COMMIT`/`ROLLBACK`/`SET` on it by hand; nested
    /// `conn.transaction(…)` calls are fine (they are savepoints).
    pub fn conn(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn.conn
    }

    /// The tenant this transaction runs for.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// Limits applied to documents parsed in this transaction.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// The transaction handles ([`TenantTx`], [`WorkerTx`]) over a guarded connection.
trait Guarded {
    fn guarded(&mut self) -> &mut GuardedConnection;
}

impl Guarded for TenantTx {
    fn guarded(&mut self) -> &mut GuardedConnection {
        &mut self.conn
    }
}

impl Guarded for WorkerTx {
    fn guarded(&mut self) -> &mut GuardedConnection {
        &mut self.conn
    }
}

/// The actor as sent to the server (`""` for none): NUL and overlong refused.
fn checked_actor(actor: Option<&str>) -> Result<&str, RepoError> {
    match actor {
        Some(a) if a.contains('\0') => Err(RepoError::invalid("actor contains a NUL character")),
        Some(a) if a.len() > MAX_ACTOR_BYTES => Err(RepoError::invalid(format!(
            "actor is longer than {MAX_ACTOR_BYTES} bytes"
        ))),
        Some(a) => Ok(a),
        None => Ok(""),
    }
}

/// The one simple-query message that opens a worker transaction and sets
/// its context (no tenant, the actor, the statement timeout) the way `mode`
/// sends it, parsed, analysed and planned by the server each time.
fn begin_sql(
    mode: TenantContextMode,
    actor: Option<&str>,
    statement_timeout: Option<Duration>,
) -> Result<String, RepoError> {
    let actor = checked_actor(actor)?;
    if mode == TenantContextMode::SetLocal {
        let statements = wire::set_local_statements("", actor, statement_timeout);
        return Ok(format!("BEGIN; {}", statements.join("; ")));
    }
    let actor = wire::quote_literal(actor);
    let mut sql = format!(
        "BEGIN; SELECT set_config('app.tenant_id', '', true), set_config('app.actor', {actor}, true)"
    );
    if let Some(t) = statement_timeout {
        sql.push_str(&format!(
            ", set_config('statement_timeout', '{}', true)",
            t.as_millis().max(1)
        ));
    }
    Ok(sql)
}

/// Which kind of [`Opening`] a transaction had (kept after it is consumed).
#[derive(Clone, Copy)]
enum BeginKind {
    Sql,
    Spliced,
}

/// How a transaction is opened.
enum Opening {
    /// A simple query of its own, through diesel-async (the worker pool).
    Sql(String),
    /// Injected by the connection's splice (the tenant pool): see [`wire::encode_begin`].
    Spliced((bytes::BytesMut, wire::Answers)),
}

/// Runs `f` in a transaction opened with `begin`, whose `COMMIT` goes out
/// behind `check` (see [`wire::encode_check`]); see the module docs.
async fn run_in_transaction<'a, X, T, E, F>(
    mut tx: X,
    begin: Opening,
    check: bytes::BytesMut,
    f: F,
) -> Result<T, E>
where
    X: Guarded + Send + 'a,
    F: for<'r> FnOnce(&'r mut X) -> ScopedBoxFuture<'a, 'r, Result<T, E>> + Send + 'a,
    E: From<RepoError> + Send + 'a,
    T: Send + 'a,
{
    tx.guarded().in_use = true;
    let begin_kind = match &begin {
        Opening::Sql(_) => BeginKind::Sql,
        Opening::Spliced(_) => BeginKind::Spliced,
    };
    begin_transaction(tx.guarded(), begin).await?;
    tx.guarded().query_failed.store(false, Ordering::Relaxed);
    let result = f(&mut tx).await;
    let g = tx.guarded();
    if let Some(splice) = g.splice.clone() {
        let opening_spliced = matches!(begin_kind, BeginKind::Spliced);
        return end_spliced(g, &splice, opening_spliced, check, result).await;
    }
    match result {
        Ok(value) => {
            if AtomicBool::load(&g.query_failed, Ordering::Relaxed) && transaction_is_aborted(g).await {
                // A statement failed and the closure still returned Ok: COMMIT
                // would silently roll back. Roll back and say so instead.
                if AnsiTransactionManager::rollback_transaction(&mut g.conn)
                    .await
                    .is_ok()
                {
                    release_if_clean(g);
                }
                return Err(RepoError::TransactionAborted.into());
            }
            AnsiTransactionManager::commit_transaction(&mut g.conn)
                .await
                .map_err(RepoError::from)?;
            release_if_clean(g);
            Ok(value)
        }
        Err(err) => {
            match AnsiTransactionManager::rollback_transaction(&mut g.conn).await {
                Ok(()) => release_if_clean(g),
                Err(e) => tracing::warn!(error = %e, "rollback failed; the connection is discarded"),
            }
            Err(err)
        }
    }
}

/// Ends a transaction on a spliced connection: if the splice carried the
/// opening (`opening_spliced`), checks it went out and opened the
/// transaction; then commits (on `Ok`) behind the context `check`, and
/// checks what the server says the check and the `COMMIT` did, or rolls
/// back (on `Err`).
async fn end_spliced<T, E: From<RepoError>>(
    g: &mut GuardedConnection,
    splice: &Splice,
    opening_spliced: bool,
    check: bytes::BytesMut,
    result: Result<T, E>,
) -> Result<T, E> {
    // The group that carried the opening has been answered (or the stream
    // broke). An opening sent as its own request was answered already.
    splice.settle().await;
    let opening = splice.disarm();
    if opening_spliced && !opening.injected {
        // The closure sent nothing: no transaction was ever opened on the
        // server, so there is nothing to end there.
        end_unsent_transaction(g)?;
        release_if_clean(g);
        return result;
    }
    if !opening.in_sync || (opening_spliced && opening.failed) {
        tracing::warn!(
            ?opening,
            "the transaction's opening failed or lost the framing; the connection is discarded"
        );
        // Best effort, on a connection that is discarded either way.
        let _ = AnsiTransactionManager::rollback_transaction(&mut g.conn).await;
        return Err(result
            .err()
            .unwrap_or_else(|| RepoError::TransactionAborted.into()));
    }
    let value = match result {
        Ok(value) => value,
        Err(err) => {
            match AnsiTransactionManager::rollback_transaction(&mut g.conn).await {
                Ok(()) => release_if_clean(g),
                Err(e) => tracing::warn!(error = %e, "rollback failed; the connection is discarded"),
            }
            return Err(err);
        }
    };
    splice.arm_commit(check);
    let committed = AnsiTransactionManager::commit_transaction(&mut g.conn).await;
    splice.settle().await;
    let commit = splice.disarm();
    committed.map_err(RepoError::from)?;
    if !commit.injected || !commit.in_sync {
        tracing::warn!(
            ?commit,
            "COMMIT's answer was not read cleanly; the connection is discarded"
        );
        return Err(RepoError::Unavailable {
            message: "the COMMIT's answer was lost; whether the transaction committed is unknown".into(),
        }
        .into());
    }
    if commit.status != Some(b'I') {
        tracing::warn!(
            ?commit,
            "a transaction is still open after COMMIT; the connection is discarded"
        );
        return Err(RepoError::TransactionAborted.into());
    }
    if commit.check_failed {
        // The check in front of the COMMIT found another tenant or actor
        // than the guard set, which aborted the transaction: the COMMIT
        // rolled it back. The connection is not reused.
        tracing::error!(
            ?commit,
            "the tenant context was changed inside the transaction; rolled back, the connection is discarded"
        );
        return Err(RepoError::TenantContextChanged.into());
    }
    if commit.check_broken {
        // The check itself failed otherwise than on an already aborted
        // transaction (which the COMMIT rolls back, reported below): e.g. the
        // connection lost its check statement and could never commit again.
        tracing::warn!(
            ?commit,
            "the check in front of COMMIT failed; the connection is discarded"
        );
        return Err(RepoError::TransactionAborted.into());
    }
    release_if_clean(g);
    if commit.rolled_back {
        // PostgreSQL had aborted the transaction (a statement failed, even
        // one whose error the closure never saw) and rolled it back.
        return Err(RepoError::TransactionAborted.into());
    }
    Ok(value)
}

/// Opens the transaction with `begin`.
///
/// On the tenant pool (`Opening::Spliced`) the opening is not a request of
/// its own: the connection's splice carries it inside the transaction's
/// first request (see `wire`), and diesel-async's transaction manager is
/// told the transaction is open, so that nested transactions still become
/// savepoints and `COMMIT`/`ROLLBACK` still go out. On the worker pool it
/// is its own request, through diesel-async.
async fn begin_transaction(g: &mut GuardedConnection, begin: Opening) -> Result<(), RepoError> {
    let begin = match (begin, &g.splice) {
        (Opening::Sql(sql), _) => {
            return AnsiTransactionManager::begin_transaction_sql(&mut g.conn, &sql)
                .await
                .map_err(RepoError::from);
        }
        (Opening::Spliced(bytes), Some(_)) => bytes,
        (Opening::Spliced(_), None) => {
            return Err(RepoError::Internal {
                message: "a tenant transaction needs a connection opened by Database::connect".into(),
            })
        }
    };
    use diesel::connection::{InstrumentationEvent, TransactionDepthChange};
    use diesel_async::AsyncConnection as _;
    // The same steps as diesel-async's `begin_transaction_sql`, without the
    // request (these APIs are diesel's, public under the feature diesel-async
    // itself enables).
    let state = AnsiTransactionManager::transaction_manager_status_mut(&mut g.conn).transaction_state()?;
    if state.transaction_depth().is_some() {
        return Err(diesel::result::Error::AlreadyInTransaction.into());
    }
    state.change_transaction_depth(TransactionDepthChange::IncreaseDepth)?;
    if let Some(splice) = &g.splice {
        splice.arm_begin(begin);
    }
    g.conn
        .instrumentation()
        .on_connection_event(InstrumentationEvent::begin_transaction(std::num::NonZeroU32::MIN));
    Ok(())
}

/// Tells diesel-async's transaction manager that a transaction whose
/// opening never went out (the closure sent nothing) is over, without a
/// request: the mirror of [`begin_transaction`].
fn end_unsent_transaction(g: &mut GuardedConnection) -> Result<(), RepoError> {
    use diesel::connection::TransactionDepthChange;
    let state = AnsiTransactionManager::transaction_manager_status_mut(&mut g.conn).transaction_state()?;
    if state.transaction_depth() != Some(std::num::NonZeroU32::MIN) {
        return Err(RepoError::Internal {
            message: "a savepoint is still open in a transaction that sent nothing".into(),
        });
    }
    state.change_transaction_depth(TransactionDepthChange::DecreaseDepth)?;
    Ok(())
}

/// Whether the open transaction is in the failed state (worker pool; only
/// asked after a statement failed, so the common path pays no round trip).
/// A failure that a savepoint (nested `transaction`) rolled back leaves the
/// transaction usable.
async fn transaction_is_aborted(g: &mut GuardedConnection) -> bool {
    use diesel_async::SimpleAsyncConnection as _;
    g.conn.batch_execute("SELECT 1").await.is_err()
}

/// Clears the *in use* flag if diesel-async reports no open transaction.
fn release_if_clean(g: &mut GuardedConnection) {
    let depth = AnsiTransactionManager::transaction_manager_status_mut(&mut g.conn).transaction_depth();
    if !matches!(depth, Ok(None)) {
        tracing::warn!("transaction still open after COMMIT/ROLLBACK; the connection is discarded");
        return;
    }
    g.in_use = false;
}

/// What an idle pooled connection carries, read without a tenant: see [`Database::probe_idle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionProbe {
    /// `pg_backend_pid()`: changes when the pool replaced the connection.
    pub backend_pid: i32,
    /// `current_setting('app.tenant_id', true)`: `None` or `Some("")` on a clean connection.
    pub tenant_setting: Option<String>,
    /// `current_setting('app.actor', true)`.
    pub actor_setting: Option<String>,
    /// Whether a transaction was already open before the probe ran.
    pub in_transaction: bool,
}

impl ConnectionProbe {
    /// No tenant, no actor, no open transaction.
    pub fn is_clean(&self) -> bool {
        self.tenant_setting.as_deref().unwrap_or("").is_empty()
            && self.actor_setting.as_deref().unwrap_or("").is_empty()
            && !self.in_transaction
    }
}

async fn probe(pool: &Pool) -> Result<ConnectionProbe, RepoError> {
    use diesel::sql_types::{Integer, Nullable, Text};
    use diesel_async::SimpleAsyncConnection as _;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Integer)]
        pid: i32,
        #[diesel(sql_type = Nullable<Text>)]
        tenant: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        actor: Option<String>,
    }
    let mut pooled = pool.get().await?;
    let g = &mut *pooled;
    let depth = AnsiTransactionManager::transaction_manager_status_mut(&mut g.conn).transaction_depth();
    let row: Row = match diesel::sql_query(
        "SELECT pg_backend_pid() AS pid, current_setting('app.tenant_id', true) AS tenant, \
         current_setting('app.actor', true) AS actor",
    )
    .get_result(&mut g.conn)
    .await
    {
        Ok(row) => row,
        Err(e) => {
            // E.g. "current transaction is aborted": never hand this connection out again.
            g.in_use = true;
            return Err(e.into());
        }
    };
    // SAVEPOINT is refused (25P01) outside a transaction block: success means a
    // transaction was left open on this connection.
    let in_server_tx = g
        .conn
        .batch_execute("SAVEPOINT attestor_probe; RELEASE SAVEPOINT attestor_probe")
        .await
        .is_ok();
    let in_transaction = in_server_tx || !matches!(depth, Ok(None));
    let probe = ConnectionProbe {
        backend_pid: row.pid,
        tenant_setting: row.tenant,
        actor_setting: row.actor,
        in_transaction,
    };
    if !probe.is_clean() {
        tracing::error!(?probe, "an idle pooled connection carried state; it is discarded");
        g.in_use = true;
    }
    Ok(probe)
}

/// Pool counters for monitoring and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections currently open.
    pub connections: u32,
    /// Of which idle.
    pub idle_connections: u32,
    /// Connections discarded because they came back broken or not cleanly ended.
    pub closed_broken: u64,
}

fn pool_status(pool: &Pool) -> PoolStatus {
    let state = pool.state();
    PoolStatus {
        connections: state.connections,
        idle_connections: state.idle_connections,
        closed_broken: state.statistics.connections_closed_broken,
    }
}

impl Database {
    /// Builds the pool and checks that one connection can be opened.
    pub async fn connect(config: DatabaseConfig) -> Result<Database, RepoError> {
        Ok(Database {
            core: PoolCore::connect(&config, true).await?,
        })
    }

    /// Runs `f` in a transaction for `ctx.tenant` (and `ctx.actor`), commits on
    /// `Ok`, rolls back on `Err`. The only way to run tenant-scoped SQL.
    ///
    /// ```no_run
    /// # use attestor_repo::{Database, RepoError, TenantContext};
    /// use attestor_repo::scoped_futures::ScopedFutureExt as _;
    /// # async fn f(db: Database, ctx: TenantContext, bytes: &'static [u8]) -> Result<(), RepoError> {
    /// let stored = db
    ///     .transaction(ctx, |tx| {
    ///         async move { attestor_repo::dsse_envelopes::ingest(tx, bytes).await }.scope_boxed()
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn transaction<'a, T, E, F>(&self, ctx: TenantContext, f: F) -> Result<T, E>
    where
        F: for<'r> FnOnce(&'r mut TenantTx) -> ScopedBoxFuture<'a, 'r, Result<T, E>> + Send + 'a,
        E: From<RepoError> + Send + 'a,
        T: Send + 'a,
    {
        let span = tracing::info_span!(
            "tenant_transaction",
            tenant = %ctx.tenant,
            actor = ctx.actor.as_deref().unwrap_or(""),
        );
        async move {
            let actor = checked_actor(ctx.actor.as_deref())?;
            let tenant = ctx.tenant.to_string();
            let begin = Opening::Spliced(wire::encode_begin(
                self.core.mode,
                &tenant,
                actor,
                self.core.statement_timeout,
            ));
            let check = wire::encode_check(&tenant, actor);
            let conn = self.core.pool.get_owned().await.map_err(RepoError::from)?;
            let tx = TenantTx {
                conn,
                tenant: ctx.tenant,
                limits: self.core.limits,
                plans: None,
            };
            run_in_transaction(tx, begin, check, f).await
        }
        .instrument(span)
        .await
    }

    /// Runs one statement for `ctx.tenant` in *one* request: the guard
    /// travels in the statement's own extended-protocol message group
    /// (`Bind`/`Execute` of a prepared `set_config('app.tenant_id', …, true)`,
    /// then the statement's `Bind`/`Execute`, one `Sync`), so both run in one
    /// implicit transaction that ends, with the tenant setting, at the `Sync`.
    /// No `BEGIN`/`COMMIT`, no extra round trip; see `wire` for how. Under
    /// [`TenantContextMode::SetLocal`] it is a one-statement
    /// [`Database::transaction`] instead (`SET LOCAL` needs a transaction
    /// block), with that method's cost and guarantees.
    ///
    /// For single statements (typically hot reads; a write is atomic on its
    /// own). A statement that diesel-async has not prepared yet on the
    /// connection costs its usual `Parse` round trip first, unguarded and
    /// harmless (it runs nothing). The statement's `ReadyForQuery` must
    /// report the connection idle: a statement that opens a transaction
    /// (`BEGIN`) fails with [`RepoError::Internal`] and the connection is
    /// discarded. A statement with a parameter or a result column of a type
    /// the driver does not know yet (an enum, a composite) makes the driver
    /// look the type up first; the guard then travels with that lookup, and
    /// the result, read without a tenant, is withheld
    /// ([`RepoError::Internal`]); the connection keeps the type, so the same
    /// fetch works next time on it. See `wire` for the mechanism. Same
    /// cleanup rules as [`Database::transaction`]: an error ends the
    /// implicit transaction at the `Sync`, a dropped future or a stream that
    /// lost its framing discards the connection.
    ///
    /// The future is boxed and `Send`, so a task that calls `fetch` can be
    /// spawned (an `async fn` with this higher-ranked bound would not be
    /// provably `Send` to a caller that spawns it).
    pub fn fetch<Q, U>(&self, ctx: TenantContext, query: Q) -> BoxFuture<'_, Result<Vec<U>, RepoError>>
    where
        Q: for<'c> diesel_async::methods::LoadQuery<'static, &'c AsyncPgConnection, U> + Send + 'static,
        U: Send + 'static,
    {
        Box::pin(self.fetch_inner(ctx, query))
    }

    async fn fetch_inner<Q, U>(&self, ctx: TenantContext, query: Q) -> Result<Vec<U>, RepoError>
    where
        Q: for<'c> diesel_async::methods::LoadQuery<'static, &'c AsyncPgConnection, U> + Send + 'static,
        U: Send + 'static,
    {
        if self.core.mode == TenantContextMode::SetLocal {
            // `SET LOCAL` needs a transaction block (outside one it warns and
            // Citus does not propagate it): a one-statement transaction.
            return self
                .transaction(ctx, |tx| {
                    use scoped_futures::ScopedFutureExt as _;
                    async move {
                        let mut conn: &AsyncPgConnection = tx.conn();
                        Ok(query.load::<U>(&mut conn).await?)
                    }
                    .scope_boxed()
                })
                .await;
        }
        let span = tracing::info_span!(
            "tenant_transaction",
            tenant = %ctx.tenant,
            actor = ctx.actor.as_deref().unwrap_or(""),
            single_request = true,
        );
        async move {
            let actor = checked_actor(ctx.actor.as_deref())?;
            let guard = wire::encode_guard(&ctx.tenant.to_string(), actor, self.core.statement_timeout);
            let mut pooled = self.core.pool.get_owned().await?;
            let g: &mut GuardedConnection = &mut pooled;
            let Some(splice) = g.splice.clone() else {
                return Err(RepoError::Internal {
                    message: "fetch needs a connection opened by Database::connect".into(),
                });
            };
            g.in_use = true;
            splice.arm(guard);
            let rows = {
                let mut conn: &AsyncPgConnection = &g.conn;
                query.load::<U>(&mut conn).await
            };
            // The statement's group is answered up to its ReadyForQuery (the
            // driver may hand back the rows before it arrives).
            splice.settle().await;
            let wire = splice.disarm();
            let rows = rows.map_err(RepoError::from);
            let withheld = |message: &str| {
                tracing::warn!(?wire, "{message}");
                Err(RepoError::Internal {
                    message: message.to_owned(),
                })
            };
            if !wire.in_sync {
                tracing::warn!(
                    ?wire,
                    "the guard splice lost the protocol framing; the connection is discarded"
                );
                return Err(rows.err().unwrap_or_else(|| RepoError::Unavailable {
                    message: "the guard splice lost the protocol framing".into(),
                }));
            }
            if wire.failed {
                tracing::warn!("the tenant guard failed on this connection; the connection is discarded");
                return Err(rows.err().unwrap_or(RepoError::TenantNotSet));
            }
            if wire.injected && wire.status != Some(b'I') {
                // E.g. the statement was a BEGIN: the connection is inside a
                // transaction the caller cannot end.
                return withheld(
                    "the statement left the connection inside a transaction; \
                     the connection is discarded",
                );
            }
            match rows {
                // The connection itself failed: never reuse it.
                Err(e @ RepoError::Unavailable { .. }) => Err(e),
                Ok(_) if !wire.injected => withheld(
                    "the statement did not go out as Bind/Execute, so no tenant guard could \
                     travel with it; its result is withheld and the connection dropped",
                ),
                Ok(_) if wire.extra_bind => {
                    // The guard travelled with another statement (the driver's
                    // lookup of a type it did not know yet); this one ran
                    // without a tenant. The connection is clean (each group's
                    // Sync ended its implicit transaction), and the type is now
                    // known to it.
                    g.in_use = false;
                    withheld(
                        "the guard travelled with a statement the driver sent first (a type lookup); \
                         the result, read without a tenant, is withheld",
                    )
                }
                // Either way the implicit transaction is over: the statement
                // ran (or failed) and the Sync ended it, or nothing was sent.
                result => {
                    g.in_use = false;
                    result
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Reads, without a tenant and without opening a transaction, what an idle
    /// pooled connection carries (for health checks and tests: a clean pool
    /// never shows a tenant, an actor or an open transaction).
    pub async fn probe_idle(&self) -> Result<ConnectionProbe, RepoError> {
        probe(&self.core.pool).await
    }

    /// Pool counters.
    pub fn pool_status(&self) -> PoolStatus {
        pool_status(&self.core.pool)
    }

    /// The document limits of this database's configuration.
    pub fn limits(&self) -> &Limits {
        &self.core.limits
    }

    /// How this pool sends the tenant context.
    pub fn tenant_context_mode(&self) -> TenantContextMode {
        self.core.mode
    }

    /// The `plan_cache_mode` this pool sets on its connections.
    pub fn plan_cache_mode(&self) -> PlanCacheMode {
        self.core.plan_cache_mode
    }
}

/// The explicit cross-tenant path: a pool logged in as `attestor_worker` (or
/// another role with its own narrow policies) whose transactions set
/// `app.tenant_id` to the empty string, so tenant-isolated policies see no
/// tenant (AT001) and only the worker's own policies apply.
#[derive(Clone)]
pub struct WorkerDatabase {
    core: PoolCore,
}

impl std::fmt::Debug for WorkerDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.debug("WorkerDatabase", f)
    }
}

/// A worker transaction's handle (no tenant).
pub struct WorkerTx {
    conn: Pooled,
    limits: Limits,
}

impl WorkerTx {
    /// The connection, inside the open transaction (no tenant set).
    pub fn conn(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn.conn
    }

    /// Limits applied to documents parsed in this transaction.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl WorkerDatabase {
    /// Builds the worker pool and checks that one connection can be opened.
    pub async fn connect(config: DatabaseConfig) -> Result<WorkerDatabase, RepoError> {
        Ok(WorkerDatabase {
            core: PoolCore::connect(&config, true).await?,
        })
    }

    /// Runs `f` in a transaction with no tenant, as `actor` for the audit log;
    /// same commit/rollback/discard rules as [`Database::transaction`].
    pub async fn transaction<'a, T, E, F>(&self, actor: Option<&str>, f: F) -> Result<T, E>
    where
        F: for<'r> FnOnce(&'r mut WorkerTx) -> ScopedBoxFuture<'a, 'r, Result<T, E>> + Send + 'a,
        E: From<RepoError> + Send + 'a,
        T: Send + 'a,
    {
        let span = tracing::info_span!("worker_transaction", actor = actor.unwrap_or(""));
        let begin = begin_sql(self.core.mode, actor, self.core.statement_timeout);
        async move {
            let begin = Opening::Sql(begin?);
            let check = wire::encode_check("", checked_actor(actor)?);
            let conn = self.core.pool.get_owned().await.map_err(RepoError::from)?;
            run_in_transaction(
                WorkerTx {
                    conn,
                    limits: self.core.limits,
                },
                begin,
                check,
                f,
            )
            .await
        }
        .instrument(span)
        .await
    }

    /// See [`Database::probe_idle`].
    pub async fn probe_idle(&self) -> Result<ConnectionProbe, RepoError> {
        probe(&self.core.pool).await
    }

    /// Pool counters.
    pub fn pool_status(&self) -> PoolStatus {
        pool_status(&self.core.pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_sql_quotes_the_actor() {
        let mode = TenantContextMode::SetConfig;
        let sql = begin_sql(mode, Some("o'brien \\ x"), None).unwrap();
        assert_eq!(
            sql,
            "BEGIN; SELECT set_config('app.tenant_id', '', true), \
             set_config('app.actor', E'o''brien \\\\ x', true)"
        );
        assert!(begin_sql(mode, Some("a\0b"), None).is_err());
        assert!(begin_sql(mode, Some(&"x".repeat(MAX_ACTOR_BYTES + 1)), None).is_err());
        let sql = begin_sql(mode, None, Some(Duration::from_secs(2))).unwrap();
        assert!(
            sql.ends_with("set_config('app.actor', '', true), set_config('statement_timeout', '2000', true)")
        );
        let local = TenantContextMode::SetLocal;
        assert_eq!(
            begin_sql(local, Some("o'brien \\ x"), Some(Duration::from_secs(2))).unwrap(),
            "BEGIN; SET LOCAL app.tenant_id = ''; SET LOCAL app.actor = E'o''brien \\\\ x'; \
             SET LOCAL statement_timeout = 2000"
        );
        assert_eq!(
            begin_sql(local, Some("plain"), None).unwrap(),
            "BEGIN; SET LOCAL app.tenant_id = ''; SET LOCAL app.actor = 'plain'"
        );
        assert!(begin_sql(local, Some("a\0b"), None).is_err());
    }
}
