//! The audit trigger names the logical table and the writing transaction,
//! on plain PostgreSQL and on a Citus coordinator (where it fires on the
//! shards): connected as `attestor_app`, the tenant set with `SET LOCAL`
//! (which, with `citus.propagate_set_commands = 'local'`, also reaches the
//! shards; on plain PostgreSQL that setting is an inert placeholder).

use attestor_testdb::shared;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use uuid::Uuid;

#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = BigInt)]
    txid: i64,
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Nullable<Text>)]
    v: Option<String>,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The id the writing transaction is known by: its distributed transaction
/// number where Citus runs one, `txid_current()` otherwise.
fn own_transaction_id(c: &mut PgConnection) -> i64 {
    let citus = diesel::sql_query("SELECT current_setting('citus.version', true) AS v")
        .get_result::<Setting>(c)
        .unwrap()
        .v
        .is_some();
    let sql = if citus {
        "SELECT coalesce(nullif((get_current_transaction_id()).transaction_number, 0), txid_current()) AS id"
    } else {
        "SELECT txid_current() AS id"
    };
    diesel::sql_query(sql).get_result::<Id>(c).unwrap().id
}

/// Writes a trust anchor and an SBOM entry for `tenant` in one transaction;
/// returns the audit rows of that tenant and the transaction's id.
fn write_two_tables(app: &mut PgConnection, tenant: Uuid, key: &str) -> (Vec<Row>, i64) {
    app.transaction(|c| {
        diesel::sql_query(format!("SET LOCAL app.tenant_id = '{tenant}'")).execute(c)?;
        diesel::sql_query("SET LOCAL app.actor = 'auditor'").execute(c)?;
        diesel::sql_query(
            "INSERT INTO attestor.trust_anchors (tenant_id, key_id, algorithm, public_key, valid_from) \
             VALUES ($1, $2, 'ed25519', '\\x01', now())",
        )
        .bind::<diesel::sql_types::Uuid, _>(tenant)
        .bind::<Text, _>(key)
        .execute(c)?;
        diesel::sql_query(
            "INSERT INTO attestor.sbom_entries (tenant_id, format, spec_version, sbom_digest, component_count, document) \
             VALUES ($1, 'cyclonedx', '1.5', sha256(convert_to($2, 'UTF8')), 0, '{}')",
        )
        .bind::<diesel::sql_types::Uuid, _>(tenant)
        .bind::<Text, _>(key)
        .execute(c)?;
        let id = own_transaction_id(c);
        let rows = diesel::sql_query(
            "SELECT table_name, txid FROM attestor.audit_log WHERE tenant_id = $1 ORDER BY table_name",
        )
        .bind::<diesel::sql_types::Uuid, _>(tenant)
        .load::<Row>(c)?;
        Ok::<_, diesel::result::Error>((rows, id))
    })
    .unwrap()
}

#[test]
fn audit_rows_name_the_logical_table_and_the_writing_transaction() {
    let tdb = shared().test_database().unwrap();
    let mut app = tdb.connect_app().unwrap();
    diesel::sql_query("SET citus.propagate_set_commands = 'local'")
        .execute(&mut app)
        .unwrap();
    let tenant = Uuid::new_v4();
    let (first, first_tx) = write_two_tables(&mut app, tenant, "k1");
    assert_eq!(
        first.iter().map(|r| r.table_name.as_str()).collect::<Vec<_>>(),
        ["sbom_entries", "trust_anchors"],
        "the logical tables, never a shard: {first:?}"
    );
    assert!(
        first.iter().all(|r| r.txid == first_tx),
        "every row carries the writing transaction's id {first_tx}: {first:?}"
    );
    let (both, second_tx) = write_two_tables(&mut app, tenant, "k2");
    assert_ne!(first_tx, second_tx, "two transactions, two ids");
    assert_eq!(both.iter().filter(|r| r.txid == second_tx).count(), 2, "{both:?}");
}
