//! TLS to PostgreSQL: a cluster of the test's own with `ssl = on` and only
//! `hostssl` lines in pg_hba.conf, certificates made by the test. libpq's
//! `sslmode` semantics end to end, and refusals that say what failed without
//! ever printing the password.

use std::time::Duration;

use backchannel::config::Settings;
use serde_json::json;

use crate::support::pki::Pki;
use crate::support::procs::TempCluster;
use crate::support::*;

const PASSWORD: &str = "pw-that-must-never-be-printed-7f3a";

/// A cluster that speaks only TLS over TCP: role `bc` (password, owns
/// database `bc`) and role `bc_cert` (client certificate, owns `bc_cert`).
struct TlsCluster {
    cluster: TempCluster,
    pki: Pki,
}

impl TlsCluster {
    async fn start() -> TlsCluster {
        init_tracing();
        let pki = Pki::new("bc_cert");
        let cluster = TempCluster::init();
        let cert = cluster.file("server.crt", &pki.read("server.crt"));
        let key = cluster.file("server.key", &pki.read("server.key"));
        let ca = cluster.file("ca.crt", &pki.read("ca.crt"));
        cluster.configure(
            &format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'",
                cert.display(),
                key.display(),
                ca.display()
            ),
            Some(
                "local all all trust\n\
                 hostssl all bc_cert 127.0.0.1/32 cert\n\
                 hostssl all all 127.0.0.1/32 scram-sha-256\n",
            ),
        );
        cluster.start_again();
        let admin = connect(&cluster.socket_url("postgres")).await;
        for statement in [
            format!("CREATE ROLE bc LOGIN PASSWORD '{PASSWORD}'"),
            "CREATE DATABASE bc OWNER bc".into(),
            "CREATE ROLE bc_cert LOGIN".into(),
            "CREATE DATABASE bc_cert OWNER bc_cert".into(),
        ] {
            admin.batch_execute(&statement).await.unwrap();
        }
        TlsCluster { cluster, pki }
    }

    /// `bc`'s URL to `host` with these query parameters.
    fn url(&self, host: &str, params: &str) -> String {
        format!(
            "postgres://bc:{PASSWORD}@{host}:{}/bc?{params}",
            self.cluster.port
        )
    }

    fn settings(&self, url: &str) -> Settings {
        let mut settings = Settings::new(url, &[SUBMITTER], &[LISTENER]);
        settings.pool_size = 2;
        settings
    }
}

#[tokio::test]
async fn tls_modes_carry_a_whole_round_trip() {
    let tls = TlsCluster::start().await;
    let ca = tls.pki.path("ca.crt");

    // require: encrypted, certificate not checked.
    let bc = instance_with(tls.settings(&tls.url("127.0.0.1", "sslmode=require"))).await;
    let mut sse = bc.stream(None).await.expect("stream");
    let waiting = bc.spawn_submit(json!({"kind": "tls", "payload": {"n": 1}}), 30.0);
    let job = sse.next_job(LONG).await.expect("the job arrives");
    assert_eq!(job["payload"]["n"], 1);
    let id = job["id"].as_i64().unwrap();
    assert_eq!(
        bc.answer(id, json!({"result": "over tls"})).await.status,
        200
    );
    let done = tokio::time::timeout(LONG, waiting).await.unwrap().unwrap();
    assert_eq!(done.status(), 200);
    let body = done.body;
    assert_eq!(body["result"], "over tls");

    // Every connection of the broker (pool, LISTEN, stream lock) is encrypted.
    let admin = connect(&tls.cluster.socket_url("postgres")).await;
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = 'bc'",
            &[],
        )
        .await
        .unwrap();
    let (encrypted, plain): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        encrypted >= 3,
        "pool, LISTEN and stream sessions: {encrypted}"
    );
    assert_eq!(plain, 0);
    drop(sse);

    // verify-full with the right CA and the certificate's host name.
    let url = tls.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let full = instance_with(tls.settings(&url)).await;
    assert!(full.submit_job("verified", json!(null)).await > id);

    // verify-ca checks the chain, not the name: 127.0.0.1 is fine.
    let url = tls.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"));
    let chain = instance_with(tls.settings(&url)).await;
    chain.submit_job("chain.only", json!(null)).await;
}

