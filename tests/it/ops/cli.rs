//! The command line around the broker: `backchannel submit` prints the job
//! and exits by its state, `backchannel status --check` is a monitoring
//! plugin (OK, WARNING, CRITICAL, UNKNOWN), `backchannel keys` writes key
//! files openssl reads and prints key ids. (`submit --seal-to` is in
//! agent/sealed.rs, with the agent it goes through.)

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::agent::*;
use crate::support::*;

/// `backchannel status --check` as a child process: its exit code and stdout.
async fn check(base: &str, token: &str, extra: &[&str]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backchannel"));
    command
        .args(["status", "--check", "--server", base, "--timeout", "5"])
        .args(extra)
        .env("BACKCHANNEL_SUBMITTER_TOKEN", token)
        .env("RUST_LOG", "off");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    (output.status.code().expect("an exit code"), stdout)
}

/// A listener in the test: answers every job with `{"result": payload}`.
fn echo_listener(mut sse: Sse, bc: Instance) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(job) = sse.next_job(Duration::from_secs(60)).await {
            let id = job["id"].as_i64().unwrap();
            bc.answer(id, json!({"result": job["payload"]})).await;
        }
    })
}

#[tokio::test]
async fn status_check_exits_ok_warning_critical_and_unknown() {
    let db = TestDb::new().await;
    // No reaper: a pending job past its deadline stays pending (and unclaimed).
    let bc = instance_with(quiet_settings(&db)).await;

    let (code, line) = check(&bc.base, SUBMITTER, &[]).await;
    assert_eq!(code, 2, "no listener is CRITICAL: {line}");
    assert!(
        line.starts_with("BACKCHANNEL CRITICAL - no listener"),
        "{line}"
    );

    let sse = bc.stream(Some("castellum")).await.expect("stream");
    let (code, line) = check(&bc.base, SUBMITTER, &[]).await;
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("BACKCHANNEL OK - listener castellum connected"),
        "{line}"
    );
    assert!(
        line.contains("| listener_connected=1;;1:;0;1 pending=0;;;0"),
        "{line}"
    );
    drop(sse);
    let held = || async {
        bc.send(bc.http.get(bc.url("/v1/listener")).bearer_auth(SUBMITTER))
            .await
            .body["held"]
            == true
    };
    assert!(
        eventually(LONG, || async { !held().await }).await,
        "the stream is gone before the next job"
    );

    // A job that nobody took before its deadline, then a listener again.
    let id = bc
        .submit(json!({"kind": "late", "timeout": 0.2}), None)
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _sse = bc
        .stream_eventually(Some("castellum"), LONG)
        .await
        .expect("stream");
    let (code, line) = check(
        &bc.base,
        SUBMITTER,
        &["--warn-pending-age", "0.3", "--crit-pending-age", "3600"],
    )
    .await;
    assert_eq!(
        code, 1,
        "a pending job older than the warning threshold: {line}"
    );
    assert!(
        line.starts_with("BACKCHANNEL WARNING - oldest pending job"),
        "{line}"
    );
    let (code, line) = check(
        &bc.base,
        SUBMITTER,
        &[
            "--warn-pending-age",
            "0.1",
            "--crit-pending-age",
            "0.3",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 2, "{line}");
    let verdict: Value = serde_json::from_str(&line).expect("--json prints JSON");
    assert_eq!(verdict["status"], "critical");
    assert_eq!(verdict["exit_code"], 2);
    assert_eq!(verdict["stats"]["jobs"]["pending"], 1, "{verdict}");
    assert_eq!(verdict["listener"]["held"], true);
    assert_eq!(bc.get(id, None).await.body["state"], "expired");

    let (code, line) = check(&bc.base, "not-a-valid-token-at-all", &[]).await;
    assert_eq!(code, 3, "a refused token is UNKNOWN: {line}");
    assert!(
        line.starts_with("BACKCHANNEL UNKNOWN - the broker refused the token"),
        "{line}"
    );
    let nowhere = unreachable_url().await;
    let (code, line) = check(nowhere.trim_end_matches("/backchannel/"), SUBMITTER, &[]).await;
    assert_eq!(code, 3, "an unreachable broker is UNKNOWN: {line}");
    assert!(
        line.starts_with("BACKCHANNEL UNKNOWN - cannot reach"),
        "{line}"
    );
}

