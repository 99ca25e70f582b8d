//! Start-up refusals of bad token settings: a clear message that names the
//! variable, a non-zero exit, and never the token itself. And token files.

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use crate::support::*;

const GOOD_SUBMITTER: &str = "good-submitter-token-0001";
const GOOD_LISTENER: &str = "good-listener-token-0001";

/// A file of its own under the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(content: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("bc-tokens-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A refusal: what is wrong, the environment, words the message must
/// contain, and secrets it must not.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>, Vec<&'a str>);

/// `backchannel serve` with only `env`; its exit code and stderr. The database
/// URL points nowhere: these settings must be refused before any connection.
fn serve(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_backchannel"))
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:9/nothing")
        .env("BACKCHANNEL_BIND", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .expect("run backchannel serve");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_tokens_are_refused_by_name_and_never_printed() {
    let short = "short-token-15c";
    assert_eq!(short.len(), 15);
    let padded = format!(" {GOOD_SUBMITTER}x ");
    let shared = "shared-token-in-both-roles";
    let missing = std::env::temp_dir().join("bc-no-such-token-file");
    let missing = missing.to_str().unwrap();
    let short_in_file = TempFile::new(&format!(
        "# rotation: the new token first\n\n{GOOD_SUBMITTER}x\n{short}\n"
    ));
    let comments_only = TempFile::new("# nothing here yet\n\n");
    let commented_on_line = TempFile::new(&format!("{GOOD_SUBMITTER}y # the new one\n"));
    let shared_file = TempFile::new(&format!("{shared}\n"));
    let with_short = format!("{GOOD_SUBMITTER},{short}");
    let with_shared = format!("{GOOD_SUBMITTER},{shared}");

    let cases: Vec<Case> = vec![
        (
            "no submitter token",
            vec![("BACKCHANNEL_LISTENER_TOKENS", GOOD_LISTENER)],
            vec![
                "BACKCHANNEL_SUBMITTER_TOKENS",
                "BACKCHANNEL_SUBMITTER_TOKENS_FILE",
            ],
            vec![GOOD_LISTENER],
        ),
        (
            "empty submitter tokens",
            vec![
                ("BACKCHANNEL_SUBMITTER_TOKENS", ""),
                ("BACKCHANNEL_LISTENER_TOKENS", GOOD_LISTENER),
            ],
            vec!["BACKCHANNEL_SUBMITTER_TOKENS"],
            vec![GOOD_LISTENER],
        ),
        (
            "no listener token",
            vec![("BACKCHANNEL_SUBMITTER_TOKENS", GOOD_SUBMITTER)],
            vec!["BACKCHANNEL_LISTENER_TOKENS"],
            vec![GOOD_SUBMITTER],
        ),
        (
            "a short submitter token",
            vec![
                ("BACKCHANNEL_SUBMITTER_TOKENS", &with_short),
                ("BACKCHANNEL_LISTENER_TOKENS", GOOD_LISTENER),
            ],
            vec!["BACKCHANNEL_SUBMITTER_TOKENS", "#2", "16"],
            vec![short, GOOD_SUBMITTER, GOOD_LISTENER],
        ),
        (
            "a short listener token",
            vec![
                ("BACKCHANNEL_SUBMITTER_TOKENS", GOOD_SUBMITTER),
                ("BACKCHANNEL_LISTENER_TOKENS", short),
            ],
            vec!["BACKCHANNEL_LISTENER_TOKENS", "16"],
            vec![short, GOOD_SUBMITTER],
        ),
        (
            "spaces around a token",
            vec![
                ("BACKCHANNEL_SUBMITTER_TOKENS", &padded),
                ("BACKCHANNEL_LISTENER_TOKENS", GOOD_LISTENER),
            ],
            vec!["BACKCHANNEL_SUBMITTER_TOKENS", "spaces"],
            vec![padded.trim(), GOOD_LISTENER],
        ),
        (
            "one token in both roles",
            vec![
                ("BACKCHANNEL_SUBMITTER_TOKENS", &with_shared),
                ("BACKCHANNEL_LISTENER_TOKENS", shared),
            ],
            vec![
                "BACKCHANNEL_SUBMITTER_TOKENS",
                "BACKCHANNEL_LISTENER_TOKENS",
                "both roles",
            ],
            vec![shared, GOOD_SUBMITTER],
        ),
        (
            "one token in both roles, from a file",
            vec![
                ("BACKCHANNEL_SUBMITTER_TOKENS", shared),
                ("BACKCHANNEL_LISTENER_TOKENS", GOOD_LISTENER),
                ("BACKCHANNEL_LISTENER_TOKENS_FILE", shared_file.path()),
            ],
            vec!["both roles"],
            vec![shared, GOOD_LISTENER],
        ),
        (
            "a token file that does not exist",
            vec![
                ("BACKCHANNEL_SUBMITTER_TOKENS_FILE", missing),
                ("BACKCHANNEL_LISTENER_TOKENS", GOOD_LISTENER),
            ],
            vec!["BACKCHANNEL_SUBMITTER_TOKENS_FILE", missing],
            vec![GOOD_LISTENER],
        ),
        (
            "a short token in a file",
            vec![
                ("BACKCHANNEL_SUBMITTER_TOKENS_FILE", short_in_file.path()),
                ("BACKCHANNEL_LISTENER_TOKENS", GOOD_LISTENER),
            ],
            vec!["BACKCHANNEL_SUBMITTER_TOKENS_FILE", "line 4", "16"],
            vec![short, GOOD_SUBMITTER, GOOD_LISTENER],
        ),
        (
            "a token file of comments only",
            vec![
                ("BACKCHANNEL_SUBMITTER_TOKENS", GOOD_SUBMITTER),
                ("BACKCHANNEL_LISTENER_TOKENS_FILE", comments_only.path()),
            ],
            vec!["BACKCHANNEL_LISTENER_TOKENS_FILE", "no token"],
            vec![GOOD_SUBMITTER],
        ),
        (
            "a comment after a token",
            vec![
                (
                    "BACKCHANNEL_SUBMITTER_TOKENS_FILE",
                    commented_on_line.path(),
                ),
                ("BACKCHANNEL_LISTENER_TOKENS", GOOD_LISTENER),
            ],
            vec!["BACKCHANNEL_SUBMITTER_TOKENS_FILE", "line 1", "spaces"],
            vec![GOOD_SUBMITTER, GOOD_LISTENER],
        ),
    ];
    for (what, env, words, secrets) in cases {
        let (code, stderr) = serve(&env);
        assert!(
            code.is_some_and(|c| c != 0),
            "{what}: exit {code:?}\n{stderr}"
        );
        for word in words {
            assert!(
                stderr.contains(word),
                "{what}: {word:?} missing in\n{stderr}"
            );
        }
        for secret in secrets {
            assert!(
                !stderr.contains(secret),
                "{what}: a token is printed:\n{stderr}"
            );
        }
        assert!(
            !stderr.contains("nothing") && !stderr.contains("connect"),
            "{what}: refused only after trying the database:\n{stderr}"
        );
    }
}

/// Durations that would break statements or timers later (PostgreSQL's
/// intervals, dates, the runtime's clock) are refused before anything starts.
#[test]
fn absurd_durations_are_refused_by_name() {
    for (name, value) in [
        ("BACKCHANNEL_RETENTION", "1e10"),
        ("BACKCHANNEL_MAX_TIMEOUT", "1e300"),
        ("BACKCHANNEL_HEARTBEAT", "inf"),
    ] {
        let (code, stderr) = serve(&[
            ("BACKCHANNEL_SUBMITTER_TOKENS", GOOD_SUBMITTER),
            ("BACKCHANNEL_LISTENER_TOKENS", GOOD_LISTENER),
            (name, value),
        ]);
        assert!(code.is_some_and(|c| c != 0), "{name}={value}: {stderr}");
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
        assert!(
            !stderr.contains("connect"),
            "refused before the database: {stderr}"
        );
    }
}

/// Tokens from files count as much as those from the variables: blank lines
/// and comments are skipped, each role keeps its own.
#[tokio::test]
async fn tokens_from_files_join_the_listed_ones() {
    let db = TestDb::new().await;
    let rotated = "rotated-submitter-token-0002";
    let retired = "retired-submitter-token-0000";
    let file_listener = "file-listener-token-00000002";
    let submitters = TempFile::new(&format!("# the next one\n{rotated}\n\n# {retired}\n   \n"));
    let listeners = TempFile::new(&format!("{file_listener}\r\n"));
    let mut settings = settings(&db);
    settings.submitter_tokens_file = Some(submitters.0.clone());
    settings.listener_tokens_file = Some(listeners.0.clone());
    let bc = instance_with(settings).await;
    let id = bc.submit_job("x", json!(null)).await;
    let get = |token: &str| {
        bc.http
            .get(bc.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(token)
    };
    assert_eq!(bc.send(get(SUBMITTER)).await.status, 202);
    assert_eq!(bc.send(get(rotated)).await.status, 202);
    assert_eq!(bc.send(get(retired)).await.status, 401);
    assert_eq!(bc.send(get(file_listener)).await.status, 403);
    let answer = bc
        .send(
            bc.http
                .post(bc.url(&format!("/v1/jobs/{id}/result")))
                .bearer_auth(file_listener)
                .json(&json!({"result": 1})),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}
