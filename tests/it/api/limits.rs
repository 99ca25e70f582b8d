//! Limits exercised with real sockets: slow clients, idle connections, and
//! one more waiter than the instance allows.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Read until the server closes the connection; returns what it sent, or
/// `None` if it was still open after `timeout`.
async fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let outcome = tokio::time::timeout(timeout, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    outcome
        .ok()
        .map(|_| String::from_utf8_lossy(&received).into_owned())
}

async fn limited_instance(db: &TestDb) -> Instance {
    let mut settings = settings(db);
    settings.header_timeout = Duration::from_secs_f64(0.5);
    settings.body_timeout = Duration::from_secs_f64(0.5);
    settings.max_waiting = 3;
    instance_with(settings).await
}

#[tokio::test]
async fn a_client_sending_headers_too_slowly_is_cut_off() {
    let db = TestDb::new().await;
    let bc = limited_instance(&db).await;
    let mut stream = TcpStream::connect(bc.running().addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // ...and never the blank line that ends the headers.
    let sent = read_until_closed(&mut stream, LONG).await;
    let sent = sent.expect("the server closes a connection whose headers do not arrive");
    assert!(!sent.contains("200 OK"), "no request was served: {sent:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let db = TestDb::new().await;
    let bc = limited_instance(&db).await;
    let mut stream = TcpStream::connect(bc.running().addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let sent = read_until_closed(&mut stream, LONG)
        .await
        .expect("closed after idling");
    assert!(
        sent.starts_with("HTTP/1.1 200"),
        "the request itself was served: {sent:?}"
    );
}

#[tokio::test]
async fn a_body_sent_too_slowly_gets_408_and_stores_nothing() {
    let db = TestDb::new().await;
    let bc = limited_instance(&db).await;
    let mut stream = TcpStream::connect(bc.running().addr).await.unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SUBMITTER}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"kind\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let sent = read_until_closed(&mut stream, LONG)
        .await
        .expect("answered and closed");
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent:?}");
    assert!(sent.contains("request_timeout"));
    assert_eq!(db.count_jobs().await, 0);
}

#[tokio::test]
async fn one_more_waiter_than_the_limit_gets_503_and_stores_nothing() {
    let db = TestDb::new().await;
    let bc = limited_instance(&db).await;
    let ids: Vec<i64> =
        futures_util::future::join_all((0..3).map(|i| bc.submit_job("w", json!(i)))).await;
    let waiters: Vec<_> = ids.iter().map(|&id| bc.spawn_get(id, 30.0)).collect();
    let broker = bc.running().broker.clone();
    assert!(
        eventually(LONG, || {
            let b = broker.clone();
            async move { b.waiting() == 3 }
        })
        .await
    );

    let r = bc.submit(json!({"kind": "fourth"}), Some(10.0)).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.code(), "too_many_waiting");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(
        db.count_jobs().await,
        3,
        "the refused submit stored nothing"
    );
    let r = bc.get(ids[0], Some(10.0)).await;
    assert_eq!(r.status, 503);
    // Not waiting is always allowed.
    assert_eq!(bc.get(ids[0], None).await.status, 202);
    assert_eq!(bc.submit(json!({"kind": "nowait"}), None).await.status, 202);

    // When a waiter leaves, its place is free again.
    assert_eq!(bc.cancel(ids[0]).await.status, 200);
    assert!(
        eventually(LONG, || {
            let b = broker.clone();
            async move { b.waiting() == 2 }
        })
        .await
    );
    let r = bc.get(ids[1], Some(0.2)).await;
    assert_eq!(r.status, 202);
    for id in &ids[1..] {
        bc.cancel(*id).await;
    }
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap().status(), 200);
    }
}

/// `503 too_many_waiting` only for requests that would wait: with every place
/// taken, a waiting GET of an ended job and a repeated key of an ended job
/// are answered at once; a new job that would wait is refused, unstored.
#[tokio::test]
async fn only_requests_that_would_wait_are_refused() {
    let db = TestDb::new().await;
    let mut settings = settings(&db);
    settings.max_waiting = 1;
    let bc = instance_with(settings).await;
    let open = bc.submit_job("open", json!(1)).await;
    let waiter = bc.spawn_get(open, 30.0);
    let broker = bc.running().broker.clone();
    assert!(
        eventually(LONG, || {
            let b = broker.clone();
            async move { b.waiting() == 1 }
        })
        .await
    );
    let ended = bc
        .submit(json!({"kind": "k", "idempotency_key": "ended"}), None)
        .await;
    let ended_id = ended.body["id"].as_i64().unwrap();
    assert_eq!(bc.cancel(ended_id).await.status, 200);

    let r = bc.get(ended_id, Some(10.0)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = bc
        .submit(json!({"kind": "k", "idempotency_key": "ended"}), Some(10.0))
        .await;
    assert_eq!(
        (r.status, r.body["id"].as_i64()),
        (200, Some(ended_id)),
        "{:?}",
        r.body
    );
    let before = db.count_jobs().await;
    let r = bc.submit(json!({"kind": "new"}), Some(10.0)).await;
    assert_eq!((r.status, r.code()), (503, "too_many_waiting"));
    assert_eq!(db.count_jobs().await, before, "nothing stored");
    let r = bc.get(open, Some(10.0)).await;
    assert_eq!(r.status, 503, "an open job would wait");

    bc.cancel(open).await;
    assert_eq!(waiter.await.unwrap().status(), 200);
}
