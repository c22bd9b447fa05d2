//! Every tenant transaction runs inside a `tenant_transaction` tracing span
//! that carries the tenant id (and the actor).

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
    fn record(&self, _: &Id, _: &Record<'_>) {}
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
