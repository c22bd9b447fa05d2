//! Model-based property test: random sequences of enqueue / claim /
//! heartbeat / complete / fail / release / lease expiry / requeue / "time
//! passes" run against PostgreSQL and against a small in-memory model.
//! Checked after every step: stale tokens are always refused, claims hand
//! out only eligible jobs, never more than asked; at the end of every case
//! the database equals the model (no job lost, none completed twice).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use attestor_queue::testing::{fake_log_index, fake_rekor_entry, fake_verified};
use attestor_queue::worker::complete_in_tenant;
use attestor_queue::*;
use attestor_repo::{TenantContext, TenantId};
use common::*;
use proptest::prelude::*;
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        tenant: usize,
        key: u8,
        max_attempts: i32,
    },
    Claim {
        n: u32,
    },
    Heartbeat {
        lease: usize,
    },
    Complete {
        lease: usize,
    },
    Fail {
        lease: usize,
        permanent: bool,
        later: bool,
    },
    Release {
        lease: usize,
    },
    Expire {
        job: usize,
    },
    MakeDue,
    Requeue {
        job: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 0..6u8, 1..4i32).prop_map(|(tenant, key, max_attempts)| Op::Enqueue { tenant, key, max_attempts }),
        3 => (1..5u32).prop_map(|n| Op::Claim { n }),
        2 => any::<usize>().prop_map(|lease| Op::Heartbeat { lease }),
        2 => any::<usize>().prop_map(|lease| Op::Complete { lease }),
        2 => (any::<usize>(), any::<bool>(), any::<bool>()).prop_map(|(lease, permanent, later)| Op::Fail { lease, permanent, later }),
        1 => any::<usize>().prop_map(|lease| Op::Release { lease }),
        3 => any::<usize>().prop_map(|job| Op::Expire { job }),
        1 => Just(Op::MakeDue),
        1 => any::<usize>().prop_map(|job| Op::Requeue { job }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Queued { due: bool },
    Running { token: Uuid, expired: bool },
    Succeeded,
    Dead,
}

#[derive(Debug, Clone)]
struct MJob {
    id: Uuid,
    tenant: TenantId,
    st: St,
    attempts: i32,
    max: i32,
}

#[derive(Default)]
struct Model {
    jobs: Vec<MJob>,
    keys: HashMap<(usize, u8), usize>,
    leases: Vec<(usize, Lease)>,
}

impl Model {
    fn current(&self, lease: &Lease) -> Option<usize> {
        self.jobs.iter().position(|j| {
            j.id == lease.job_id && matches!(j.st, St::Running { token, .. } if token == lease.token)
        })
    }
}

fn lost<T: std::fmt::Debug>(r: Result<T, QueueError>) -> bool {
    matches!(r, Err(QueueError::LeaseLost { .. }))
}

