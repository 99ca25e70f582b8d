//! Clients that hang up, and instances that stop, while a state change waits
//! for the database: once its statement is sent, the change completes and is
//! announced (local wake, `backchannel_done`) whatever happens to the request.

use serde_json::json;

use crate::support::procs::BrokerProcess;
use crate::support::*;

#[derive(Clone, Copy, Debug)]
enum Change {
    Answer,
    Cancel,
}

impl Change {
    fn request(self, on: &Instance, id: i64) -> reqwest::RequestBuilder {
        match self {
            Change::Answer => on.answer_request(id, &json!({"result": "answered"})),
            Change::Cancel => on.cancel_request(id),
        }
    }

    fn state(self) -> &'static str {
        match self {
            Change::Answer => "done",
            Change::Cancel => "cancelled",
        }
    }
}

/// The request for `change` reaches instance A while another session holds
/// the job's row; its client hangs up; the row is released and the change
/// commits. A waiter on instance B (whose safety re-check is an hour away)
/// and a plain `LISTEN backchannel_done` session both learn of it.
async fn cut_off_while_the_row_is_locked(change: Change) {
    let db = TestDb::new().await;
    let a = instance_with(quiet_settings(&db)).await;
    let b = instance_with(quiet_settings(&db)).await;
    let id = a.submit_job("cut", json!(1)).await;
    let waiting = b.spawn_get(id, 30.0);
    assert!(b.waiting_eventually(1, LONG).await);
    let mut done = Notifications::listen(&db.url, "backchannel_done").await;

    let lock = db.lock_row(id).await;
    let request = a.spawn(change.request(&a, id));
    assert!(
        eventually(LONG, || async { db.lock_waits().await >= 1 }).await,
        "the {change:?} statement waits for the row"
    );
    request.abort();
    let _ = request.await;
    lock.batch_execute("ROLLBACK").await.unwrap();

    let response = tokio::time::timeout(LONG, waiting)
        .await
        .expect("the waiter on B is woken")
        .unwrap();
    assert_eq!(response.status(), 200);
    let job = response.body;
    assert_eq!(job["state"], change.state());
    assert!(
        done.received(&id.to_string(), LONG).await,
        "backchannel_done carries the id"
    );
}

#[tokio::test]
async fn an_answer_cut_off_mid_statement_still_wakes_everyone() {
    cut_off_while_the_row_is_locked(Change::Answer).await;
}

#[tokio::test]
async fn a_cancel_cut_off_mid_statement_still_wakes_everyone() {
    cut_off_while_the_row_is_locked(Change::Cancel).await;
}

/// SIGTERM reaches instance A while an answer it received waits for a row
/// lock: A drains, the answer commits, and its notification still leaves, so
/// that a waiter on B is woken at once (not at B's next safety re-check).
#[tokio::test]
async fn an_answer_committed_during_shutdown_is_announced() {
    let db = TestDb::new().await;
    let mut a = BrokerProcess::spawn(&db.url, &[]).await;
    let b = instance_with(quiet_settings(&db)).await;
    let id = b.submit_job("term", json!(1)).await;
    let waiting = b.spawn_get(id, 30.0);
    assert!(b.waiting_eventually(1, LONG).await);

    let lock = db.lock_row(id).await;
    let client = a.client();
    let answer = client.spawn(Change::Answer.request(&client, id));
    assert!(eventually(LONG, || async { db.lock_waits().await >= 1 }).await);
    a.signal("TERM");
    // A has begun its shutdown: it accepts no new connections.
    let port = a.base.rsplit(':').next().unwrap().to_owned();
    assert!(
        eventually(LONG, || async {
            tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .is_err()
        })
        .await,
        "A stopped accepting"
    );
    lock.batch_execute("ROLLBACK").await.unwrap();

    let response = tokio::time::timeout(LONG, waiting)
        .await
        .expect("the waiter on B is woken")
        .unwrap();
    assert_eq!(response.status(), 200);
    let job = response.body;
    assert_eq!(job["state"], "done");
    let answered = tokio::time::timeout(LONG, answer)
        .await
        .expect("A finished the request it had")
        .unwrap();
    assert_eq!(answered.status(), 200);
    assert!(a.exited(LONG).await, "A exits after draining");
}