#[tokio::test]
async fn submit_cli_prints_the_job_and_exits_by_state() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let sse = bc.stream(None).await.expect("stream");
    let listener = echo_listener(sse, Instance::at(&bc.base, bc.http.clone()));
    let base = bc.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_backchannel"))
            .args([
                "submit",
                "--server",
                &base,
                "--token",
                SUBMITTER,
                "cli.echo",
                r#"{"hello": "cli"}"#,
                "--wait",
                "20",
            ])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let job: Value = serde_json::from_slice(&output.stdout).expect("the job is printed as JSON");
    assert_eq!(job["state"], "done");
    assert_eq!(job["result"], json!({"hello": "cli"}));
    listener.abort();
    let gone = eventually(LONG, || async {
        let request = bc.http.get(bc.url("/v1/listener")).bearer_auth(SUBMITTER);
        bc.send(request).await.body["held"] == false
    })
    .await;
    assert!(gone, "the test's listener let the stream go");

    // No listener now: the job times out, the exit code is not 0 and says why.
    let base = bc.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_backchannel"))
            .args([
                "submit",
                "--server",
                &base,
                "--token",
                SUBMITTER,
                "cli.nobody",
                "--timeout",
                "0.3",
                "--wait",
                "10",
            ])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expired"), "{stderr}");
    let job: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(job["state"], "expired");
    assert_eq!(job["attempts"], 0);
    assert!(
        stderr.contains("no listener took the job (attempts 0): is the agent running?"),
        "{stderr}"
    );
}

/// `backchannel keys ...`: exit code, stdout, stderr.
fn keys(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_backchannel"))
        .arg("keys")
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    (
        output.status.code().expect("an exit code"),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn openssl(args: &[&str]) -> String {
    let output = Command::new("openssl").args(args).output().unwrap();
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn keys_new_writes_what_openssl_reads_and_keys_id_prints_the_kid() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("bc-keys-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();

    for (algorithm, openssl_name) in [("x25519", "X25519"), ("ed25519", "ED25519")] {
        let prefix = path(algorithm);
        let (code, kid, stderr) = keys(&["new", algorithm, "--out", &prefix]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(kid.len(), 16, "{kid}");
        let (private, public) = (format!("{prefix}.key"), format!("{prefix}.pub"));
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is 0600");
        assert_eq!(
            openssl(&["pkey", "-in", &private, "-pubout"]),
            std::fs::read_to_string(&public).unwrap(),
            "openssl derives the same public key file"
        );
        let text = openssl(&["pkey", "-in", &private, "-noout", "-text"]);
        assert!(text.contains(openssl_name), "{text}");
        for file in [&private, &public] {
            assert_eq!(keys(&["id", file]).1, kid, "keys id {file}");
        }

        // Never over an existing key.
        let before = std::fs::read(&private).unwrap();
        let (code, _, stderr) = keys(&["new", algorithm, "--out", &prefix]);
        assert_eq!(code, 1);
        assert!(stderr.contains("already exists"), "{stderr}");
        assert_eq!(std::fs::read(&private).unwrap(), before);
    }

    // A key openssl made has the id of the library's KeyFile.
    let made = path("openssl.key");
    openssl(&["genpkey", "-algorithm", "X25519", "-out", &made]);
    assert_eq!(keys(&["id", &made]).1, crate::support::seal::kid(&made));

    // Not a key: the file and the problem, never its content.
    let garbage = path("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let (code, _, stderr) = keys(&["id", &garbage]);
    assert_eq!(code, 1);
    assert!(stderr.contains("garbage.pem"), "{stderr}");
    assert!(!stderr.contains("c2VjcmV0"), "{stderr}");
    let (code, _, stderr) = keys(&["new", "rsa", "--out", &path("rsa")]);
    assert_eq!(code, 2, "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}