#[tokio::test]
async fn tls_refusals_say_what_failed_and_never_the_password() {
    let tls = TlsCluster::start().await;
    let ca = tls.pki.path("ca.crt");
    let other = tls.pki.path("other-ca.crt");
    let cases = [
        (
            "another CA",
            tls.url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={other}"),
            ),
            vec!["DATABASE_URL", "not signed by", "unknown CA"],
        ),
        (
            "a wrong host name",
            tls.url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            vec![
                "DATABASE_URL",
                "not valid for the host name 127.0.0.1",
                "localhost",
            ],
        ),
        (
            "require with a root certificate checks the chain (as verify-ca)",
            tls.url("127.0.0.1", &format!("sslmode=require&sslrootcert={other}")),
            vec!["DATABASE_URL", "unknown CA"],
        ),
        (
            "no TLS: the server refuses",
            tls.url("127.0.0.1", "sslmode=disable"),
            vec![
                "DATABASE_URL",
                "no pg_hba.conf entry",
                "no encryption",
                "sslmode=disable",
            ],
        ),
        (
            "a root certificate file that is not there",
            tls.url(
                "localhost",
                "sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
            ),
            vec![
                "DATABASE_URL",
                "cannot read the sslrootcert file /nonexistent/root.crt",
            ],
        ),
        (
            "verify-full without a root certificate",
            tls.url("localhost", "sslmode=verify-full"),
            vec!["DATABASE_URL", "needs sslrootcert"],
        ),
    ];
    for (what, url, words) in cases {
        let message = refused(tls.settings(&url)).await;
        for word in words {
            assert!(
                message.contains(word),
                "{what}: {word:?} missing in: {message}"
            );
        }
        assert!(
            !message.contains(PASSWORD),
            "{what}: the password is printed: {message}"
        );
    }

    // The direct URL's problems name its own variable.
    let mut settings = tls.settings(&tls.url("127.0.0.1", "sslmode=require"));
    settings.direct_database_url = Some(tls.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    ));
    let message = refused(settings).await;
    assert!(
        message.contains("BACKCHANNEL_DIRECT_DATABASE_URL"),
        "{message}"
    );
    assert!(message.contains("unknown CA"), "{message}");
    assert!(!message.contains(PASSWORD), "{message}");

    // And the program prints the same, without the password.
    let url = tls.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_backchannel"))
            .arg("serve")
            .env("DATABASE_URL", &url)
            .env("BACKCHANNEL_BIND", "127.0.0.1:0")
            .env("BACKCHANNEL_SUBMITTER_TOKENS", SUBMITTER)
            .env("BACKCHANNEL_LISTENER_TOKENS", LISTENER)
            .env("RUST_LOG", "info")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve gives up at once")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("not valid for the host name 127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[tokio::test]
async fn a_client_certificate_logs_in() {
    let tls = TlsCluster::start().await;
    let (ca, cert, key) = (
        tls.pki.path("ca.crt"),
        tls.pki.path("client.crt"),
        tls.pki.path("client.key"),
    );
    let url = format!(
        "postgres://bc_cert@localhost:{}/bc_cert?sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key}",
        tls.cluster.port
    );
    let bc = instance_with(tls.settings(&url)).await;
    let mut sse = bc.stream(None).await.expect("stream");
    let id = bc.submit_job("by.certificate", json!(1)).await;
    assert_eq!(sse.next_job(LONG).await.expect("job")["id"], id);

    let without = format!(
        "postgres://bc_cert@localhost:{}/bc_cert?sslmode=verify-full&sslrootcert={ca}",
        tls.cluster.port
    );
    let message = refused(tls.settings(&without)).await;
    assert!(message.contains("DATABASE_URL"), "{message}");
    assert!(message.contains("certificate"), "{message}");
}
