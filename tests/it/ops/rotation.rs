//! Token rotation without a restart: SIGHUP makes a broker process read its
//! token files again, with the start-up rules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::procs::BrokerProcess;
use crate::support::*;

const OLD_SUBMITTER: &str = "rotation-submitter-old-0001";
const NEW_SUBMITTER: &str = "rotation-submitter-new-0002";
const OLD_LISTENER: &str = "rotation-listener-old-00001";
const NEW_LISTENER: &str = "rotation-listener-new-00002";

struct TokenFiles {
    dir: PathBuf,
}

impl TokenFiles {
    fn new(submitters: &str, listeners: &str) -> TokenFiles {
        let dir = std::env::temp_dir().join(format!("bc-rotation-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = TokenFiles { dir };
        files.write(submitters, listeners);
        files
    }

    fn submitters(&self) -> PathBuf {
        self.dir.join("submitter.tokens")
    }

    fn listeners(&self) -> PathBuf {
        self.dir.join("listener.tokens")
    }

    /// Replace both files at once (write, then rename), as an operator's
    /// editor or configuration tool would.
    fn write(&self, submitters: &str, listeners: &str) {
        for (path, text) in [
            (self.submitters(), submitters),
            (self.listeners(), listeners),
        ] {
            let temp = path.with_extension("new");
            std::fs::write(&temp, text).unwrap();
            std::fs::rename(&temp, &path).unwrap();
        }
    }
}

impl Drop for TokenFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn stats_status(bc: &BrokerProcess, token: &str) -> u16 {
    let client = bc.client();
    client
        .send(client.http.get(client.url("/v1/stats")).bearer_auth(token))
        .await
        .status
}

async fn open_stream(bc: &BrokerProcess, token: &str, id: &str) -> Result<Sse, u16> {
    bc.client()
        .stream_as(token, Some(id))
        .await
        .map_err(|r| r.status)
}

async fn scrape(bc: &BrokerProcess) -> String {
    bc.client().metrics().await
}

#[tokio::test]
async fn sighup_applies_new_token_files_ends_revoked_streams_and_keeps_a_bad_set_out() {
    let db = TestDb::new().await;
    let files = TokenFiles::new(
        &format!("# submitters\n{OLD_SUBMITTER}\n"),
        &format!("{OLD_LISTENER}\n"),
    );
    let bc = BrokerProcess::spawn_logged(
        &db.url,
        &[
            (
                "BACKCHANNEL_SUBMITTER_TOKENS_FILE",
                path(&files.submitters()),
            ),
            ("BACKCHANNEL_LISTENER_TOKENS_FILE", path(&files.listeners())),
            ("RUST_LOG", "backchannel=info"),
        ],
    )
    .await;
    assert_eq!(stats_status(&bc, OLD_SUBMITTER).await, 200);
    assert_eq!(stats_status(&bc, NEW_SUBMITTER).await, 401);
    let mut old_stream = open_stream(&bc, OLD_LISTENER, "castellum")
        .await
        .expect("a stream on the old listener token");

    // Rotate: the new tokens in, the old ones out, one SIGHUP, no restart.
    files.write(&format!("{NEW_SUBMITTER}\n"), &format!("{NEW_LISTENER}\n"));
    bc.signal("HUP");
    assert!(
        eventually(LONG, || async {
            stats_status(&bc, NEW_SUBMITTER).await == 200
        })
        .await,
        "the new submitter token works after SIGHUP"
    );
    assert_eq!(
        stats_status(&bc, OLD_SUBMITTER).await,
        401,
        "the removed one is refused"
    );
    assert!(
        old_stream.ended(LONG).await,
        "the stream opened with the removed listener token ends"
    );
    assert_eq!(
        open_stream(&bc, OLD_LISTENER, "castellum").await.err(),
        Some(401)
    );
    // The old stream's lock session closes as its stream ends: 409 until then.
    let until = tokio::time::Instant::now() + LONG;
    let mut new_stream = loop {
        match open_stream(&bc, NEW_LISTENER, "castellum").await {
            Ok(stream) => break stream,
            Err(409) if tokio::time::Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(status) => panic!("the new listener token opens no stream: {status}"),
        }
    };
    // The env-variable tokens were never in the files and stay valid.
    assert_eq!(stats_status(&bc, SUBMITTER).await, 200);

    // A malformed file: refused as at start-up, the tokens in force stay.
    let malformed = "tiny9x";
    files.write(
        &format!("{NEW_SUBMITTER}\n{malformed}\n"),
        &format!("{NEW_LISTENER}\n"),
    );
    bc.signal("HUP");
    assert!(
        eventually(LONG, || async {
            scrape(&bc)
                .await
                .contains(r#"backchannel_token_reloads_total{result="refused"} 1"#)
        })
        .await,
        "the refused reload is counted"
    );
    assert_eq!(stats_status(&bc, NEW_SUBMITTER).await, 200);
    assert_eq!(stats_status(&bc, OLD_SUBMITTER).await, 401);
    assert!(
        !new_stream.ended(Duration::from_millis(300)).await,
        "a refused reload ends no stream"
    );
    let logs = bc.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("BACKCHANNEL_SUBMITTER_TOKENS_FILE") && logs.contains("line 2"),
        "the log says which file and line: {logs}"
    );
    for token in [
        malformed,
        OLD_SUBMITTER,
        NEW_SUBMITTER,
        OLD_LISTENER,
        NEW_LISTENER,
    ] {
        assert!(!logs.contains(token), "a token reached the log: {logs}");
    }
    assert!(
        scrape(&bc)
            .await
            .contains(r#"backchannel_token_reloads_total{result="applied"} 1"#)
    );
}
