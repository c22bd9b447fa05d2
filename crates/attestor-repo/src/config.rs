//! [`DatabaseConfig`]: where to connect and the pool, timeout and input limits.
//!
//! Owns: the knobs of a [`crate::Database`] / [`crate::WorkerDatabase`] and
//! their defaults, including the session settings a pool applies to its
//! connections ([`PlanCacheMode`], and Citus's propagation of `SET LOCAL`
//! under [`TenantContextMode::SetLocal`]; tenant context is never a session
//! setting), and how the guard sends the tenant context
//! ([`TenantContextMode`], fixed for a pool's life). Must never: read the environment or files on its own (the
//! service decides where configuration comes from), or hold credentials
//! anywhere but inside `url`.

use std::time::Duration;

use attestor_formats::Limits;

/// Connection pool and input-limit settings.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `postgres://…` URL (the role must be `attestor_app` for [`crate::Database`]).
    pub url: String,
    /// Largest number of pooled connections (default 10).
    pub max_connections: u32,
    /// Connections kept open when idle (default `None`: none are opened eagerly).
    pub min_idle: Option<u32>,
    /// How long to wait for a pooled connection, including connecting (default 10 s).
    pub connection_timeout: Duration,
    /// Close connections idle for longer than this (default 10 min).
    pub idle_timeout: Option<Duration>,
    /// Close connections older than this (default 30 min).
    pub max_lifetime: Option<Duration>,
    /// Run `SELECT 1` on every checkout to catch connections that died while
    /// idle (default `true`; one extra round trip per transaction when on).
    /// Off, a dead connection surfaces as [`crate::RepoError::Unavailable`]
    /// on first use and is discarded.
    pub test_on_checkout: bool,
    /// `statement_timeout` for every statement of a transaction, set with
    /// `set_config(…, true)` in the same batch as `BEGIN` (default `None`: the role's setting).
    pub statement_timeout: Option<Duration>,
    /// Largest document (envelope, bundle, SBOM, Rekor response) accepted, in bytes (default 16 MiB).
    pub max_document_bytes: usize,
    /// How the server plans this pool's prepared statements, set once per
    /// connection when it is opened (default [`PlanCacheMode::ForceGenericPlan`];
    /// never that on a Citus coordinator, see [`Self::on_citus`]).
    pub plan_cache_mode: PlanCacheMode,
    /// How the guard sends the tenant context (default
    /// [`TenantContextMode::SetConfig`]); one mechanism for every connection
    /// of the pool, for the pool's whole life.
    pub tenant_context_mode: TenantContextMode,
}

/// How the guard sends a transaction's tenant context (`app.tenant_id`,
/// `app.actor`, and the statement timeout), chosen when the pool is built
/// and never switched per transaction: every connection of a pool uses one
/// mechanism, and a transaction whose context changed by any other means is
/// refused at its `COMMIT` (see `wire`).
///
/// Both set the values transaction-locally, so they end with the
/// transaction; both work on plain PostgreSQL. Only `SET LOCAL` reaches the
/// shards of a Citus cluster: Citus forwards `SET LOCAL` (with
/// `citus.propagate_set_commands = 'local'`) to the workers a transaction
/// uses, never a `set_config` call, so under [`Self::SetConfig`] the
/// workers see no tenant and every shard statement fails with AT001.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TenantContextMode {
    /// `set_config('app.tenant_id', $1, true)` and friends, as prepared
    /// statements bound with the values (plain PostgreSQL; the cheapest).
    #[default]
    SetConfig,
    /// `SET LOCAL app.tenant_id = '<uuid>'`, `SET LOCAL app.actor = '<actor>'`
    /// (and `SET LOCAL statement_timeout`), values inlined as quoted
    /// literals, inside `BEGIN`; every connection also runs
    /// `SET citus.propagate_set_commands = 'local'` once (on plain
    /// PostgreSQL a harmless placeholder). `SET LOCAL` needs a transaction
    /// block, so [`crate::Database::fetch`] runs its statement as a
    /// one-statement transaction in this mode.
    SetLocal,
}

impl TenantContextMode {
    /// The statement this mode runs on every new connection, if any.
    pub(crate) fn session_setup(self) -> Option<&'static str> {
        match self {
            TenantContextMode::SetConfig => None,
            TenantContextMode::SetLocal => Some("SET citus.propagate_set_commands = 'local'"),
        }
    }
}

impl std::str::FromStr for TenantContextMode {
    type Err = String;

    /// `set_config` or `set_local`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "set_config" => Ok(TenantContextMode::SetConfig),
            "set_local" => Ok(TenantContextMode::SetLocal),
            other => Err(format!(
                "unknown tenant context mode `{other}` (set_config or set_local)"
            )),
        }
    }
}

