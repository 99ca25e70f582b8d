//! The agent forwards each job to the handler (the internal endpoint) and
//! posts its answer back: results, failures, the shared secret, a handler
//! that is not there, and `--echo`. More of the handler's troubles are in
//! `handler.rs`.

use serde_json::json;

use crate::support::agent::*;
use crate::support::*;

#[tokio::test]
async fn agent_round_trip_through_the_handler() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut handler = Handler::new("castellum").await;
    let _agent = RunningAgent::start(agent_args(&bc.base, Some(&handler.url)));

    let r = bc
        .submit(
            json!({"kind": "invitation.lookup", "payload": {"token": "abc"}}),
            Some(30.0),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "done");
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(
        r.body["result"],
        json!({"handled": {"token": "abc"}, "by": "castellum", "job": id, "attempt": 1})
    );
    let call = handler
        .next_call(SECOND)
        .await
        .expect("the handler was called");
    assert_eq!(call.job_id, id);
    assert_eq!(call.kind, "invitation.lookup");
    assert_eq!(call.payload, json!({"token": "abc"}));
    assert_eq!(call.deadline, r.body["deadline"].as_str().unwrap());

    // A handler answering 500 fails the job, with the status and body.
    let r = bc
        .submit(json!({"kind": "fail", "payload": [1, 2]}), Some(30.0))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "failed");
    assert_eq!(
        r.body["error"],
        json!({"status": 500, "body": {"oops": true}})
    );
}

#[tokio::test]
async fn the_shared_secret_reaches_the_handler_and_only_when_configured() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut handler = Handler::new("castellum").await;
    let secret_file = std::env::temp_dir().join(format!("bc-fwd-{}", uuid::Uuid::new_v4()));
    std::fs::write(&secret_file, "castellum-shared-secret-1\n").unwrap();
    let mut args = agent_args(&bc.base, Some(&handler.url));
    args.forward_header_file = Some(secret_file.clone());
    let mut agent = RunningAgent::start(args);
    let r = bc
        .submit(json!({"kind": "k", "payload": 1}), Some(30.0))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let call = handler.next_call(SECOND).await.expect("called");
    assert_eq!(call.secret.as_deref(), Some("castellum-shared-secret-1"));
    agent.stop().await;
    std::fs::remove_file(secret_file).unwrap();

    let _agent = RunningAgent::start(agent_args(&bc.base, Some(&handler.url)));
    let r = bc
        .submit(json!({"kind": "k", "payload": 2}), Some(30.0))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let call = handler.next_call(SECOND).await.expect("called");
    assert_eq!(call.secret, None, "no secret unless configured");
}

#[tokio::test]
async fn an_unreachable_handler_fails_the_job() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let nowhere = unreachable_url().await;
    let agent = RunningAgent::start(agent_args(&bc.base, Some(&nowhere)));

    // The agent asks again until shortly before the deadline, then fails the
    // job (before it expires) with a code that says why.
    let r = bc
        .submit(
            json!({"kind": "lookup", "payload": 1, "timeout": 3}),
            Some(30.0),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "failed");
    let message = r.body["error"]["message"].as_str().expect("a message");
    assert!(message.contains("unreachable"), "{message}");
    assert!(
        !message.contains("127.0.0.1"),
        "the handler's address stays inside: {message}"
    );
    assert_eq!(r.body["error"]["code"], "handler_unreachable");
    assert!(
        agent.status.borrow().handler_retries >= 1,
        "asked more than once"
    );
}

#[tokio::test]
async fn echo_answers_with_the_payload() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let _agent = RunningAgent::start(agent_args(&bc.base, None));
    let payload = json!({"any": ["json", 1, null]});
    let r = bc
        .submit(json!({"kind": "echo", "payload": payload}), Some(30.0))
        .await;
    assert_eq!(r.body["state"], "done", "{:?}", r.body);
    assert_eq!(r.body["result"], payload);
}
