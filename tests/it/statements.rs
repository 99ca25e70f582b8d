//! The pooled statements' declared parameter types (used when they go out
//! unnamed, `BACKCHANNEL_STATEMENTS=unnamed`) are the types PostgreSQL infers
//! when it prepares them (used when they are prepared, the default): the two
//! modes send the same thing.

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