/// PostgreSQL's `plan_cache_mode` for a pool's connections.
///
/// Under Row-Level Security the tenant predicate compares with the inlined
/// tenant helper, a value (a GUC) the planner never sees, so a custom plan cannot use the
/// most selective predicate of a tenant query anyway. PostgreSQL's `auto`
/// still keeps re-planning a statement whose generic plan looks dearer than
/// its custom ones, typically one with `LIMIT $n` (a generic plan estimates
/// an unknown limit at 10% of the rows): every page of a list is planned
/// again, policies and the inlined tenant helper included. Measured (`cargo xtask bench guard`, 1M rows): a page
/// of 50 costs the server ~85 µs planned each time, ~45 µs with a generic
/// plan. Choose [`PlanCacheMode::Auto`] (or set `plan_cache_mode` for one
/// transaction with `set_config`) for statements whose best plan depends on
/// a parameter's value, e.g. a JSONB containment pattern that is common in
/// some tenants and rare in others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanCacheMode {
    /// Leave the role's or server's setting (PostgreSQL's own default is `auto`).
    ServerSetting,
    /// `auto`: custom plans for the first five executions, then generic if it is not dearer.
    Auto,
    /// `force_generic_plan`: plan once per statement and connection.
    ForceGenericPlan,
    /// `force_custom_plan`: plan every execution with its parameter values.
    ForceCustomPlan,
}

impl PlanCacheMode {
    /// The value of `plan_cache_mode` this mode sets (`None`: none is set).
    pub fn setting(self) -> Option<&'static str> {
        match self {
            PlanCacheMode::ServerSetting => None,
            PlanCacheMode::Auto => Some("auto"),
            PlanCacheMode::ForceGenericPlan => Some("force_generic_plan"),
            PlanCacheMode::ForceCustomPlan => Some("force_custom_plan"),
        }
    }

    /// The statement that applies this mode to a new connection, if any.
    pub(crate) fn session_setup(self) -> Option<String> {
        self.setting().map(|v| format!("SET plan_cache_mode = {v}"))
    }
}

impl std::str::FromStr for PlanCacheMode {
    type Err = String;

    /// `auto`, `force_generic_plan`, `force_custom_plan` or `server`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "server" => Ok(PlanCacheMode::ServerSetting),
            "auto" => Ok(PlanCacheMode::Auto),
            "force_generic_plan" => Ok(PlanCacheMode::ForceGenericPlan),
            "force_custom_plan" => Ok(PlanCacheMode::ForceCustomPlan),
            other => Err(format!(
                "unknown plan cache mode `{other}` (auto, force_generic_plan, force_custom_plan or server)"
            )),
        }
    }
}

impl DatabaseConfig {
    /// A configuration with the defaults documented on each field.
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseConfig {
            url: url.into(),
            max_connections: 10,
            min_idle: None,
            connection_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            test_on_checkout: true,
            statement_timeout: None,
            max_document_bytes: attestor_formats::limits::DEFAULT_MAX_DOCUMENT_BYTES,
            plan_cache_mode: PlanCacheMode::ForceGenericPlan,
            tenant_context_mode: TenantContextMode::SetConfig,
        }
    }

    /// Sets [`Self::max_connections`].
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`Self::plan_cache_mode`].
    pub fn with_plan_cache_mode(mut self, mode: PlanCacheMode) -> Self {
        self.plan_cache_mode = mode;
        self
    }

    /// Sets [`Self::tenant_context_mode`].
    pub fn with_tenant_context_mode(mut self, mode: TenantContextMode) -> Self {
        self.tenant_context_mode = mode;
        self
    }

    /// The settings a pool on a Citus coordinator needs:
    /// [`TenantContextMode::SetLocal`] (only `SET LOCAL` reaches the shards)
    /// and [`PlanCacheMode::Auto`]. Citus plans a statement that is more
    /// than one table's simple filter (a CTE, a join, `INSERT … SELECT`: the
    /// queue's completion) only with its parameter values; as a generic
    /// plan it fails with "could not create distributed plan". Under `auto`
    /// every unnamed statement is planned with its values, and a cached
    /// statement that turns generic is one Citus prunes at execution.
    pub fn on_citus(self) -> Self {
        self.with_tenant_context_mode(TenantContextMode::SetLocal)
            .with_plan_cache_mode(PlanCacheMode::Auto)
    }

    /// Sets [`Self::max_document_bytes`].
    pub fn with_max_document_bytes(mut self, n: usize) -> Self {
        self.max_document_bytes = n;
        self
    }

    /// The parser limits derived from this configuration.
    pub fn limits(&self) -> Limits {
        Limits {
            max_document_bytes: self.max_document_bytes,
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: show only what follows the '@'.
        let shown = match self.url.rsplit_once('@') {
            Some((_, host)) => format!("postgres://…@{host}"),
            None => self.url.clone(),
        };
        f.debug_struct("DatabaseConfig")
            .field("url", &shown)
            .field("max_connections", &self.max_connections)
            .field("min_idle", &self.min_idle)
            .field("connection_timeout", &self.connection_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("test_on_checkout", &self.test_on_checkout)
            .field("statement_timeout", &self.statement_timeout)
            .field("max_document_bytes", &self.max_document_bytes)
            .field("plan_cache_mode", &self.plan_cache_mode)
            .field("tenant_context_mode", &self.tenant_context_mode)
            .finish()
    }
}
