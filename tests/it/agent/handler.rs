//! The handler's troubles, as the agent meets them: a redirect (never
//! followed: the shared secret stays with the configured origin), a handler
//! that restarts or never comes up (retried until shortly before the
//! deadline, then `handler_unreachable`), `/readyz` while it is down, the kit
//! check (`BACKCHANNEL_EXPECT_KIT`), and the warnings at start and per job.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::agent::*;
use crate::support::*;

fn secret_file(secret: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("bc-fwd-{}", uuid::Uuid::new_v4()));
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

async fn get(url: String) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_redirect_is_never_followed_and_the_secret_stays_with_the_handler() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let elsewhere = Counter::start().await;
    let location = format!(
        "{}/login?next=/backchannel/job&ticket=t0p",
        elsewhere.origin
    );
    let handler = Canned::start(307, &[("location", &location)], "").await;
    let file = secret_file("castellum-shared-secret-7");
    let mut args = agent_args(&bc.base, Some(&handler.url));
    args.forward_header_file = Some(file.clone());
    let _agent = RunningAgent::start(args);

    let r = bc
        .submit(
            json!({"kind": "invitation.lookup", "payload": 1}),
            Some(30.0),
        )
        .await;
    std::fs::remove_file(file).unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "failed", "{:?}", r.body);
    let error = &r.body["error"];
    assert_eq!(error["code"], "handler_redirect", "{error}");
    assert_eq!(error["status"], 307);
    assert_eq!(error["location"], elsewhere.origin.as_str());
    assert!(
        !error.to_string().contains("t0p"),
        "no path or query: {error}"
    );

    // The start-up probe (a GET) met the same redirect and did not follow it either.
    let probed = eventually(LONG, || async {
        handler.seen().iter().any(|s| s.method == "GET")
    })
    .await;
    assert!(probed, "{:?}", handler.seen());
    let posts: Vec<Seen> = handler
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1, "asked once: a redirect is not retried");
    assert_eq!(
        posts[0].secret.as_deref(),
        Some("castellum-shared-secret-7")
    );
    assert_eq!(
        elsewhere.connections(),
        0,
        "the redirect's target never saw a request, nor the secret"
    );
}

#[tokio::test]
async fn a_handler_that_comes_up_late_still_answers_the_job() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let addr = free_addr().await;
    let url = format!("http://{addr}/backchannel/");
    let mut agent = RunningAgent::start(agent_args(&bc.base, Some(&url)));
    let id = bc.submit_job("invitation.lookup", json!("late")).await;
    assert!(
        agent.until(LONG, |s| s.handler_retries >= 1).await,
        "the agent found no one there and tries again"
    );
    // Castellum's web process restarts for three seconds (a deploy).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let handler = Handler::at("castellum", addr).await;

    let r = bc.get(id, Some(30.0)).await;
    assert_eq!(r.body["state"], "done", "{:?}", r.body);
    assert_eq!(r.body["result"]["handled"], "late");
    assert_eq!(r.body["attempts"], 1, "the same delivery, asked again");
    assert_eq!(handler.calls().len(), 1);
}

#[tokio::test]
async fn readyz_reports_a_handler_that_does_not_answer() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let addr = free_addr().await;
    let url = format!("http://{addr}/backchannel/");
    let mut args = agent_args(&bc.base, Some(&url));
    args.health_bind = Some("127.0.0.1:0".parse().unwrap());
    args.handler_down_after = 0.5;
    let mut agent = RunningAgent::start(args);
    let readyz = format!("http://{}/readyz", agent.health.expect("a health listener"));
    assert!(agent.until(LONG, |s| s.connected).await);
    let id = bc.submit_job("invitation.lookup", json!("down")).await;

    let down = eventually(LONG, || async {
        get(readyz.clone()).await == (503, json!({"status": "handler_unreachable"}))
    })
    .await;
    assert!(down, "{:?}", get(readyz.clone()).await);

    let _handler = Handler::at("castellum", addr).await;
    let up = eventually(LONG, || async {
        get(readyz.clone()).await == (200, json!({"status": "ready"}))
    })
    .await;
    assert!(up, "{:?}", get(readyz.clone()).await);
    let r = bc.get(id, Some(30.0)).await;
    assert_eq!(r.body["state"], "done", "{:?}", r.body);
}

