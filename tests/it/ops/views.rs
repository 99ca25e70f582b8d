//! The operator's views: `GET /v1/listener` (who holds the stream, seen from
//! every instance) and `GET /v1/stats` (jobs by state).

use serde_json::{Value, json};

use crate::support::*;

async fn listener_view(bc: &Instance) -> Value {
    let r = bc
        .send(bc.http.get(bc.url("/v1/listener")).bearer_auth(SUBMITTER))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

#[tokio::test]
async fn listener_view_follows_connect_takeover_and_disconnect() {
    let db = TestDb::new().await;
    let mut a_settings = settings(&db);
    a_settings.instance_id = Some("instance-a".into());
    let mut b_settings = settings(&db);
    b_settings.instance_id = Some("instance-b".into());
    let a = instance_with(a_settings).await;
    let b = instance_with(b_settings).await;

    assert_eq!(listener_view(&b).await["held"], false);
    let old = a.stream(Some("castellum")).await.expect("stream");
    for view in [listener_view(&a).await, listener_view(&b).await] {
        assert_eq!(view["held"], true);
        assert_eq!(view["listener_id"], "castellum");
        assert_eq!(view["instance"], "instance-a");
        assert!(view["since"].is_string());
    }
    let new = b.stream(Some("castellum")).await.expect("takeover");
    drop(old);
    let view = listener_view(&a).await;
    assert_eq!(view["held"], true);
    assert_eq!(view["instance"], "instance-b");
    drop(new);
    assert!(
        eventually(LONG, || async { listener_view(&a).await["held"] == false }).await,
        "disconnect is seen from the other instance"
    );
    let r = a
        .send(a.http.get(a.url("/v1/listener")).bearer_auth(LISTENER))
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn stats_count_jobs_by_state() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let first = bc.submit_job("s", json!(null)).await;
    bc.submit_job("s", json!(null)).await;
    let done = bc.submit_job("s", json!(null)).await;
    bc.answer(done, json!({"result": 0})).await;
    let r = bc
        .send(bc.http.get(bc.url("/v1/stats")).bearer_auth(SUBMITTER))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["jobs"],
        json!({"pending": 2, "delivered": 0, "done": 1, "failed": 0, "expired": 0, "cancelled": 0})
    );
    assert!(r.body["oldest_pending_age_seconds"].as_f64().unwrap() >= 0.0);
    bc.cancel(first).await;
    let r = bc
        .send(bc.http.get(bc.url("/v1/stats")).bearer_auth(SUBMITTER))
        .await;
    assert_eq!(r.body["jobs"]["cancelled"], 1);
}
