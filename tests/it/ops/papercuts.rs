//! What every user meets first: boolean variables take the usual words (1/0,
//! true/false, yes/no, on/off, any case), and text logs written to a file or
//! a pipe carry no colour codes. Each runs the real program, with nothing of
//! this test's environment but what it sets.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `backchannel <args>` with exactly `env`, to its end.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backchannel"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run backchannel")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An agent that would hold the stream of a broker that is not there.
const AGENT: [(&str, &str); 2] = [
    ("BACKCHANNEL_SERVER", "http://127.0.0.1:1"),
    ("BACKCHANNEL_LISTENER_TOKEN", "a-listener-token-0001"),
];

#[test]
fn boolean_variables_of_the_agent_take_the_usual_words() {
    // Echo on, and a forward URL as well: refused by name, so echo was read as on.
    for yes in ["1", "yes", "on", "true", "TRUE", "Yes", " on "] {
        let mut env = AGENT.to_vec();
        env.extend([
            ("BACKCHANNEL_ECHO", yes),
            ("BACKCHANNEL_FORWARD", "http://127.0.0.1:1/jobs"),
        ]);
        let output = run(&["agent"], &env);
        let text = stderr(&output);
        assert!(!output.status.success(), "{yes:?}: {text}");
        assert!(text.contains("exclude each other"), "{yes:?}: {text}");
    }
    // Echo off and no forward URL: refused for want of a target, so echo was read as off.
    for no in ["0", "no", "off", "false", "OFF"] {
        let mut env = AGENT.to_vec();
        env.push(("BACKCHANNEL_ECHO", no));
        let output = run(&["agent"], &env);
        let text = stderr(&output);
        assert!(!output.status.success(), "{no:?}: {text}");
        assert!(text.contains("say where jobs go"), "{no:?}: {text}");
    }
    let mut env = AGENT.to_vec();
    env.push(("BACKCHANNEL_ECHO", "maybe"));
    let text = stderr(&run(&["agent"], &env));
    assert!(
        text.contains("invalid value 'maybe'") && text.contains("--echo"),
        "{text}"
    );
}

#[test]
fn boolean_variables_of_the_broker_take_the_usual_words() {
    // A pool of 0 is refused after the variables were read (and before any
    // connection): that refusal says BACKCHANNEL_ACCESS_LOG was accepted.
    for value in ["1", "0", "yes", "no", "on", "off", "true", "FALSE"] {
        let output = run(
            &["serve"],
            &[
                ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
                ("BACKCHANNEL_POOL_SIZE", "0"),
                ("BACKCHANNEL_ACCESS_LOG", value),
            ],
        );
        let text = stderr(&output);
        assert!(
            text.contains("BACKCHANNEL_POOL_SIZE must be at least 1"),
            "{value:?}: {text}"
        );
    }
}

#[test]
fn text_logs_to_a_pipe_carry_no_colour_codes() {
    let mut env = AGENT.to_vec();
    env.extend([("BACKCHANNEL_ECHO", "1"), ("RUST_LOG", "info")]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_backchannel"))
        .arg("agent")
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the agent");
    let stderr = child.stderr.take().expect("piped");
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // The start line and the first failed attempt to reach the broker: an
    // INFO and a WARN line, each with fields (colour would mark all of them).
    let mut logged = Vec::new();
    while logged.len() < 2 {
        match seen.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => logged.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(logged.len(), 2, "the agent logged {logged:?}");
    assert!(logged[0].contains("agent starting"), "{logged:?}");
    for line in &logged {
        assert!(!line.contains('\u{1b}'), "colour codes in a pipe: {line:?}");
    }
}
