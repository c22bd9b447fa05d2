//! Every tenant transaction runs inside a `tenant_transaction` tracing span
//! that carries the tenant id (and the actor); `Database::fetch`'s span also
//! says how many round trips it took.

mod common;

use std::sync::{Arc, Mutex};

use attestor_repo::scoped_futures::ScopedFutureExt as _;
use attestor_repo::{RepoError, TenantContext, TenantId};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// (span name, recorded fields).
type Recorded = Vec<(String, Vec<(String, String)>)>;

#[derive(Default, Clone)]
struct Spans(Arc<Mutex<Recorded>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Subscriber for Spans {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        let mut v = self.0.lock().unwrap();
        v.push((attrs.metadata().name().to_owned(), fields));
        Id::from_u64(v.len() as u64)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut v = self.0.lock().unwrap();
        if let Some((_, fields)) = v.get_mut(id.into_u64() as usize - 1) {
            values.record(&mut Fields(fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn a_span_per_tenant_transaction_names_the_tenant() {
    let tdb = common::test_db();
    let spans = Spans::default();
    let t = TenantId::new_random();
    tracing::subscriber::with_default(spans.clone(), || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let db = common::app(&tdb, 1).await;
                db.transaction(TenantContext::new(t).with_actor("carol"), |_tx| {
                    async move { Ok::<(), RepoError>(()) }.scope_boxed()
                })
                .await
                .unwrap();
            })
    });
    let spans = spans.0.lock().unwrap();
    let (_, fields) = spans
        .iter()
        .find(|(name, _)| name == "tenant_transaction")
        .expect("a tenant_transaction span");
    assert!(
        fields.contains(&("tenant".to_owned(), t.to_string())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("actor".to_owned(), "carol".to_owned())),
        "{fields:?}"
    );
}

#[test]
fn fetch_takes_one_round_trip_once_its_statement_is_prepared() {
    use attestor_schema::schema::attestor::sbom_entries as s;
    use diesel::{ExpressionMethods, QueryDsl};
    let tdb = common::test_db();
    let spans = Spans::default();
    let (a, b) = (TenantId::new_random(), TenantId::new_random());
    tracing::subscriber::with_default(spans.clone(), || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                // One connection: every fetch below runs on the same one.
                let db = common::app(&tdb, 1).await;
                for (t, n) in [(a, 3), (b, 2)] {
                    for i in 0..n {
                        let doc = common::gen::cyclonedx(i + 10 * usize::from(t == b));
                        db.transaction(TenantContext::new(t), |tx| {
                            async move { attestor_repo::sbom_entries::ingest(tx, &doc).await }.scope_boxed()
                        })
                        .await
                        .unwrap();
                    }
                }
                for (t, n) in [(a, 3), (b, 2), (a, 3), (b, 2)] {
                    // No tenant filter: RLS alone scopes the rows, also when
                    // COMMIT was pipelined behind the query.
                    let rows: Vec<uuid::Uuid> = db
                        .fetch(
                            TenantContext::new(t),
                            s::table.order(s::created_at.desc()).select(s::tenant_id),
                        )
                        .await
                        .unwrap();
                    assert_eq!(rows.len(), n);
                    assert!(rows.iter().all(|r| *r == t.as_uuid()));
                }
                let _: Vec<uuid::Uuid> = db
                    .fetch(
                        TenantContext::new(a),
                        s::table.filter(s::component_count.ge(0)).select(s::id),
                    )
                    .await
                    .unwrap();
                let probe = db.probe_idle().await.unwrap();
                assert!(probe.is_clean(), "{probe:?}");
            })
    });
    let spans = spans.0.lock().unwrap();
    let trips: Vec<&str> = spans
        .iter()
        .filter(|(name, _)| name == "tenant_transaction")
        .filter_map(|(_, f)| {
            f.iter()
                .find(|(k, _)| k == "round_trips")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    // First run of the ordered read prepares it (2), the next three reuse it
    // (1); a different query is prepared afresh (2).
    assert_eq!(trips, ["2", "1", "1", "1", "2"]);
}
