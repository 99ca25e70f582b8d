//! `backchannel serve --check` (like `nginx -t`): one line per check, exit 0
//! when serve would start, never binding; a connection that fails names
//! host:port and why. And `serve --check-tokens` before a SIGHUP, which is
//! how a reload that the broker would refuse fails (`ExecReload=`).

use std::process::{Command, Output};

use crate::support::files::TempDir;
use crate::support::procs::{BrokerProcess, free_port};
use crate::support::*;

const MONITOR: &str = "check-monitor-token-0001";

/// `backchannel serve FLAG` with only `env` (no inherited variable).
async fn serve(flag: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backchannel"));
    command
        .args(["serve", flag])
        .env_clear()
        .env("RUST_LOG", "off")
        .envs(env.iter().copied());
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `backchannel migrate` as the test database's owner.
fn migrate(url: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_backchannel"))
        .arg("migrate")
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[tokio::test]
async fn a_good_set_up_passes_without_binding_and_names_what_it_found() {
    let db = TestDb::new().await;
    migrate(&db.url);
    let files = TempDir::new("check");
    let submitters = files.write("submitter.tokens", &format!("# site\n{SUBMITTER}\n"));
    // The address serve would listen on is taken: --check never binds it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let output = serve(
        "--check",
        &[
            ("DATABASE_URL", &db.url),
            ("BACKCHANNEL_BIND", &bind),
            ("BACKCHANNEL_MIGRATE", "check"),
            ("BACKCHANNEL_SUBMITTER_TOKENS_FILE", &submitters),
            ("BACKCHANNEL_LISTENER_TOKENS", LISTENER),
            ("BACKCHANNEL_MONITOR_TOKENS", MONITOR),
        ],
    )
    .await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{output:?}");
    let (host, port) = admin_server();
    let latest = backchannel::store::migrate::latest();
    let id = backchannel::http::auth::TokenId::of(SUBMITTER);
    for expected in [
        format!("ok    settings: valid; serve would listen on {bind} (not bound by --check)"),
        format!(
            "ok    submitter tokens: 1 (ids {id}; from BACKCHANNEL_SUBMITTER_TOKENS_FILE {submitters})"
        ),
        "ok    monitor tokens: 1".to_owned(),
        format!("ok    DATABASE_URL: connected to {host}:{port}"),
        "ok    BACKCHANNEL_DIRECT_DATABASE_URL: not set".to_owned(),
        format!("ok    schema: at version {latest}, as this build needs"),
        "ok    rights: role".to_owned(),
        "backchannel serve --check: ok".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing in:\n{text}");
    }
    for secret in [SUBMITTER, LISTENER, MONITOR] {
        assert!(!text.contains(secret), "a token is printed:\n{text}");
    }
    // It passed with its address taken by this test: it never tried to bind.

    // Now the port is free: --check still does not take it.
    drop(taken);
    let output = serve(
        "--check",
        &[
            ("DATABASE_URL", &db.url),
            ("BACKCHANNEL_BIND", &bind),
            ("BACKCHANNEL_SUBMITTER_TOKENS", SUBMITTER),
            ("BACKCHANNEL_LISTENER_TOKENS", LISTENER),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    std::net::TcpListener::bind(&bind).expect("the port stays free");

    // A schema behind what the build needs, with BACKCHANNEL_MIGRATE=check:
    // a failure that says what to run.
    let behind = TestDb::new().await;
    let output = serve(
        "--check",
        &[
            ("DATABASE_URL", &behind.url),
            ("BACKCHANNEL_MIGRATE", "check"),
            ("BACKCHANNEL_SUBMITTER_TOKENS", SUBMITTER),
            ("BACKCHANNEL_LISTENER_TOKENS", LISTENER),
        ],
    )
    .await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL  schema: the backchannel schema is not installed")
            && text.contains("backchannel migrate"),
        "{text}"
    );
    assert!(
        text.ends_with("1 problem(s); serve would not start\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_failed_connection_names_host_port_and_cause() {
    let refused_port = free_port();
    let refused_at = format!("127.0.0.1:{refused_port}");
    let cases = [
        (
            "an unknown host",
            "postgres://app:pw-s3cret@no-such-host.invalid:5432/app".to_owned(),
            vec![
                "no-such-host.invalid:5432",
                "the host name does not resolve",
            ],
        ),
        (
            "a refused port",
            format!("postgres://app:pw-s3cret@{refused_at}/app"),
            vec![refused_at.as_str(), "connection refused"],
        ),
    ];
    for (what, url, words) in cases {
        let output = serve(
            "--check",
            &[
                ("DATABASE_URL", &url),
                ("BACKCHANNEL_SUBMITTER_TOKENS", SUBMITTER),
                ("BACKCHANNEL_LISTENER_TOKENS", LISTENER),
            ],
        )
        .await;
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{what}: {text}");
        let line = text
            .lines()
            .find(|l| l.starts_with("FAIL  DATABASE_URL:"))
            .unwrap_or_else(|| panic!("{what}: no DATABASE_URL failure in:\n{text}"));
        for word in words {
            assert!(line.contains(word), "{what}: {word:?} missing in: {line}");
        }
        assert!(!text.contains("pw-s3cret"), "{what}: the password:\n{text}");

        // serve itself refuses with the same words.
        let output = serve(
            "--bind=127.0.0.1:0",
            &[
                ("DATABASE_URL", &url),
                ("BACKCHANNEL_SUBMITTER_TOKENS", SUBMITTER),
                ("BACKCHANNEL_LISTENER_TOKENS", LISTENER),
            ],
        )
        .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}");
        assert!(
            stderr.contains(line.trim_start_matches("FAIL  DATABASE_URL: ")),
            "{what}: {stderr}"
        );
    }
}

#[tokio::test]
async fn check_tokens_before_sighup_fails_a_reload_the_broker_would_refuse() {
    const OLD: &str = "reload-submitter-old-0001";
    const NEW: &str = "reload-submitter-new-0002";
    let db = TestDb::new().await;
    let files = TempDir::new("reload");
    let path = files.write("submitter.tokens", &format!("{OLD}\n"));
    // The broker's environment (BrokerProcess sets these two lists too).
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("BACKCHANNEL_SUBMITTER_TOKENS_FILE", path.as_str()),
        ("BACKCHANNEL_SUBMITTER_TOKENS", SUBMITTER),
        ("BACKCHANNEL_LISTENER_TOKENS", LISTENER),
    ];
    let bc = BrokerProcess::spawn_logged(&db.url, &env[1..]).await;
    let client = bc.client();
    let stats = |token: &'static str| {
        let request = client.http.get(client.url("/v1/stats")).bearer_auth(token);
        async { client.send(request).await.status }
    };
    assert_eq!(stats(OLD).await, 200);

    // ExecReload=backchannel serve --check-tokens, then kill -HUP: with a
    // bad file the first fails, so systemctl reload fails and no signal goes.
    files.write("submitter.tokens", &format!("{NEW}\nshort-one\n"));
    let output = serve("--check-tokens", &env).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL  tokens: BACKCHANNEL_SUBMITTER_TOKENS_FILE")
            && text.contains("line 2")
            && text.contains("a reload would be refused"),
        "{text}"
    );
    assert!(!text.contains(NEW) && !text.contains("short-one"), "{text}");
    assert_eq!(stats(OLD).await, 200, "nothing changed in the broker");

    // A good file: the check passes, the signal goes, the new set is in force.
    files.write("submitter.tokens", &format!("{NEW}\n"));
    let output = serve("--check-tokens", &env).await;
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    bc.signal("HUP");
    assert!(eventually(LONG, || async { stats(NEW).await == 200 }).await);
    assert_eq!(stats(OLD).await, 401);

    // --check-tokens never connects: a database that is not there is fine.
    let nowhere = [
        ("DATABASE_URL", "postgres://nobody@127.0.0.1:9/nothing"),
        ("BACKCHANNEL_SUBMITTER_TOKENS_FILE", path.as_str()),
        ("BACKCHANNEL_LISTENER_TOKENS", LISTENER),
    ];
    let output = serve("--check-tokens", &nowhere).await;
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}
