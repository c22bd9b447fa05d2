//! The tenant guard against a real PostgreSQL, pool of one connection: the
//! tenant is visible inside the transaction only; commit, rollback, database
//! error, panic, cancellation and a lost connection each leave the pool with
//! no tenant, no actor and no open transaction (and the unclean ones replace
//! the connection); SQLSTATEs map to typed errors.

mod common;

use std::time::Duration;

use attestor_repo::scoped_futures::ScopedFutureExt as _;
use attestor_repo::{
    Database, DatabaseConfig, PlanCacheMode, RepoError, TenantContext, TenantContextMode, TenantId,
    WorkerDatabase,
};
use common::*;
use diesel::sql_types::{Integer, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection as _, RunQueryDsl};

#[derive(QueryableByName, Debug)]
struct Setting {
    #[diesel(sql_type = Nullable<Text>)]
    v: Option<String>,
}

#[derive(QueryableByName, Debug)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

async fn setting(
    conn: &mut diesel_async::AsyncPgConnection,
    name: &str,
) -> Result<Option<String>, RepoError> {
    Ok(
        diesel::sql_query(format!("SELECT current_setting('{name}', true) AS v"))
            .get_result::<Setting>(conn)
            .await?
            .v,
    )
}

async fn count_sboms(db: &Database, t: TenantId) -> i64 {
    tx(db, t, move |tx| {
        async move {
            use attestor_schema::schema::attestor::sbom_entries::dsl::*;
            use diesel::{ExpressionMethods, QueryDsl};
            Ok(sbom_entries
                .filter(tenant_id.eq(t.as_uuid()))
                .count()
                .get_result::<i64>(tx.conn())
                .await?)
        }
        .scope_boxed()
    })
    .await
    .unwrap()
}