async fn run_case(ops: Vec<Op>) {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let mut w = connect(&tdb.worker_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;
    let tenants: Vec<TenantId> = (0..3).map(|_| tenant()).collect();
    let mut m = Model::default();
    let lease_for = Duration::from_secs(60);

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Enqueue {
                tenant: t,
                key: k,
                max_attempts,
            } => {
                let label = format!("env-{step}");
                let bundle = key(&format!("key-{k}"));
                let got = db
                    .transaction(TenantContext::new(tenants[t]), |tx| {
                        async move {
                            let env = insert_envelope(tx, &label).await?;
                            enqueue_tx(tx, &NewJob::new(env, bundle).max_attempts(max_attempts)).await
                        }
                        .scope_boxed()
                    })
                    .await
                    .unwrap();
                match m.keys.get(&(t, k)) {
                    Some(&i) => assert_eq!(
                        got,
                        Enqueued {
                            job_id: m.jobs[i].id,
                            created: false
                        }
                    ),
                    None => {
                        assert!(got.created);
                        m.keys.insert((t, k), m.jobs.len());
                        m.jobs.push(MJob {
                            id: got.job_id,
                            tenant: tenants[t],
                            st: St::Queued { due: true },
                            attempts: 0,
                            max: max_attempts,
                        });
                    }
                }
            }
            Op::Claim { n } => {
                let eligible: Vec<usize> = (0..m.jobs.len())
                    .filter(|&i| {
                        let j = &m.jobs[i];
                        matches!(j.st, St::Queued { due: true })
                            || matches!(j.st, St::Running { expired: true, .. }) && j.attempts < j.max
                    })
                    .collect();
                let exhausted = m
                    .jobs
                    .iter()
                    .any(|j| matches!(j.st, St::Running { expired: true, .. }) && j.attempts >= j.max);
                let options = ClaimOptions::new("model", n, lease_for)
                    .per_tenant(attestor_testdb::shared().citus().is_some());
                let got = claim(&mut w, &options).await.unwrap();
                assert!(got.len() <= n as usize, "claim returned more than asked");
                if !eligible.is_empty() && !exhausted {
                    assert!(!got.is_empty(), "claim returned nothing although jobs were due");
                }
                for c in &got {
                    let i = m
                        .jobs
                        .iter()
                        .position(|j| j.id == c.job_id())
                        .expect("unknown job");
                    assert!(
                        eligible.contains(&i),
                        "claimed an ineligible job: {:?}",
                        m.jobs[i]
                    );
                    let j = &mut m.jobs[i];
                    assert_eq!(c.reclaimed, matches!(j.st, St::Running { .. }));
                    j.attempts += 1;
                    assert_eq!(c.attempt, j.attempts);
                    j.st = St::Running {
                        token: c.lease.token,
                        expired: false,
                    };
                    m.leases.push((i, c.lease));
                }
                // Expired leases on their last attempt may have been dead-lettered.
                for j in m.jobs.iter_mut() {
                    if matches!(j.st, St::Running { expired: true, .. }) && j.attempts >= j.max {
                        let s = job_state(&mut admin, j.id).await;
                        if s.status == "dead" {
                            j.st = St::Dead;
                        }
                    }
                }
            }
            Op::Heartbeat { lease } if !m.leases.is_empty() => {
                let (_, l) = m.leases[lease % m.leases.len()];
                let r = heartbeat(&mut w, &l, lease_for).await;
                match m.current(&l) {
                    Some(i) => {
                        r.unwrap();
                        m.jobs[i].st = St::Running {
                            token: l.token,
                            expired: false,
                        };
                    }
                    None => assert!(lost(r), "stale heartbeat accepted"),
                }
            }
            Op::Complete { lease } if !m.leases.is_empty() => {
                let (_, l) = m.leases[lease % m.leases.len()];
                let value = fake_rekor_entry(l.job_id, fake_log_index(l.job_id));
                let entry = fake_verified(&value);
                let r = complete_in_tenant(&db, "model", &l, &entry, &value).await;
                match m.current(&l) {
                    Some(i) => {
                        r.unwrap();
                        m.jobs[i].st = St::Succeeded;
                    }
                    None => assert!(lost(r), "stale or second completion accepted"),
                }
            }
            Op::Fail {
                lease,
                permanent,
                later,
            } if !m.leases.is_empty() => {
                let (_, l) = m.leases[lease % m.leases.len()];
                let failure = if permanent {
                    Failure::Permanent
                } else {
                    Failure::Retry {
                        delay: if later {
                            Duration::from_secs(3600)
                        } else {
                            Duration::ZERO
                        },
                    }
                };
                let r = fail(&mut w, &l, "model failure", failure).await;
                match m.current(&l) {
                    Some(i) => {
                        let j = &mut m.jobs[i];
                        let dead = permanent || j.attempts >= j.max;
                        let out = r.unwrap();
                        if dead {
                            assert_eq!(out, FailOutcome::Dead { attempts: j.attempts });
                            j.st = St::Dead;
                        } else {
                            assert!(matches!(out, FailOutcome::Retrying { .. }));
                            j.st = St::Queued { due: !later };
                        }
                    }
                    None => assert!(lost(r), "stale fail accepted"),
                }
            }
            Op::Release { lease } if !m.leases.is_empty() => {
                let (_, l) = m.leases[lease % m.leases.len()];
                let r = release(&mut w, &l).await;
                match m.current(&l) {
                    Some(i) => {
                        r.unwrap();
                        m.jobs[i].st = St::Queued { due: true };
                        m.jobs[i].attempts -= 1;
                    }
                    None => assert!(lost(r), "stale release accepted"),
                }
            }
            Op::Expire { job } if !m.jobs.is_empty() => {
                let i = job % m.jobs.len();
                if let St::Running { token, .. } = m.jobs[i].st {
                    diesel_async::RunQueryDsl::execute(
                        diesel::sql_query(
                            "UPDATE attestor.rekor_submission_queue
                                SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
                        )
                        .bind::<diesel::sql_types::Uuid, _>(m.jobs[i].id),
                        &mut admin,
                    )
                    .await
                    .unwrap();
                    m.jobs[i].st = St::Running { token, expired: true };
                }
            }
            Op::MakeDue => {
                make_due(&mut admin).await;
                for j in m.jobs.iter_mut() {
                    if let St::Queued { .. } = j.st {
                        j.st = St::Queued { due: true };
                    }
                }
            }
            Op::Requeue { job } if !m.jobs.is_empty() => {
                let i = job % m.jobs.len();
                let j = &mut m.jobs[i];
                let r = requeue_dead(&mut w, j.tenant.as_uuid(), j.id).await;
                if j.st == St::Dead {
                    r.unwrap();
                    j.st = St::Queued { due: true };
                    j.attempts = 0;
                } else {
                    assert!(matches!(r, Err(QueueError::WrongState { .. })), "{r:?}");
                }
            }
            _ => {}
        }
    }

    // The database equals the model: nothing lost, nothing completed twice.
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM attestor.rekor_submission_queue"
        )
        .await,
        m.jobs.len() as i64
    );
    let mut succeeded = 0;
    for j in &m.jobs {
        let s = job_state(&mut admin, j.id).await;
        let (status, token) = match j.st {
            St::Queued { .. } => ("queued", None),
            St::Running { token, .. } => ("running", Some(token)),
            St::Succeeded => ("succeeded", None),
            St::Dead => ("dead", None),
        };
        assert_eq!(
            (s.status.as_str(), s.attempt_token, s.attempts),
            (status, token, j.attempts),
            "{j:?}"
        );
        assert_eq!(s.rekor_entry_id.is_some(), j.st == St::Succeeded);
        succeeded += i64::from(j.st == St::Succeeded);
    }
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        succeeded
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn queue_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_case(ops));
    }
}
