//! Peers that vanish without closing their connection (power loss, a NAT or
//! firewall that silently drops state): the kernel would retransmit for ~15
//! minutes. A silent listener must let go of the stream, and a silent
//! submitter of its waiting place, within a few heartbeats.
//!
//! The test drops packets, so it runs inside a network namespace of its own:
//! the test binary starts itself again under `unshare --net` (as root; `.ci/run`
//! installs `nftables`), with its own loopback, PostgreSQL cluster and broker.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::procs::TempCluster;
use crate::support::*;

/// Set in the copy of the test that runs inside the namespace.
const INSIDE: &str = "BACKCHANNEL_TEST_INSIDE_NETNS";
const NAME: &str = "faults::silent::silent_peers_are_let_go_within_three_heartbeats";
const HEARTBEAT: Duration = Duration::from_secs(2);
/// The contract: three heartbeats plus a few seconds.
const BOUND: Duration = Duration::from_secs(3 * 2 + 5);

const HOLDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const SUBMITTER_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

#[tokio::test]
async fn silent_peers_are_let_go_within_three_heartbeats() {
    if std::env::var_os(INSIDE).is_none() {
        let status = Command::new("unshare")
            .args(["--net", "--"])
            .arg(std::env::current_exe().expect("the test binary"))
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(INSIDE, "1")
            .status()
            .expect("run unshare (util-linux)");
        assert!(
            status.success(),
            "the test inside its own network namespace failed (it needs root and nftables)"
        );
        return;
    }
    inside_the_namespace().await;
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// An HTTP client whose connections leave from `address`.
fn client_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(address))
        .build()
        .unwrap()
}

async fn inside_the_namespace() {
    run("ip", &["link", "set", "lo", "up"]);
    let cluster = TempCluster::start();
    let url = cluster.database("bc").await;
    let mut settings = backchannel::config::Settings::new(&url, &[SUBMITTER], &[LISTENER]);
    settings.pool_size = 4;
    settings.heartbeat = HEARTBEAT;
    let bc = instance_with(settings).await;

    // The stream's holder, and a submitter waiting for an answer, on hosts of their own.
    let holder = client_from(HOLDER)
        .get(bc.url("/v1/stream"))
        .bearer_auth(LISTENER)
        .header("X-Listener-Id", "holder")
        .send()
        .await
        .unwrap();
    assert_eq!(holder.status(), 200);
    let mut held = Sse::new(holder);
    assert!(held.next_event(LONG).await.is_some(), "the stream opened");
    let id = bc.submit_job("silent", json!(1)).await;
    let waiting = Instance::at(&bc.base, client_from(SUBMITTER_HOST)).spawn_get(id, 600.0);
    assert!(bc.waiting_eventually(1, LONG).await);

    // Both hosts vanish: every packet from and to them is dropped.
    run("nft", &["add", "table", "inet", "silent"]);
    for (chain, hook, field) in [("in", "input", "saddr"), ("out", "output", "daddr")] {
        let spec = format!("{{ type filter hook {hook} priority 0 ; }}");
        run("nft", &["add", "chain", "inet", "silent", chain, &spec]);
        let rule = format!("ip {field} {{ {HOLDER}, {SUBMITTER_HOST} }} drop");
        let mut args = vec!["add", "rule", "inet", "silent", chain];
        args.extend(rule.split(' '));
        run("nft", &args);
    }

    // A standby listener with another id gets the stream within the bound.
    let standby = bc.stream_eventually(Some("standby"), BOUND).await;
    assert!(
        standby.is_some(),
        "the silent holder kept the stream longer than three heartbeats + 5 s"
    );
    // And the vanished submitter's place among the waiting requests is free.
    assert!(
        bc.waiting_eventually(0, BOUND).await,
        "the silent submitter still holds a waiting place"
    );
    waiting.abort();
}
