//! Repository statements: the one way a repository module runs SQL, each
//! statement scoped to the transaction's tenant by an explicit predicate.
//!
//! Owns: [`Scope`], what a statement's builder is given (the guard's
//! tenant, never a caller's), whose constructors put `tenant_id = $n` on
//! every read and update ([`Scope::table`], [`Scope::update`]) and the
//! tenant into every insert's `tenant_id` column ([`Scope::insert`]);
//! [`TenantTx::statement`], which builds and runs one named statement; and
//! plan recording ([`TenantTx::record_plans`]): every statement of the
//! transaction is first `EXPLAIN (VERBOSE, FORMAT JSON)`ed with the same
//! parameters, and the plans are kept for the caller ([`StatementPlan`]).
//!
//! Why the predicate, when Row-Level Security already restricts every row to
//! the current tenant: RLS is the enforcement, the predicate is the routing
//! hint. A policy's `tenant_id = <current tenant>` compares with a function
//! of a setting, which no planner can turn into a shard, so on Citus a
//! statement without a bound `tenant_id = $n` fans out to every shard of the
//! table; with it, each tenant statement runs on the one shard that holds the
//! tenant. On plain PostgreSQL the predicate is the leading column of every
//! index the statement can use.
//!
//! Must never: take the tenant from anything but the guard's transaction
//! ([`TenantTx::tenant`]), be bypassed by a repository module (the routing
//! tests read this crate's sources and fail on a repository statement that
//! runs on [`TenantTx::conn`] directly or names a table outside a [`Scope`]
//! constructor), or change what a statement does when plans are recorded
//! (`EXPLAIN` without `ANALYZE` runs nothing).

use attestor_schema::schema::attestor;
use diesel::dsl::{Eq, Filter};
use diesel::pg::Pg;
use diesel::query_builder::{
    AstPass, InsertStatement, IntoUpdateTarget, Query, QueryFragment, QueryId, UpdateStatement,
};
use diesel::query_dsl::methods::FilterDsl;
use diesel::{Column, ExpressionMethods, Insertable, QueryResult, Table};
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::{RepoError, TenantTx};

/// A tenant table: one with a `tenant_id uuid` column, the distribution
/// column when the tables are distributed.
pub(crate) trait TenantTable: Table + Sized {
    /// The table's `tenant_id` column.
    type TenantId: Column<Table = Self, SqlType = diesel::sql_types::Uuid> + Default;
}

macro_rules! tenant_tables {
    ($($table:ident),* $(,)?) => {
        $(impl TenantTable for attestor::$table::table {
            type TenantId = attestor::$table::tenant_id;
        })*
    };
}

tenant_tables!(
    audit_log,
    dsse_envelopes,
    rekor_entries,
    sbom_entries,
    spines,
    trust_anchors,
    verdict_ledger,
);

/// `tenant_id = $n` on `T`.
pub(crate) type TenantPredicate<T> = Eq<<T as TenantTable>::TenantId, Uuid>;

/// `T` restricted to the transaction's tenant.
pub(crate) type Scoped<T> = Filter<T, TenantPredicate<T>>;

/// What a statement's builder is given: the guard's tenant, and the only
/// constructors a repository statement starts from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope {
    tenant: Uuid,
}

impl Scope {
    fn predicate<T: TenantTable>(self) -> TenantPredicate<T> {
        T::TenantId::default().eq(self.tenant)
    }

    /// `SELECT … FROM table WHERE tenant_id = $n`, to refine.
    pub(crate) fn table<T>(self, table: T) -> Scoped<T>
    where
        T: TenantTable + FilterDsl<TenantPredicate<T>>,
    {
        table.filter(self.predicate::<T>())
    }

    /// `UPDATE table … WHERE tenant_id = $n`, to refine with `.filter` and `.set`.
    #[allow(clippy::type_complexity)]
    pub(crate) fn update<T>(
        self,
        table: T,
    ) -> Filter<UpdateStatement<T, <T as IntoUpdateTarget>::WhereClause>, TenantPredicate<T>>
    where
        T: TenantTable + IntoUpdateTarget<Table = T>,
        UpdateStatement<T, <T as IntoUpdateTarget>::WhereClause>: FilterDsl<TenantPredicate<T>>,
    {
        diesel::update(table).filter(self.predicate::<T>())
    }

    /// `INSERT INTO table (tenant_id, …) VALUES ($1, …)`: `values` are the
    /// other columns (naming `tenant_id` again is refused by the server).
    #[allow(clippy::type_complexity)]
    pub(crate) fn insert<T, V>(
        self,
        table: T,
        values: V,
    ) -> InsertStatement<T, <(TenantPredicate<T>, V) as Insertable<T>>::Values>
    where
        T: TenantTable,
        (TenantPredicate<T>, V): Insertable<T>,
    {
        diesel::insert_into(table).values((self.predicate::<T>(), values))
    }
}

/// One repository statement's plan, recorded by [`TenantTx::record_plans`].
#[derive(Debug, Clone, PartialEq)]
pub struct StatementPlan {
    /// The statement's name, `<module>::<what>`, unique in this crate.
    pub statement: &'static str,
    /// Its SQL with `$n` placeholders and, after `-- binds:`, its
    /// parameters as diesel prints them.
    pub sql: String,
    /// What `EXPLAIN (VERBOSE, FORMAT JSON)` returned for it, with the same
    /// parameters, in the same transaction.
    pub plan: serde_json::Value,
}