#[tokio::test]
async fn with_the_kit_expected_an_answer_that_is_not_the_kit_s_fails_the_job() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    // Django's own 404 page, for a forward URL with a wrong path.
    let page = "<h1>Not Found</h1><p>The requested resource was not found.</p>";
    let lost = Canned::start(404, &[("content-type", "text/html")], page).await;
    let file = secret_file("castellum-shared-secret-8");
    let file_arg = file.to_str().unwrap();
    let env = [("BACKCHANNEL_LISTENER_TOKEN", LISTENER)];
    let mut agent = LoggedAgent::spawn(
        &[
            "--server",
            &bc.base,
            "--forward",
            &lost.url,
            "--forward-header-file",
            file_arg,
            "--expect-kit",
        ],
        &env,
    );
    let r = bc
        .submit(
            json!({"kind": "invitation.lookup", "payload": 1}),
            Some(30.0),
        )
        .await;
    assert_eq!(r.body["state"], "failed", "{:?}", r.body);
    let error = &r.body["error"];
    assert_eq!(error["code"], "not_the_kit", "{error}");
    assert_eq!(error["status"], 404);
    assert!(error.get("body").is_none(), "not the kit's: not passed on");
    let id = r.body["id"].as_i64().unwrap();

    // Warned at start (the probe), and once for the job: its id, kind, status
    // and the URL's path; never the page.
    let start = agent
        .until_logged(LONG, "does not answer as the castellum kit", 1)
        .await;
    assert_eq!(start[0]["level"], "WARN");
    assert_eq!(start[0]["fields"]["path"], "/backchannel/job");
    let job = agent
        .until_logged(LONG, "is not the castellum kit's", 1)
        .await;
    let fields = &job[0]["fields"];
    assert_eq!(job[0]["level"], "WARN");
    assert_eq!(
        (&fields["job_id"], &fields["kind"], &fields["status"]),
        (&json!(id), &json!("invitation.lookup"), &json!(404))
    );
    assert_eq!(fields["path"], "/backchannel/job");
    assert!(!agent.text().contains("requested resource"), "no body");
    agent.child.kill().await.unwrap();

    // The kit's own 404 is the handler's answer, passed on; logged at WARN
    // with the kit's code but not its message.
    let body = r#"{"error":{"code":"no_such_invitation","message":"no such invitation for ada@example.org"}}"#;
    let kit_headers = [
        ("content-type", "application/json"),
        ("x-backchannel-kit", "1"),
    ];
    let kit = Canned::start(404, &kit_headers, body).await;
    let agent = LoggedAgent::spawn(
        &[
            "--server",
            &bc.base,
            "--forward",
            &kit.url,
            "--forward-header-file",
            file_arg,
            "--expect-kit",
        ],
        &env,
    );
    let r = bc
        .submit(
            json!({"kind": "invitation.lookup", "payload": 2}),
            Some(30.0),
        )
        .await;
    std::fs::remove_file(&file).unwrap();
    assert_eq!(r.body["state"], "failed", "{:?}", r.body);
    assert_eq!(
        r.body["error"],
        json!({"status": 404, "body": serde_json::from_str::<Value>(body).unwrap()})
    );
    let job = agent
        .until_logged(LONG, "the handler failed the job", 1)
        .await;
    assert_eq!(job[0]["level"], "WARN");
    assert_eq!(job[0]["fields"]["handler"], "404");
    assert_eq!(job[0]["fields"]["code"], "no_such_invitation");
    assert!(!agent.text().contains("ada@example.org"), "no body");
    assert!(
        agent
            .logged("answers as the castellum kit")
            .iter()
            .all(|l| l["level"] == "INFO"),
        "the kit with the right secret: no warning"
    );
}

#[tokio::test]
async fn the_agent_warns_at_start_when_the_kit_would_refuse_it() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    // The kit refuses a request without its secret with 403 and its header.
    let refusal = r#"{"error":{"code":"forbidden","message":"missing or wrong shared secret"}}"#;
    let headers = [
        ("content-type", "application/json"),
        ("x-backchannel-kit", "1"),
    ];
    let kit = Canned::start(403, &headers, refusal).await;
    let env = [("BACKCHANNEL_LISTENER_TOKEN", LISTENER)];
    let agent = LoggedAgent::spawn(
        &["--server", &bc.base, "--forward", &kit.url, "--expect-kit"],
        &env,
    );
    let no_secret = agent.until_logged(LONG, "no shared secret", 1).await;
    assert_eq!(no_secret[0]["level"], "WARN");
    let refused = agent
        .until_logged(LONG, "refuses the agent (403 forbidden)", 1)
        .await;
    assert_eq!(refused[0]["level"], "WARN");
    assert_eq!(
        refused[0]["fields"]["reason"],
        "no shared secret is configured"
    );
    // Without the kit expected, the probe still says the kit would refuse.
    let agent = LoggedAgent::spawn(&["--server", &bc.base, "--forward", &kit.url], &env);
    agent
        .until_logged(LONG, "refuses the agent (403 forbidden)", 1)
        .await;
    assert!(agent.logged("no shared secret for the handler").is_empty());
}
