//! Schema conformance, read from the catalog: every table in `attestor` has
//! the four required columns, the composite primary key, unique constraints,
//! foreign keys and btree indexes that lead with `tenant_id`, and a working
//! `updated_at` trigger.

use attestor_e2e::{attestor_tables, in_tenant, names};
use attestor_schema::schema::attestor::{sbom_entries, trust_anchors};
use attestor_testdb::shared;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use uuid::Uuid;

type Ts = chrono::DateTime<chrono::Utc>;

#[derive(Debug, QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Bool)]
    not_null: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    default: Option<String>,
}

const EXPECTED_TABLES: [&str; 8] = [
    "audit_log",
    "dsse_envelopes",
    "rekor_entries",
    "rekor_submission_queue",
    "sbom_entries",
    "spines",
    "trust_anchors",
    "verdict_ledger",
];

#[test]
fn every_table_has_the_required_columns() {
    let db = shared().test_database().unwrap();
    let mut conn = db.connect_admin().unwrap();
    let tables = attestor_tables(&mut conn);
    assert_eq!(tables, EXPECTED_TABLES);
    for table in &tables {
        let cols: Vec<Column> = diesel::sql_query(
            "SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS data_type, \
             a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default \
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = ('attestor.' || quote_ident($1))::regclass AND a.attnum > 0 \
             AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind::<Text, _>(table)
        .load(&mut conn)
        .unwrap();
        let expected = [
            ("id", "uuid", Some("gen_random_uuid()")),
            ("tenant_id", "uuid", None),
            ("created_at", "timestamp with time zone", Some("now()")),
            ("updated_at", "timestamp with time zone", Some("now()")),
        ];
        for (i, (name, ty, default)) in expected.iter().enumerate() {
            let c = &cols[i];
            assert_eq!(
                (c.name.as_str(), c.data_type.as_str()),
                (*name, *ty),
                "{table} column {i}"
            );
            assert!(c.not_null, "{table}.{name} must be NOT NULL");
            assert_eq!(c.default.as_deref(), *default, "{table}.{name} default");
        }
    }
}

/// Constraint or index column lists per table, as text arrays joined by ','.
fn key_columns(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    names(conn, sql)
}

#[test]
fn keys_and_indexes_lead_with_tenant_id() {
    let db = shared().test_database().unwrap();
    let mut conn = db.connect_admin().unwrap();
    let cols = |kind: &str, which: &str| {
        format!(
            "SELECT c.conrelid::regclass::text || ':' || c.conname || ':' || \
             (SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(c.{which}) WITH ORDINALITY k(attnum, ord) \
              JOIN pg_attribute a ON a.attrelid = c.{rel} AND a.attnum = k.attnum) AS name \
             FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
             WHERE n.nspname = 'attestor' AND c.contype = '{kind}'",
            rel = if which == "confkey" { "confrelid" } else { "conrelid" }
        )
    };
    let pks = key_columns(&mut conn, &cols("p", "conkey"));
    assert_eq!(pks.len(), EXPECTED_TABLES.len());
    for pk in &pks {
        assert!(
            pk.ends_with(":tenant_id,id"),
            "primary key must be (tenant_id, id): {pk}"
        );
    }
    let uniques = key_columns(&mut conn, &cols("u", "conkey"));
    assert!(!uniques.is_empty());
    for u in &uniques {
        assert!(
            u.split(':').nth(2).unwrap().starts_with("tenant_id,"),
            "unique must lead with tenant_id: {u}"
        );
    }
    let fks = key_columns(&mut conn, &cols("f", "conkey"));
    let fk_targets = key_columns(&mut conn, &cols("f", "confkey"));
    assert!(fks.len() >= 4, "expected composite FKs, got {fks:?}");
    for fk in fks.iter().chain(&fk_targets) {
        assert!(
            fk.split(':').nth(2).unwrap().starts_with("tenant_id,"),
            "FK must be composite on tenant_id: {fk}"
        );
    }
    // Every btree index (unique or not) leads with tenant_id.
    let indexes = names(
        &mut conn,
        "SELECT i.indexrelid::regclass::text || ':' || a.attname AS name \
         FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0] \
         WHERE n.nspname = 'attestor' AND am.amname = 'btree'",
    );
    assert!(indexes.len() >= 16);
    for idx in &indexes {
        assert!(
            idx.ends_with(":tenant_id"),
            "index must lead with tenant_id: {idx}"
        );
    }
}

#[test]
fn every_table_has_an_updated_at_trigger() {
    let db = shared().test_database().unwrap();
    let mut conn = db.connect_admin().unwrap();
    let with_trigger = names(
        &mut conn,
        "SELECT c.relname::text AS name FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'attestor' AND NOT t.tgisinternal \
         AND t.tgfoid = 'attestor_app.set_updated_at()'::regprocedure \
         AND (t.tgtype & 2) = 2 AND (t.tgtype & 1) = 1 AND (t.tgtype & 16) = 16",
    );
    assert_eq!(
        with_trigger, EXPECTED_TABLES,
        "BEFORE UPDATE FOR EACH ROW set_updated_at on every table"
    );
}

#[test]
fn updated_at_moves_on_update_as_the_app_role() {
    let db = shared().test_database().unwrap();
    let mut app = db.connect_app().unwrap();
    let tenant = Uuid::new_v4();
    let digest = vec![7u8; 32];
    let id: Uuid = in_tenant(&mut app, tenant, |c| {
        diesel::insert_into(sbom_entries::table)
            .values((
                sbom_entries::tenant_id.eq(tenant),
                sbom_entries::format.eq("spdx"),
                sbom_entries::spec_version.eq("SPDX-2.3"),
                sbom_entries::sbom_digest.eq(&digest),
                sbom_entries::component_count.eq(0),
                sbom_entries::document.eq(serde_json::json!({"spdxVersion": "SPDX-2.3"})),
            ))
            .returning(sbom_entries::id)
            .get_result(c)
    })
    .unwrap();
    let (created, updated) = in_tenant(&mut app, tenant, |c| {
        diesel::update(sbom_entries::table.filter(sbom_entries::id.eq(id)))
            .set(sbom_entries::component_count.eq(1))
            .execute(c)?;
        sbom_entries::table
            .filter(sbom_entries::id.eq(id))
            .select((sbom_entries::created_at, sbom_entries::updated_at))
            .get_result::<(Ts, Ts)>(c)
    })
    .unwrap();
    assert!(
        updated > created,
        "updated_at {updated:?} must advance past created_at {created:?}"
    );

    // Same on a second table, with a different shape.
    let anchor: Uuid = in_tenant(&mut app, tenant, |c| {
        diesel::insert_into(trust_anchors::table)
            .values((
                trust_anchors::tenant_id.eq(tenant),
                trust_anchors::key_id.eq("k1"),
                trust_anchors::algorithm.eq("ed25519"),
                trust_anchors::public_key.eq(vec![1u8; 44]),
                trust_anchors::valid_from.eq(diesel::dsl::now),
            ))
            .returning(trust_anchors::id)
            .get_result(c)
    })
    .unwrap();
    let (created, updated) = in_tenant(&mut app, tenant, |c| {
        diesel::update(trust_anchors::table.filter(trust_anchors::id.eq(anchor)))
            .set(trust_anchors::revoked_at.eq(diesel::dsl::now))
            .execute(c)?;
        trust_anchors::table
            .filter(trust_anchors::id.eq(anchor))
            .select((trust_anchors::created_at, trust_anchors::updated_at))
            .get_result::<(Ts, Ts)>(c)
    })
    .unwrap();
    assert!(updated > created);
}