impl TenantTx {
    /// From now on, each repository statement of this transaction is first
    /// explained (`EXPLAIN (VERBOSE, FORMAT JSON)`, which plans and runs
    /// nothing) with the same parameters, and its plan kept; read them with
    /// [`TenantTx::take_plans`]. For diagnostics and tests: it shows how each
    /// statement is planned and, on Citus, to how many shards it goes.
    pub fn record_plans(&mut self) {
        self.plans.get_or_insert_with(Vec::new);
    }

    /// The plans recorded so far (recording goes on).
    pub fn take_plans(&mut self) -> Vec<StatementPlan> {
        self.plans.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The repository statement `name`, built by `build` from this
    /// transaction's [`Scope`]; run it with one of [`Statement`]'s methods.
    pub(crate) fn statement<F, Q>(&mut self, name: &'static str, build: F) -> Statement<'_, F>
    where
        F: Fn(Scope) -> Q,
    {
        Statement {
            tx: self,
            name,
            build,
        }
    }
}

/// A named repository statement, not yet run.
pub(crate) struct Statement<'t, F> {
    tx: &'t mut TenantTx,
    name: &'static str,
    build: F,
}

// The runners return boxed futures: a caller's future that holds one of
// these statements (a closure borrowing the caller's values) across an
// `.await` is then provably `Send` for the tenant transaction's closure,
// which an `async fn` generic over the closure is not (the compiler cannot
// prove `Send` for every lifetime of the borrows). One allocation per
// statement, next to a round trip to the server.
impl<'t, F> Statement<'t, F> {
    fn scope(&self) -> Scope {
        Scope {
            tenant: self.tx.tenant().as_uuid(),
        }
    }

    /// Explains `query` when the transaction records plans.
    async fn record<Q>(&mut self, query: Q) -> Result<(), RepoError>
    where
        Q: QueryFragment<Pg> + Send,
    {
        if self.tx.plans.is_none() {
            return Ok(());
        }
        let sql = diesel::debug_query::<Pg, _>(&query).to_string();
        let plan: serde_json::Value = Explain(query).get_result(self.tx.conn()).await?;
        if let Some(plans) = self.tx.plans.as_mut() {
            plans.push(StatementPlan {
                statement: self.name,
                sql,
                plan,
            });
        }
        Ok(())
    }

    /// All rows.
    pub(crate) fn load<Q, U>(mut self) -> BoxFuture<'t, Result<Vec<U>, RepoError>>
    where
        F: Fn(Scope) -> Q + Send + 't,
        Q: LoadQuery<'t, AsyncPgConnection, U> + QueryFragment<Pg> + Send + 't,
        U: Send + 't,
    {
        Box::pin(async move {
            let scope = self.scope();
            self.record((self.build)(scope)).await?;
            Ok((self.build)(scope).load(self.tx.conn()).await?)
        })
    }

    /// The one row, or `None` when there is none.
    pub(crate) fn optional<Q, U>(mut self) -> BoxFuture<'t, Result<Option<U>, RepoError>>
    where
        F: Fn(Scope) -> Q + Send + 't,
        Q: LoadQuery<'t, AsyncPgConnection, U> + QueryFragment<Pg> + Send + 't,
        U: Send + 't,
    {
        Box::pin(async move {
            use diesel::OptionalExtension as _;
            let scope = self.scope();
            self.record((self.build)(scope)).await?;
            Ok((self.build)(scope).get_result(self.tx.conn()).await.optional()?)
        })
    }

    /// The one row (a statement that returns none is an error).
    pub(crate) fn one<Q, U>(mut self) -> BoxFuture<'t, Result<U, RepoError>>
    where
        F: Fn(Scope) -> Q + Send + 't,
        Q: LoadQuery<'t, AsyncPgConnection, U> + QueryFragment<Pg> + Send + 't,
        U: Send + 't,
    {
        Box::pin(async move {
            let scope = self.scope();
            self.record((self.build)(scope)).await?;
            Ok((self.build)(scope).get_result(self.tx.conn()).await?)
        })
    }

    /// Runs it for its effect; the number of rows it affected.
    pub(crate) fn execute<Q>(mut self) -> BoxFuture<'t, Result<usize, RepoError>>
    where
        F: Fn(Scope) -> Q + Send + 't,
        Q: ExecuteDsl<AsyncPgConnection> + QueryFragment<Pg> + QueryId + Send + 't,
    {
        Box::pin(async move {
            let scope = self.scope();
            self.record((self.build)(scope)).await?;
            Ok(ExecuteDsl::execute((self.build)(scope), self.tx.conn()).await?)
        })
    }
}

/// `EXPLAIN (VERBOSE, FORMAT JSON) <query>`, with the query's parameters.
struct Explain<Q>(Q);

impl<Q> QueryId for Explain<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Explain<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        out.push_sql("EXPLAIN (VERBOSE, FORMAT JSON) ");
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q: QueryFragment<Pg>> Query for Explain<Q> {
    type SqlType = diesel::sql_types::Json;
}
