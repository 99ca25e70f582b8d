//! The statements the broker sends. The pooled statements' declared
//! parameter types (used when they go out unnamed,
//! `BACKCHANNEL_STATEMENTS=unnamed`) are the types PostgreSQL infers when it
//! prepares them (used when they are prepared, the default): the two modes
//! send the same thing. And claiming a job updates no index.

use backchannel::store::sql::POOLED;

use crate::support::*;

#[tokio::test]
async fn declared_parameter_types_are_what_postgres_infers() {
    let db = TestDb::new().await;
    let _migrated = instance(&db).await;
    let client = db.client().await;
    for (name, sql) in POOLED {
        let statement = client
            .prepare(sql.text)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(statement.params(), sql.types, "{name}");
    }
}

/// Claiming changes state, attempts and stream_id, none of them in an index:
/// PostgreSQL can update the row heap-only, without an entry in any index
/// (the stream claims every job once; an index on `state` would undo this).
#[tokio::test]
async fn claiming_a_job_is_a_heap_only_update() {
    let db = TestDb::new().await;
    let _bc = instance(&db).await;
    let mut sql = db.client().await;
    let tx = sql.transaction().await.unwrap();
    tx.query_one(
        "SELECT backchannel.submit('t.hot', '{}', interval '1 minute')",
        &[],
    )
    .await
    .unwrap();
    let claimed = tx
        .query(
            backchannel::store::sql::stream::CLAIM_JOBS,
            &[&7_i64, &32_i64, &1_i32],
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let row = tx
        .query_one(
            "SELECT pg_stat_get_xact_tuples_updated('backchannel.jobs'::regclass),
                    pg_stat_get_xact_tuples_hot_updated('backchannel.jobs'::regclass)",
            &[],
        )
        .await
        .unwrap();
    let (updated, heap_only): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((updated, heap_only), (1, 1), "the claim was not heap-only");
}