async fn insert_sbom(tx: &mut attestor_repo::TenantTx, n: u8) -> Result<(), RepoError> {
    let doc = serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "n": n});
    attestor_repo::sbom_entries::ingest(tx, &serde_json::to_vec(&doc).unwrap()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_and_actor_are_set_inside_and_gone_after_commit() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let before = db.probe_idle().await.unwrap();
        assert!(before.is_clean(), "{before:?}");
        let t = TenantId::new_random();
        let (tenant, actor) = db
            .transaction(TenantContext::new(t).with_actor("o'brien \\ ☃"), |tx| {
                async move {
                    let c = tx.conn();
                    Ok::<_, RepoError>((setting(c, "app.tenant_id").await?, setting(c, "app.actor").await?))
                }
                .scope_boxed()
            })
            .await
            .unwrap();
        assert_eq!(tenant.as_deref(), Some(t.to_string().as_str()));
        assert_eq!(actor.as_deref(), Some("o'brien \\ ☃"));
        let after = db.probe_idle().await.unwrap();
        assert!(after.is_clean(), "{after:?}");
        assert_eq!(
            after.backend_pid, before.backend_pid,
            "a clean commit keeps the connection"
        );
        assert_eq!(db.pool_status().closed_broken, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closure_error_rolls_back_and_keeps_a_clean_connection() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let pid = db.probe_idle().await.unwrap().backend_pid;
        let err = tx(&db, t, |tx| {
            async move {
                insert_sbom(tx, 1).await?;
                Err::<(), _>(RepoError::InvalidInput {
                    message: "caller says no".into(),
                    constraint: None,
                })
            }
            .scope_boxed()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, RepoError::InvalidInput { .. }));
        assert_eq!(count_sboms(&db, t).await, 0, "rolled back");
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
        assert_eq!(probe.backend_pid, pid);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_error_is_typed_and_rolled_back() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let err = tx(&db, t, |tx| {
            async move {
                use attestor_schema::schema::attestor::trust_anchors::dsl::*;
                use diesel::ExpressionMethods;
                let row = (
                    tenant_id.eq(tx.tenant().as_uuid()),
                    key_id.eq("k"),
                    algorithm.eq("ed25519"),
                    public_key.eq(vec![1u8]),
                    valid_from.eq(chrono::DateTime::from_timestamp(0, 0).unwrap()),
                );
                diesel::insert_into(trust_anchors)
                    .values(row.clone())
                    .execute(tx.conn())
                    .await?;
                diesel::insert_into(trust_anchors)
                    .values(row)
                    .execute(tx.conn())
                    .await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await
        .unwrap_err();
        match err {
            // A coordinator relays the shard's error without its constraint
            // field; its message names the shard's copy of the constraint
            // (the name with the shard id appended).
            RepoError::Conflict { constraint, message } if tdb.server().citus().is_some() => {
                assert_eq!(constraint, "", "{message}");
                assert!(
                    message.contains("\"trust_anchors_key_id_valid_from_key_"),
                    "{message}"
                );
            }
            RepoError::Conflict { constraint, .. } => {
                assert_eq!(constraint, "trust_anchors_key_id_valid_from_key")
            }
            e => panic!("expected Conflict, got {e:?}"),
        }
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_in_closure_discards_the_connection() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let pid = db.probe_idle().await.unwrap().backend_pid;
        let db2 = db.clone();
        let joined = tokio::spawn(async move {
            tx(&db2, t, move |tx| {
                async move {
                    insert_sbom(tx, 1).await?;
                    if tx.tenant() == t {
                        panic!("boom inside a tenant transaction");
                    }
                    Ok(())
                }
                .scope_boxed()
            })
            .await
        })
        .await;
        assert!(joined.unwrap_err().is_panic());
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
        assert_ne!(probe.backend_pid, pid, "the connection was replaced");
        assert_eq!(db.pool_status().closed_broken, 1);
        assert_eq!(count_sboms(&db, t).await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_while_idle_in_transaction_discards_the_connection() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let pid = db.probe_idle().await.unwrap().backend_pid;
        let fut = tx(&db, t, |tx| {
            async move {
                insert_sbom(tx, 1).await?;
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            }
            .scope_boxed()
        });
        assert!(tokio::time::timeout(Duration::from_millis(300), fut)
            .await
            .is_err());
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
        assert_ne!(probe.backend_pid, pid);
        assert_eq!(
            count_sboms(&db, t).await,
            0,
            "the cancelled insert never committed"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_during_a_query_discards_the_connection() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let pid = db.probe_idle().await.unwrap().backend_pid;
        let fut = tx(&db, t, |tx| {
            async move {
                insert_sbom(tx, 1).await?;
                diesel::sql_query("SELECT pg_sleep(2)").execute(tx.conn()).await?;
                Ok(())
            }
            .scope_boxed()
        });
        assert!(tokio::time::timeout(Duration::from_millis(300), fut)
            .await
            .is_err());
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
        assert_ne!(probe.backend_pid, pid);
        assert_eq!(count_sboms(&db, t).await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_at_every_await_point_never_leaks() {
    in_both_modes(|| async {
        // Cancel after 0..N polls of the transaction future: covers checkout,
        // BEGIN, the statements, COMMIT.
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        for polls in 0..12 {
            let mut fut = Box::pin(tx(&db, t, move |tx| {
                async move {
                    insert_sbom(tx, polls).await?;
                    Ok(())
                }
                .scope_boxed()
            }));
            let mut n = 0;
            let done = std::future::poll_fn(|cx| {
                if n >= polls {
                    return std::task::Poll::Ready(false);
                }
                n += 1;
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => {
                        r.unwrap();
                        std::task::Poll::Ready(true)
                    }
                    std::task::Poll::Pending => std::task::Poll::Pending,
                }
            })
            .await;
            drop(fut);
            let probe = db.probe_idle().await.unwrap();
            assert!(probe.is_clean(), "after {polls} polls (done: {done}): {probe:?}");
        }
        use std::future::Future as _;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connection_is_unavailable_and_replaced() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let admin = tdb.admin_url();
        let err = tx(&db, t, move |tx| {
            async move {
                let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
                    .get_result::<Pid>(tx.conn())
                    .await?
                    .pid;
                tokio::task::spawn_blocking(move || {
                    use diesel::Connection as _;
                    let mut c = diesel::PgConnection::establish(&admin).unwrap();
                    let q = diesel::sql_query(format!("SELECT pg_terminate_backend({pid})"));
                    diesel::RunQueryDsl::execute(q, &mut c).unwrap();
                })
                .await
                .unwrap();
                insert_sbom(tx, 1).await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, RepoError::Unavailable { .. }), "{err:?}");
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
        assert_eq!(count_sboms(&db, t).await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_transactions_are_savepoints() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        tx(&db, t, |tx| {
            async move {
                insert_sbom(tx, 1).await?;
                let inner: Result<(), RepoError> = tx
                    .conn()
                    .transaction(async |c| {
                        diesel::sql_query("SELECT 1").execute(c).await?;
                        Err(RepoError::invalid("inner fails"))
                    })
                    .await;
                assert!(inner.is_err());
                // Still inside the outer transaction, tenant still set.
                assert_eq!(
                    setting(tx.conn(), "app.tenant_id").await?,
                    Some(tx.tenant().to_string())
                );
                insert_sbom(tx, 2).await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await
        .unwrap();
        assert_eq!(count_sboms(&db, t).await, 2);
        assert!(db.probe_idle().await.unwrap().is_clean());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlstates_map_to_typed_errors() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let run = |sql: &'static str| {
            let db = db.clone();
            async move {
                tx(&db, t, move |tx| {
                    async move {
                        diesel::sql_query(sql).execute(tx.conn()).await?;
                        Ok(())
                    }
                    .scope_boxed()
                })
                .await
                .unwrap_err()
            }
        };
        let e =
            run("SELECT set_config('app.tenant_id', '', true), attestor_app.require_current_tenant()").await;
        assert!(matches!(e, RepoError::TenantNotSet), "{e:?}");
        let e =
            run("SELECT set_config('app.tenant_id', 'nope', true), attestor_app.require_current_tenant()")
                .await;
        assert!(matches!(e, RepoError::InvalidTenant), "{e:?}");
        let e = run(
            "SELECT set_config('app.tenant_id', '00000000-0000-0000-0000-000000000000', true), \
                     attestor_app.require_current_tenant()",
        )
        .await;
        assert!(matches!(e, RepoError::InvalidTenant), "{e:?}");
        let e = run("DELETE FROM attestor.verdict_ledger").await;
        assert!(matches!(e, RepoError::PermissionDenied), "{e:?}");
        let e = run("SELECT 'x'::uuid").await;
        assert!(matches!(e, RepoError::InvalidInput { .. }), "{e:?}");
        let e = run("SELECT '\"\\u0000\"'::jsonb").await;
        assert!(matches!(e, RepoError::InvalidInput { .. }), "{e:?}");
        let e = run("SELECT * FROM no_such_table").await;
        assert!(matches!(e, RepoError::Database(_)), "{e:?}");
        assert!(db.probe_idle().await.unwrap().is_clean());

        // AT003 binds every role: shown through a superuser pool (mapping only; no tenant rows are read).
        let admin = Database::connect(config(tdb.admin_url()).with_max_connections(1))
            .await
            .unwrap();
        let e = tx(&admin, t, |tx| {
            async move {
                diesel::sql_query("DELETE FROM attestor.audit_log")
                    .execute(tx.conn())
                    .await?;
                diesel::sql_query(
                    "INSERT INTO attestor.audit_log (tenant_id, table_name, row_id, action, changes, txid) \
                     VALUES (gen_random_uuid(), 't', gen_random_uuid(), 'INSERT', '{}', 1)",
                )
                .execute(tx.conn())
                .await?;
                diesel::sql_query("UPDATE attestor.audit_log SET actor = 'x'")
                    .execute(tx.conn())
                    .await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await
        .unwrap_err();
        assert!(matches!(e, RepoError::AppendOnly), "{e:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_actor_and_unreachable_database_are_typed() {
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let e = db
        .transaction(
            TenantContext::new(TenantId::new_random()).with_actor("a\0b"),
            |_tx| async move { Ok::<(), RepoError>(()) }.scope_boxed(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, RepoError::InvalidInput { .. }), "{e:?}");
    let mut cfg = DatabaseConfig::new("postgres://attestor_app@127.0.0.1:1/attestor");
    cfg.connection_timeout = Duration::from_millis(500);
    let e = Database::connect(cfg).await.unwrap_err();
    assert!(matches!(e, RepoError::Unavailable { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_error_types_work_with_the_guard() {
    in_both_modes(|| async {
        #[derive(Debug)]
        enum AppError {
            #[allow(dead_code)]
            Repo(RepoError),
            Denied,
        }
        impl From<RepoError> for AppError {
            fn from(e: RepoError) -> Self {
                AppError::Repo(e)
            }
        }
        let tdb = test_db();
        let db = app(&tdb, 2).await;
        let t = TenantId::new_random();
        let owned = String::from("borrowed into the closure");
        let r: Result<usize, AppError> = db
            .transaction(ctx(t), |_tx| async move { Ok(owned.len()) }.scope_boxed())
            .await;
        assert_eq!(r.unwrap(), 25);
        let r: Result<(), AppError> = db
            .transaction(ctx(t), |_tx| async move { Err(AppError::Denied) }.scope_boxed())
            .await;
        assert!(matches!(r, Err(AppError::Denied)));
        let _ = AppError::Repo(RepoError::TenantNotSet);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_connection_gets_the_configured_plan_cache_mode() {
    in_both_modes(|| async {
        let tdb = test_db();
        let t = TenantId::new_random();
        let read = |db: Database| async move {
            let rows: Vec<Setting> = db
                .fetch(
                    ctx(t),
                    diesel::sql_query("SELECT current_setting('plan_cache_mode') AS v"),
                )
                .await
                .unwrap();
            rows.into_iter().next().and_then(|r| r.v)
        };
        // The default: generic plans (see PlanCacheMode), through fetch's splice.
        assert_eq!(
            read(app(&tdb, 1).await).await.as_deref(),
            Some("force_generic_plan")
        );
        // ServerSetting leaves what a plain attestor_app connection gets from the
        // server (its configuration, or a role or database setting): read that first.
        let own: Vec<Setting> = diesel::RunQueryDsl::load(
            diesel::sql_query("SELECT current_setting('plan_cache_mode') AS v"),
            &mut tdb.connect_app().unwrap(),
        )
        .unwrap();
        let own = own.into_iter().next().and_then(|r| r.v);
        assert!(own.is_some());
        let server = config(tdb.app_url())
            .with_max_connections(1)
            .with_plan_cache_mode(PlanCacheMode::ServerSetting);
        assert_eq!(read(Database::connect(server).await.unwrap()).await, own);
        // The worker pool (diesel-async's own connections) gets it too.
        let worker = config(tdb.worker_url())
            .with_max_connections(1)
            .with_plan_cache_mode(PlanCacheMode::ForceCustomPlan);
        let w = WorkerDatabase::connect(worker).await.unwrap();
        let mode = w
            .transaction(None, |tx| {
                async move { setting(tx.conn(), "plan_cache_mode").await }.scope_boxed()
            })
            .await
            .unwrap();
        assert_eq!(mode.as_deref(), Some("force_custom_plan"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_path_has_no_tenant() {
    in_both_modes(|| async {
        let tdb = test_db();
        let w = WorkerDatabase::connect(config(tdb.worker_url()).with_max_connections(1))
            .await
            .unwrap();
        let (tenant, user) = w
            .transaction(Some("worker-1"), |tx| {
                async move {
                    let t = setting(tx.conn(), "app.tenant_id").await?;
                    let u = diesel::sql_query("SELECT current_user::text AS v")
                        .get_result::<Setting>(tx.conn())
                        .await?;
                    Ok::<_, RepoError>((t, u.v))
                }
                .scope_boxed()
            })
            .await
            .unwrap();
        assert_eq!(tenant.as_deref(), Some(""));
        assert_eq!(user.as_deref(), Some("attestor_worker"));
        assert!(w.probe_idle().await.unwrap().is_clean());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_detects_and_discards_a_connection_left_dirty_by_misuse() {
    in_both_modes(|| async {
        // Positive control for `probe_idle`: a closure that ends the guard's
        // transaction by hand and sets a *session* tenant leaves the connection
        // dirty; the probe reports it and the pool drops that connection. (It
        // sets the guard's own tenant and actor, so the check in front of the
        // COMMIT, which compares values, lets it through: see
        // `a_context_changed_inside_the_transaction_is_refused_at_commit`.)
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let pid = db.probe_idle().await.unwrap().backend_pid;
        tx(&db, t, move |tx| {
            async move {
                use diesel_async::SimpleAsyncConnection as _;
                tx.conn()
                    .batch_execute(&format!(
                        "COMMIT; SELECT set_config('app.tenant_id', '{t}', false), \
                         set_config('app.actor', 'tester', false); BEGIN"
                    ))
                    .await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await
        .unwrap();
        let dirty = db.probe_idle().await.unwrap();
        assert_eq!(dirty.tenant_setting.as_deref(), Some(t.to_string().as_str()));
        assert!(!dirty.is_clean());
        let next = db.probe_idle().await.unwrap();
        assert!(next.is_clean(), "{next:?}");
        assert_ne!(next.backend_pid, pid, "the dirty connection was discarded");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swallowed_database_error_is_not_silently_committed() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let pid = db.probe_idle().await.unwrap().backend_pid;
        let r = tx(&db, t, |tx| {
            async move {
                insert_sbom(tx, 1).await?;
                // The caller ignores a failed statement and returns Ok.
                let _ = diesel::sql_query("SELECT 'x'::uuid").execute(tx.conn()).await;
                Ok(())
            }
            .scope_boxed()
        })
        .await;
        assert!(matches!(r, Err(RepoError::TransactionAborted)), "{r:?}");
        assert_eq!(count_sboms(&db, t).await, 0);
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean() && probe.backend_pid == pid, "{probe:?}");

        // A failure contained by a savepoint leaves the transaction usable: it commits.
        tx(&db, t, |tx| {
            async move {
                insert_sbom(tx, 2).await?;
                let inner: Result<(), RepoError> = tx
                    .conn()
                    .transaction(async |c| {
                        diesel::sql_query("SELECT 'x'::uuid").execute(c).await?;
                        Ok(())
                    })
                    .await;
                assert!(matches!(inner, Err(RepoError::InvalidInput { .. })), "{inner:?}");
                Ok(())
            }
            .scope_boxed()
        })
        .await
        .unwrap();
        assert_eq!(count_sboms(&db, t).await, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_is_transaction_local_and_typed() {
    in_both_modes(|| async {
        let tdb = test_db();
        let mut cfg = config(tdb.app_url()).with_max_connections(1);
        cfg.statement_timeout = Some(Duration::from_millis(100));
        let db = Database::connect(cfg).await.unwrap();
        let t = TenantId::new_random();
        let e = tx(&db, t, |tx| {
            async move {
                diesel::sql_query("SELECT pg_sleep(2)").execute(tx.conn()).await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await
        .unwrap_err();
        assert!(matches!(e, RepoError::Timeout { .. }), "{e:?}");
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_opening_query_fails_the_first_statement_and_replaces_the_connection() {
    // The transaction's `BEGIN; SELECT set_config(…)` travels in front of its
    // first statement (no request of its own); here it is made to fail. A
    // `set_config` pool on every server: the statements here read settings
    // and touch no shard, so a coordinator runs them as plain PostgreSQL does.
    let tdb = test_db();
    let db = Database::connect(
        DatabaseConfig::new(tdb.app_url())
            .with_tenant_context_mode(TenantContextMode::SetConfig)
            .with_max_connections(1),
    )
    .await
    .unwrap();
    let t = TenantId::new_random();
    let before = db.probe_idle().await.unwrap().backend_pid;
    let set_config_acl = |grant: &str| {
        let sql = format!(
            "{grant} EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) {}",
            match grant {
                "REVOKE" => "FROM PUBLIC",
                _ => "TO PUBLIC",
            }
        );
        diesel::RunQueryDsl::execute(diesel::sql_query(sql), &mut tdb.connect_admin().unwrap()).unwrap();
    };
    set_config_acl("REVOKE");
    let r = tx(&db, t, |tx| {
        async move { setting(tx.conn(), "app.tenant_id").await }.scope_boxed()
    })
    .await;
    assert!(
        matches!(r, Err(RepoError::PermissionDenied)),
        "the first statement fails with the opening query's own error (42501 on set_config): {r:?}"
    );
    set_config_acl("GRANT");
    // The connection that ran it was discarded; the next one is clean and works.
    let probe = db.probe_idle().await.unwrap();
    assert!(probe.is_clean(), "{probe:?}");
    assert_ne!(probe.backend_pid, before, "the connection was replaced");
    let got = tx(&db, t, |tx| {
        async move { setting(tx.conn(), "app.tenant_id").await }.scope_boxed()
    })
    .await
    .unwrap();
    assert_eq!(got, Some(t.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_changed_inside_the_transaction_is_refused_at_commit() {
    // The other mechanism planted in a transaction of each mode: `set_config`
    // on a `SET LOCAL` pool (on Citus it changes only the coordinator, the
    // shards keep the guard's tenant), `SET LOCAL` on a `set_config` pool;
    // and the actor changed the same way. The check in front of the COMMIT
    // sees a context the guard did not set: nothing commits, the caller gets
    // TenantContextChanged, the connection is not reused.
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let other = TenantId::new_random();
        let plants = match mode() {
            TenantContextMode::SetConfig => [
                format!("SET LOCAL app.tenant_id = '{other}'"),
                "SET LOCAL app.actor = 'someone else'".to_owned(),
            ],
            TenantContextMode::SetLocal => [
                format!("SELECT set_config('app.tenant_id', '{other}', true)"),
                "SELECT set_config('app.actor', 'someone else', true)".to_owned(),
            ],
        };
        for plant in plants {
            let pid = db.probe_idle().await.unwrap().backend_pid;
            let r = tx(&db, t, move |tx| {
                async move {
                    use diesel_async::SimpleAsyncConnection as _;
                    insert_sbom(tx, 1).await?;
                    tx.conn().batch_execute(&plant).await?;
                    Ok(())
                }
                .scope_boxed()
            })
            .await;
            assert!(matches!(r, Err(RepoError::TenantContextChanged)), "{r:?}");
            assert_eq!(count_sboms(&db, t).await, 0, "nothing committed");
            let probe = db.probe_idle().await.unwrap();
            assert!(probe.is_clean(), "{probe:?}");
            assert_ne!(probe.backend_pid, pid, "the connection was replaced");
        }
        // An unchanged context still commits, on the replacement connection.
        run!(db, t, |tx| { insert_sbom(tx, 2).await }).unwrap();
        assert_eq!(count_sboms(&db, t).await, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_sends_the_context_one_way_only() {
    // What a connection can send is fixed when it opens: a `set_config` pool
    // prepares the `set_config` guards, a `SET LOCAL` pool prepares none of
    // them (only the commit check, which sets nothing) and asks Citus to
    // propagate `SET LOCAL`. Both leave the values transaction-local.
    #[derive(QueryableByName, Debug)]
    struct Names {
        #[diesel(sql_type = Nullable<Text>)]
        names: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        propagate: Option<String>,
    }
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let got = tx(&db, t, |tx| {
            async move {
                Ok(diesel::sql_query(
                    "SELECT string_agg(name, ',' ORDER BY name) AS names, \
                            current_setting('citus.propagate_set_commands', true) AS propagate \
                       FROM pg_prepared_statements WHERE name LIKE 'attestor_guard%'",
                )
                .get_result::<Names>(tx.conn())
                .await?)
            }
            .scope_boxed()
        })
        .await
        .unwrap();
        let (names, propagate) = match mode() {
            TenantContextMode::SetConfig => (
                "attestor_guard,attestor_guard_actor,attestor_guard_check,attestor_guard_timeout",
                None,
            ),
            TenantContextMode::SetLocal => ("attestor_guard_check", Some("local")),
        };
        assert_eq!(got.names.as_deref(), Some(names), "{got:?}");
        assert_eq!(got.propagate.as_deref(), propagate, "{got:?}");
        assert!(db.probe_idle().await.unwrap().is_clean());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_config_does_not_reach_the_shards_of_a_coordinator() {
    // Why a test pool's mode depends on its server (`server_mode`): the same
    // tenant transaction (an ingest and a count, both on a distributed table
    // on a coordinator) in each mode. `SET LOCAL` reaches every row on any
    // server; `set_config` does on plain PostgreSQL, while on a Citus
    // coordinator the shards see no tenant and refuse the statement (AT001).
    let tdb = test_db();
    let coordinator = tdb.server().citus().is_some();
    for mode in [TenantContextMode::SetConfig, TenantContextMode::SetLocal] {
        let db = Database::connect(
            DatabaseConfig::new(tdb.app_url())
                .with_tenant_context_mode(mode)
                .with_max_connections(1),
        )
        .await
        .unwrap();
        let t = TenantId::new_random();
        let r = tx(&db, t, |tx| async move { insert_sbom(tx, 1).await }.scope_boxed()).await;
        if coordinator && mode == TenantContextMode::SetConfig {
            assert!(
                matches!(r, Err(RepoError::TenantNotSet)),
                "on a coordinator set_config must not reach the shards: {r:?}"
            );
            assert_eq!(
                db.pool_status().closed_broken,
                0,
                "a typed refusal keeps the connection"
            );
        } else {
            r.unwrap_or_else(|e| panic!("{mode:?}: {e}"));
            assert_eq!(count_sboms(&db, t).await, 1, "{mode:?}");
        }
    }
    assert_eq!(
        tdb.server().tenant_context_needs_set_local(),
        coordinator,
        "the test pools' mode follows the same question"
    );
}
