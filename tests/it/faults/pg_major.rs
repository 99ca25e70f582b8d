//! A cluster of a given PostgreSQL major with settings of the test's own
//! (`TempCluster::start_major`, binaries from scripts/pg-versions.sh): what
//! fault tests use for a setting only a newer major has, such as PostgreSQL
//! 17's `max_notify_queue_pages` for a notification queue that fills up.

use crate::support::procs::TempCluster;
use crate::support::*;

#[tokio::test]
async fn a_cluster_of_the_asked_major_runs_with_the_asked_settings() {
    let cluster = TempCluster::start_major(17, &["max_notify_queue_pages=64"]);
    let client = connect(&cluster.url("postgres")).await;
    let version: i32 = show(&client, "server_version_num").await.parse().unwrap();
    assert_eq!(version / 10000, 17, "server_version_num {version}");
    assert_eq!(show(&client, "max_notify_queue_pages").await, "64");
    // TempCluster's own settings hold as well.
    assert_eq!(show(&client, "max_connections").await, "200");
}

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap()
        .get(0)
}
