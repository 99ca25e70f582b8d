//! A rolling upgrade: the previous release's own binary (built from git by
//! `scripts/deb-previous.sh --binary`, once, and cached) runs next to this
//! release on one database, while this release's migration is applied under
//! it (docs/channels.md, "Upgrading from 0.2").

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use crate::support::procs::BrokerProcess;
use crate::support::*;

/// The previous release's `backchannel`, built from git if not cached.
fn previous_binary() -> PathBuf {
    let output = Command::new("scripts/deb-previous.sh")
        .arg("--binary")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run scripts/deb-previous.sh");
    assert!(
        output.status.success(),
        "scripts/deb-previous.sh --binary failed (a full clone is needed: it builds from history):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

#[tokio::test]
async fn the_previous_release_and_this_one_never_hold_two_default_streams() {
    let binary = tokio::task::spawn_blocking(previous_binary).await.unwrap();
    let db = TestDb::new().await;
    let old = BrokerProcess::spawn_binary(&binary, &db.url, &[]).await;
    let old_client = old.client();
    let mut held_by_old = old_client
        .stream(Some("castellum"))
        .await
        .expect("the previous release holds the default stream");

    // This release starts next to it, and migrates the schema under it.
    let new = instance(&db).await;
    let sql = db.client().await;
    let version: i32 = sql
        .query_one(
            "SELECT max(version) FROM backchannel.schema_migrations",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, backchannel::store::migrate::latest());
    for path in ["/v1/stream", "/v1/channels/default/stream"] {
        let r = new
            .send(
                new.http
                    .get(new.url(path))
                    .bearer_auth(LISTENER)
                    .header("X-Listener-Id", "another"),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (409, "listener_busy"),
            "{path}: two default streams"
        );
    }

    // A job submitted here reaches the previous release's stream; its answer
    // there wakes the waiter here.
    let waiting = new.spawn_submit(json!({"kind": "across.releases"}), 10.0);
    let job = held_by_old
        .next_job(LONG)
        .await
        .expect("the job on the previous release's stream");
    let id = job["id"].as_i64().unwrap();
    let r = old_client.answer(id, json!({"result": "from 0.2"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = waiting.await.unwrap();
    assert_eq!(
        (r.status, r.body["result"].as_str()),
        (200, Some("from 0.2"))
    );

    // What docs/channels.md tells operators to drain for: the previous
    // release's insert names the key index migration 007 replaced, so its
    // submits fail, and store nothing.
    let before = db.count_jobs().await;
    let r = old_client
        .submit(json!({"kind": "on.the.old.one"}), None)
        .await;
    assert!(r.status >= 500, "{} {:?}", r.status, r.body);
    assert_eq!(db.count_jobs().await, before);

    // The handover: the old stream ends, this release takes the default
    // stream, and the previous release is refused it.
    drop(held_by_old);
    let _held_here = new
        .stream_eventually(Some("castellum"), LONG)
        .await
        .expect("this release takes the default stream");
    let refused = old_client.stream(Some("other")).await.err();
    assert_eq!(refused.map(|r| r.status), Some(409));
}
