//! Forwarding to the stream's holder (docs/scaling.md): work received by an
//! instance without the stream goes to the holder, and whatever goes wrong
//! on the way (an address nobody answers, one rewritten to a stranger, a
//! holder shutting down mid-wait) the work is done here, once.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

/// The counter `series` of an exposition, 0 when absent.
fn count(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or(0.0)
}

const NEW_HEARD: &str = "backchannel_notifications_received_total{channel=\"backchannel_new\"}";
const SUBMITS_RELAYED: &str =
    "backchannel_forward_requests_total{route=\"/v1/jobs\",outcome=\"relayed\"}";
const ANSWERS_RELAYED: &str =
    "backchannel_forward_requests_total{route=\"/v1/jobs/{id}/result\",outcome=\"relayed\"}";

/// Wait until `instance` would forward to the holder at `url`.
async fn forwards_to(instance: &Instance, url: &str) -> bool {
    eventually(LONG, || async {
        instance
            .running()
            .broker
            .forward_target()
            .is_some_and(|holder| holder.url == url)
    })
    .await
}

#[tokio::test]
async fn work_received_without_the_stream_is_done_by_the_holder() {
    let db = TestDb::new().await;
    let holder = instance(&db).await;
    let other = instance(&db).await;
    let mut sse = holder.stream(None).await.expect("stream");
    assert!(forwards_to(&other, &holder.base).await);
    let heard_before = count(&holder.metrics().await, NEW_HEARD);

    for i in 0..10 {
        // Submitted on the other instance, stored by the holder: its insert
        // claimed the job for its stream (delivered, attempt 1).
        let waiting = other.spawn_submit(json!({"kind": "fwd", "payload": i}), 10.0);
        let job = sse
            .next_job(LONG)
            .await
            .expect("the job, on the holder's stream");
        assert_eq!(job["payload"], json!(i));
        assert_eq!(job["attempt"], 1);
        let id = job["id"].as_i64().unwrap();
        // Answered on the other instance too: forwarded, and the waiter (on
        // the holder) woken in memory.
        let answered = other.answer(id, json!({"result": i * 2})).await;
        assert_eq!(answered.status, 200, "{}", answered.text);
        let reply = waiting.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["state"], "done");
        assert_eq!(reply.body["result"], json!(i * 2));
    }
    let other_metrics = other.metrics().await;
    assert_eq!(
        count(&other_metrics, SUBMITS_RELAYED),
        10.0,
        "{other_metrics}"
    );
    assert_eq!(count(&other_metrics, ANSWERS_RELAYED), 10.0);
    let holder_metrics = holder.metrics().await;
    assert_eq!(
        count(&holder_metrics, "backchannel_hops_received_total"),
        20.0
    );
    // No job reached the stream by NOTIFY backchannel_new: none was sent.
    assert_eq!(count(&holder_metrics, NEW_HEARD), heard_before);
    // A read without a wait is not worth a hop; one with a wait is relayed.
    let id = other.submit_job("read", json!(null)).await;
    assert_eq!(other.get(id, None).await.body["state"], "delivered");
    let _ = sse.next_job(LONG).await.expect("the read job");
    assert_eq!(other.cancel(id).await.status, 200);
    assert_eq!(other.get(id, Some(1.0)).await.body["state"], "cancelled");
    assert_eq!(db.count_jobs().await, 11, "each job stored once");
}

#[tokio::test]
async fn with_forwarding_off_every_instance_does_its_own_work() {
    let db = TestDb::new().await;
    let holder = instance_with(settings_without_forwarding(&db)).await;
    let other = instance_with(settings_without_forwarding(&db)).await;
    let mut sse = holder.stream(None).await.expect("stream");
    tokio::time::sleep(HOLDER_REFRESH * 2).await;
    assert!(other.running().broker.forward_target().is_none());
    let r = other.submit(json!({"kind": "here"}), None).await;
    assert_eq!(
        r.body["state"], "pending",
        "stored here, claimed by the stream"
    );
    let job = sse.next_job(LONG).await.expect("the job, by NOTIFY");
    assert_eq!(job["id"], r.body["id"]);
    assert!(count(&holder.metrics().await, NEW_HEARD) >= 1.0);
    assert_eq!(count(&other.metrics().await, SUBMITS_RELAYED), 0.0);
}

