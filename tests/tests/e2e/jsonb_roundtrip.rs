//! JSONB round trip: documents stored by `attestor_app` come back equal (as
//! JSON values) — the real fixtures when present, generated documents always.

use attestor_e2e::in_tenant;
use attestor_formats::{fixtures, Limits, ParsedEnvelope, ParsedSbom};
use attestor_schema::schema::attestor::{dsse_envelopes, sbom_entries};
use attestor_testdb::shared;
use diesel::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

fn store_and_read_sbom(conn: &mut PgConnection, tenant: Uuid, raw: &[u8]) -> (Value, Value) {
    let sbom = ParsedSbom::parse(raw, &Limits::default()).unwrap();
    let back: Value = in_tenant(conn, tenant, |c| {
        diesel::insert_into(sbom_entries::table)
            .values((
                sbom_entries::tenant_id.eq(tenant),
                sbom_entries::format.eq(sbom.format.as_str()),
                sbom_entries::spec_version.eq(&sbom.spec_version),
                sbom_entries::sbom_digest.eq(sbom.digest.to_vec()),
                sbom_entries::component_count.eq(sbom.component_count as i32),
                sbom_entries::document.eq(&sbom.document),
            ))
            .returning(sbom_entries::document)
            .get_result(c)
    })
    .unwrap();
    (sbom.document, back)
}

fn store_and_read_statement(conn: &mut PgConnection, tenant: Uuid, raw: &[u8]) -> (Value, Value) {
    let env = ParsedEnvelope::parse(raw, &Limits::default()).unwrap();
    let statement: Value = serde_json::from_slice(&env.payload).unwrap();
    let back: Option<Value> = in_tenant(conn, tenant, |c| {
        diesel::insert_into(dsse_envelopes::table)
            .values((
                dsse_envelopes::tenant_id.eq(tenant),
                dsse_envelopes::payload_type.eq(&env.payload_type),
                dsse_envelopes::payload.eq(&env.payload),
                dsse_envelopes::payload_sha256.eq(env.payload_sha256.to_vec()),
                dsse_envelopes::envelope_sha256.eq(env.envelope_sha256.to_vec()),
                dsse_envelopes::signatures.eq(&env.raw["signatures"]),
                dsse_envelopes::envelope.eq(&env.raw),
                dsse_envelopes::statement.eq(Some(&statement)),
            ))
            .returning(dsse_envelopes::statement)
            .get_result(c)
    })
    .unwrap();
    (statement, back.expect("statement stored"))
}

#[test]
fn generated_documents_round_trip() {
    let db = shared().test_database().unwrap();
    let mut app = db.connect_app().unwrap();
    let tenant = Uuid::new_v4();
    let cdx = json!({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "components": [{"type": "library", "name": "zeta é ☃", "version": "1.0",
                        "components": [{"type": "file", "name": "nested"}]}],
        "metadata": {"z": [1, 2.5, -3, null, true], "a": {"deep": {"er": "\"quoted\""}}}
    });
    let (sent, back) = store_and_read_sbom(&mut app, tenant, &serde_json::to_vec(&cdx).unwrap());
    assert_eq!(sent, back);
    assert_eq!(back, cdx);

    let payload = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "a.txt", "digest": {"sha256": "a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"externalParameters": {"k": "v"}}, "n": 12345678901234i64}
    });
    use base64::Engine as _;
    let envelope = json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&payload).unwrap()),
        "signatures": [{"keyid": "k", "sig": "AAAA"}]
    });
    let (sent, back) = store_and_read_statement(&mut app, tenant, &serde_json::to_vec(&envelope).unwrap());
    assert_eq!(sent, back);
    assert_eq!(back, payload);
}

#[test]
fn real_fixture_documents_round_trip() {
    let Some(dir) = fixtures::fixtures_dir() else {
        println!(
            "fixtures not found at {}: fixture checks skipped (generated vectors cover the same behaviour)",
            fixtures::fixtures_path().display()
        );
        return;
    };
    let db = shared().test_database().unwrap();
    let mut app = db.connect_app().unwrap();
    let tenant = Uuid::new_v4();
    for sbom in [
        "sbom/cyclonedx-1.2-cern-lhc-vdm-editor.bom.json",
        "sbom/spdx-2.3-example11.sbom.spdx.json",
    ] {
        let raw = fixtures::read(&dir, sbom);
        let (sent, back) = store_and_read_sbom(&mut app, tenant, &raw);
        assert_eq!(sent, back, "{sbom}");
        assert_eq!(back, serde_json::from_slice::<Value>(&raw).unwrap(), "{sbom}");
    }
    let raw = fixtures::read(
        &dir,
        "dsse/slsa-github-generator-v1.2.2-workflow_dispatch.intoto.jsonl",
    );
    let (sent, back) = store_and_read_statement(&mut app, tenant, &raw);
    assert_eq!(sent, back);
    assert_eq!(back["predicateType"], "https://slsa.dev/provenance/v0.2");
}