const HOLDER_REFRESH: Duration = backchannel::broker::HOLDER_RETRY;

/// A port nobody listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_holder_address_nobody_answers_leaves_the_work_here() {
    let db = TestDb::new().await;
    let mut settings = settings(&db);
    let dead = format!("http://127.0.0.1:{}", closed_port().await);
    settings.advertise_url = Some(dead.clone());
    let holder = instance_with(settings).await;
    let mut other_settings = crate::support::settings(&db);
    other_settings.forward_timeout = Duration::from_millis(300);
    let other = instance_with(other_settings).await;
    let mut sse = holder.stream(None).await.expect("stream");
    assert!(forwards_to(&other, &dead).await);

    let waiting = other.spawn_submit(json!({"kind": "fallback"}), 10.0);
    let job = sse.next_job(LONG).await.expect("the job, stored here");
    let id = job["id"].as_i64().unwrap();
    assert_eq!(other.answer(id, json!({"result": "ok"})).await.status, 200);
    let reply = waiting.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["result"], "ok");
    let text = other.metrics().await;
    assert!(
        count(
            &text,
            "backchannel_forward_fallbacks_total{reason=\"unreachable\"}"
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(db.count_jobs().await, 1);
}

#[tokio::test]
async fn a_holder_that_never_answers_leaves_the_work_here_after_the_forward_timeout() {
    let db = TestDb::new().await;
    // Accepts connections, reads, never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut settings = settings(&db);
    settings.advertise_url = Some(silent_url.clone());
    let holder = instance_with(settings).await;
    let mut other_settings = crate::support::settings(&db);
    other_settings.forward_timeout = Duration::from_millis(300);
    let other = instance_with(other_settings).await;
    let _sse = holder.stream(None).await.expect("stream");
    assert!(forwards_to(&other, &silent_url).await);

    let r = other
        .submit(json!({"kind": "slow", "idempotency_key": "k-1"}), None)
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let again = other
        .submit(json!({"kind": "slow", "idempotency_key": "k-1"}), None)
        .await;
    assert_eq!(again.body["id"], r.body["id"], "the key finds the job");
    let text = other.metrics().await;
    assert!(
        count(
            &text,
            "backchannel_forward_fallbacks_total{reason=\"timeout\"}"
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(db.count_jobs().await, 1);
}

/// A server of the test's own: records each request's head and body, and
/// answers every one with a forged job.
async fn impostor() -> (String, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buffer = [0u8; 65536];
                // Read until the body declared by Content-Length is in.
                loop {
                    let Ok(n) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buffer[..n]);
                    if let Some(end) = find(&seen, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = tx.send(seen);
                let forged = r#"{"id":1,"kind":"forged","state":"done","payload":null,"result":"forged","error":null,"attempts":1,"created_at":"2026-01-01T00:00:00Z","deadline":"2026-01-01T00:00:30Z","completed_at":"2026-01-01T00:00:01Z"}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{forged}",
                    forged.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (url, rx)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn a_holder_address_rewritten_by_sql_gets_no_token_and_cannot_answer_or_replay() {
    let db = TestDb::new().await;
    let holder = instance(&db).await;
    let other = instance(&db).await;
    let _sse = holder.stream(None).await.expect("stream");
    assert!(forwards_to(&other, &holder.base).await);

    // Another application (or a DBA) points the holder record elsewhere,
    // and has the instances read it again.
    let (url, mut seen) = impostor().await;
    let client = db.client().await;
    client
        .execute(
            "UPDATE backchannel.stream_holder SET advertise_url = $1",
            &[&url],
        )
        .await
        .unwrap();
    client
        .batch_execute("NOTIFY backchannel_holder")
        .await
        .unwrap();
    assert!(forwards_to(&other, &url).await);

    let r = other
        .submit(json!({"kind": "secret", "payload": {"p": 1}}), None)
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_ne!(
        r.body["kind"], "forged",
        "the impostor's answer is not relayed"
    );
    assert_eq!(r.body["kind"], "secret");
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(
        other.answer(id, json!({"result": "real"})).await.body["result"],
        "real"
    );
    assert_eq!(other.get(id, None).await.body["result"], "real");

    // What the impostor received: no token of any client.
    let mut requests = Vec::new();
    while let Ok(request) = seen.try_recv() {
        requests.push(request);
    }
    assert!(!requests.is_empty(), "the impostor was forwarded to");
    for request in &requests {
        let text = String::from_utf8_lossy(request);
        assert!(!text.contains(SUBMITTER), "{text}");
        assert!(!text.contains(LISTENER), "{text}");
        assert!(
            !text.to_ascii_lowercase().contains("authorization"),
            "{text}"
        );
    }
    // Replayed at the real holder at once, the envelope is refused: it names
    // the impostor's address.
    let request = &requests[0];
    let end = find(request, b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&request[..end]).to_string();
    let signature = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-backchannel-hop-signature:")
                .then(|| l.split_once(':').unwrap().1.trim().to_string())
        })
        .expect("a signature");
    let replay = holder
        .send(
            holder
                .http
                .post(holder.url("/v1/hop"))
                .header("content-type", "application/json")
                .header("x-backchannel-hop-signature", signature)
                .body(request[end + 4..].to_vec()),
        )
        .await;
    assert_eq!(replay.status, 403, "{}", replay.text);
    assert_eq!(replay.code(), "hop_refused");
    // Two jobs: the submit and the answer were each done once, here.
    assert_eq!(db.count_jobs().await, 1);
}

#[tokio::test]
async fn a_hop_is_refused_unless_signed_for_this_address_and_recent() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let envelope = |to: &str, ts: i64| {
        serde_json::to_vec(&json!({
            "v": 1, "to": to, "ts": ts, "from": "t", "role": "submitter",
            "op": "submit", "body": {"kind": "hop"},
        }))
        .unwrap()
    };
    let send = |body: Vec<u8>, signature: Option<String>| {
        let mut request = bc
            .http
            .post(bc.url("/v1/hop"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-backchannel-hop-signature", signature);
        }
        bc.send(request)
    };
    let now = chrono::Utc::now().timestamp_millis();
    let good = envelope(&bc.base, now);
    // No signature, or a token instead of one.
    assert_eq!(send(good.clone(), None).await.code(), "hop_refused");
    let with_token = bc
        .send(
            bc.http
                .post(bc.url("/v1/hop"))
                .bearer_auth(SUBMITTER)
                .header("content-type", "application/json")
                .body(good.clone()),
        )
        .await;
    assert_eq!(with_token.code(), "hop_refused");
    // Signed for another address, or too old.
    let elsewhere = envelope("http://127.0.0.1:1", now);
    let signature = hop_signature(&elsewhere);
    assert_eq!(send(elsewhere, Some(signature)).await.code(), "hop_refused");
    let old = envelope(&bc.base, now - 60_000);
    let signature = hop_signature(&old);
    assert_eq!(send(old, Some(signature)).await.code(), "hop_refused");
    assert_eq!(db.count_jobs().await, 0, "nothing refused was stored");
    // Signed, for here, now: run as the submit it carries, its reply signed.
    let signature = hop_signature(&good);
    let r = send(good, Some(signature)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert!(r.headers.contains_key("x-backchannel-hop-signature"));
    assert_eq!(db.count_jobs().await, 1);
    let text = bc.metrics().await;
    assert_eq!(count(&text, "backchannel_hops_received_total"), 1.0);
    assert!(count(&text, "backchannel_hops_refused_total{reason=\"address\"}") >= 1.0);
    assert!(count(&text, "backchannel_hops_refused_total{reason=\"window\"}") >= 1.0);
}

#[tokio::test]
async fn a_client_sending_the_forwarded_header_is_served_here_with_its_token_checked() {
    let db = TestDb::new().await;
    let holder = instance(&db).await;
    let other = instance(&db).await;
    let _sse = holder.stream(None).await.expect("stream");
    assert!(forwards_to(&other, &holder.base).await);
    let request = |token: Option<&str>| {
        let mut request = other
            .http
            .post(other.url("/v1/jobs"))
            .header("x-backchannel-forwarded", "a-client")
            .json(&json!({"kind": "here"}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
    };
    assert_eq!(other.send(request(None)).await.status, 401);
    let r = other.send(request(Some(SUBMITTER))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["state"], "pending", "stored here, not by the holder");
    assert_eq!(count(&other.metrics().await, SUBMITS_RELAYED), 0.0);
}

#[tokio::test]
async fn a_forwarded_wait_gets_its_answer_after_the_holder_shuts_down() {
    let db = TestDb::new().await;
    let mut holder = instance(&db).await;
    let other = instance(&db).await;
    let mut sse = holder.stream(None).await.expect("stream");
    assert!(forwards_to(&other, &holder.base).await);

    let waiting = other.spawn_submit(json!({"kind": "long"}), 30.0);
    let job = sse.next_job(LONG).await.expect("the job, on the holder");
    let id = job["id"].as_i64().unwrap();
    // The holder stops (SIGTERM): its stream ends, its waiters are answered
    // at once; the forwarding instance waits on for the rest of the wait.
    holder.stop().await;
    drop(sse);
    let mut sse = other
        .stream_eventually(None, LONG)
        .await
        .expect("stream here");
    let again = sse.next_job(LONG).await.expect("the job, again");
    assert_eq!(again["id"], id);
    assert_eq!(
        other.answer(id, json!({"result": "late"})).await.status,
        200
    );
    let reply = waiting.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["result"], "late");
}

/// The environment of a broker process with forwarding on.
const FORWARDING: [(&str, &str); 2] = [
    ("BACKCHANNEL_CLUSTER_SECRET", CLUSTER_SECRET),
    ("BACKCHANNEL_PEERS", "127.0.0.1"),
];

#[tokio::test]
async fn killing_the_holder_under_load_loses_and_doubles_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use crate::support::procs::BrokerProcess;

    let db = TestDb::new().await;
    let named = |name: &'static str| {
        let mut env = FORWARDING.to_vec();
        env.push(("BACKCHANNEL_INSTANCE_ID", name));
        env
    };
    let mut holder = BrokerProcess::spawn(&db.url, &named("p0")).await;
    let second = BrokerProcess::spawn(&db.url, &named("p1")).await;
    let third = BrokerProcess::spawn(&db.url, &named("p2")).await;
    let all = Arc::new(vec![holder.client(), second.client(), third.client()]);
    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));

    // The listener: on the holder first, then wherever a stream is free;
    // answers each job with its payload, through any instance alive.
    let answered = Arc::new(AtomicUsize::new(0));
    let listener = {
        let (all, killed, stop, answered) =
            (all.clone(), killed.clone(), stop.clone(), answered.clone());
        tokio::spawn(async move {
            let mut turn = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let first = usize::from(killed.load(Ordering::SeqCst));
                let at = &all[first + turn % (all.len() - first)];
                turn += 1;
                let Ok(mut sse) = at.stream(Some("castellum")).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                while !stop.load(Ordering::SeqCst) {
                    match sse.poll_job(Duration::from_millis(200)).await {
                        Ok(Some(job)) => {
                            // Through any instance; one that was just killed
                            // does not answer, and the next one is tried.
                            let id = job["id"].as_i64().unwrap();
                            let body = json!({"result": job["payload"]});
                            let mut status = None;
                            for _ in 0..all.len() * 2 {
                                let via = &all[turn % all.len()];
                                turn += 1;
                                let sent = via.answer_request(id, &body).send().await;
                                if let Ok(response) = sent {
                                    status = Some(response.status().as_u16());
                                    break;
                                }
                            }
                            let status = status.expect("some instance takes the answer");
                            assert!([200, 409, 410].contains(&status), "answer: {status}");
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(None) => {}
                        Err(()) => break,
                    }
                }
            }
        })
    };
    let holds = eventually(LONG, || async {
        db.client()
            .await
            .query_opt(
                "SELECT 1 FROM backchannel.stream_holder WHERE instance = 'p0'",
                &[],
            )
            .await
            .unwrap()
            .is_some()
    })
    .await;
    assert!(holds, "the listener holds the stream on the first instance");

    // 32 submitters for 20 s, half with keys of their own, half without,
    // each job's payload marked; the holder is killed after 5 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let submitters: Vec<_> = (0..32)
        .map(|worker| {
            let all = all.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut n = 0usize;
                while tokio::time::Instant::now() < deadline {
                    let marker = format!("w{worker}-{n}");
                    let at = (worker + n) % all.len();
                    n += 1;
                    let mut body =
                        json!({"kind": "load", "payload": {"marker": marker}, "timeout": 30});
                    if worker % 2 == 0 {
                        body["idempotency_key"] = json!(format!("key-{marker}"));
                    }
                    let sent = all[at]
                        .http
                        .post(all[at].url("/v1/jobs?wait=10"))
                        .bearer_auth(SUBMITTER)
                        .json(&body)
                        .send()
                        .await;
                    let outcome = match sent {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body: serde_json::Value =
                                response.json().await.unwrap_or(serde_json::Value::Null);
                            Ok((status, body))
                        }
                        // Only the killed instance may fail to answer at all.
                        Err(error) => Err((at, at == 0, error.to_string())),
                    };
                    outcomes.push((marker, outcome));
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    holder.signal("KILL");
    killed.store(true, Ordering::SeqCst);
    assert!(holder.exited(LONG).await);

    let mut done = 0;
    for submitter in submitters {
        for (marker, outcome) in submitter.await.unwrap() {
            match outcome {
                Ok((200, job)) => {
                    assert_eq!(job["state"], "done", "{marker}: {job}");
                    assert_eq!(job["result"]["marker"], marker.as_str(), "{job}");
                    done += 1;
                }
                Ok((202, job)) => {
                    assert!(job["id"].as_i64().is_some(), "{marker}: {job}");
                }
                Ok((status, body)) => {
                    let code = body["error"]["code"].as_str().unwrap_or("");
                    assert!(
                        status == 503 && !code.is_empty(),
                        "{marker}: {status} {body}"
                    );
                }
                Err((at, to_killed, error)) => {
                    assert!(to_killed, "{marker}: instance {at} did not answer: {error}")
                }
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    listener.await.unwrap();
    assert!(done > 100, "the load went through ({done} done)");
    // The instances without the stream did forward, before and after the kill.
    for other in [&second, &third] {
        let text = other.client().metrics().await;
        assert!(count(&text, SUBMITS_RELAYED) > 0.0, "{text}");
    }
    assert!(answered.load(Ordering::SeqCst) >= done);

    // No job exists twice: by idempotency key, and by payload marker (the
    // submits without a key of their own got one for their forward).
    let client = db.client().await;
    let doubled_keys: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT idempotency_key FROM backchannel.jobs
             WHERE idempotency_key IS NOT NULL
             GROUP BY 1 HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(doubled_keys, 0);
    let doubled_markers: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT payload->>'marker' FROM backchannel.jobs
             GROUP BY 1 HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(doubled_markers, 0, "a job was stored twice");
}

#[tokio::test]
async fn a_holder_address_with_a_path_or_a_query_is_never_forwarded_to() {
    let db = TestDb::new().await;
    let holder = instance(&db).await;
    let other = instance(&db).await;
    let _sse = holder.stream(None).await.expect("stream");
    assert!(forwards_to(&other, &holder.base).await);
    let client = db.client().await;
    for url in [
        format!("{}/elsewhere", holder.base),
        format!("{}?x=", holder.base),
        format!("{}#", holder.base),
    ] {
        client
            .execute(
                "UPDATE backchannel.stream_holder SET advertise_url = $1",
                &[&url],
            )
            .await
            .unwrap();
        client
            .batch_execute("NOTIFY backchannel_holder")
            .await
            .unwrap();
        // Read again (the holder record as written), and refused as a target.
        assert!(
            eventually(LONG, || async {
                other.running().broker.forward_target().is_none()
            })
            .await,
            "{url}"
        );
        let r = other.submit(json!({"kind": "k"}), None).await;
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(r.body["state"], "pending", "stored here: {url}");
    }
}
