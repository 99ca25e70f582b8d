//! Least privilege: the schema is applied by its owner (`backchannel
//! migrate`, a role with CREATE on the database and nothing more), and
//! `serve` runs as a role holding only the grants of `sql/grants.sql`: no
//! CREATE anywhere, owner of nothing.

use std::process::Command;
use std::time::Duration;

use backchannel::config::{MigrateMode, Settings};
use serde_json::json;

use crate::support::*;

/// A role of the test's own, dropped after the test's database (declare it
/// before the `TestDb`: locals drop in reverse order).
struct Role(String);

impl Role {
    async fn create(what: &str) -> Role {
        let name = format!(
            "bc_{what}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE ROLE {name} LOGIN"))
            .await
            .unwrap();
        Role(name)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        as_admin_on_drop(format!("DROP ROLE IF EXISTS {}", self.0));
    }
}

/// The test database's URL for another role (the admin URL names a user).
fn url_as(db: &TestDb, role: &Role) -> String {
    let (_, rest) = db.url.split_once('@').expect("the admin URL names a user");
    format!("postgres://{}@{rest}", role.0)
}

/// `backchannel migrate ARGS` as the role of `url`: (success, stdout, stderr).
fn migrate(url: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_backchannel"))
        .arg("migrate")
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run backchannel migrate");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn serve_runs_with_only_the_documented_grants() {
    let owner = Role::create("owner").await;
    let runtime = Role::create("runtime").await;
    let db = TestDb::new().await;
    let admin = db.client().await;
    admin
        .batch_execute(&format!(
            "GRANT CREATE ON DATABASE {} TO {}",
            db.name, owner.0
        ))
        .await
        .unwrap();
    let owner_url = url_as(&db, &owner);

    // The owner reviews, applies, and grants.
    let (ok, script, stderr) = migrate(&owner_url, &["--print"]);
    assert!(ok, "{stderr}");
    assert!(script.contains("-- 001_jobs.sql") && script.contains("COMMIT;"));
    let (ok, out, stderr) = migrate(&owner_url, &[]);
    assert!(ok, "{stderr}");
    let latest = backchannel::store::migrate::latest();
    assert!(
        out.contains(&format!("applied {latest} migration(s)")),
        "{out}"
    );
    let (ok, out, _) = migrate(&owner_url, &["--print"]);
    assert!(ok && out.contains("nothing pending"), "{out}");
    let (ok, _, stderr) = migrate(&owner_url, &["--grant", &runtime.0]);
    assert!(ok, "{stderr}");

    let runtime_url = url_as(&db, &runtime);
    let rights = admin
        .query_one(
            "SELECT has_database_privilege($1, current_database(), 'CREATE'),
                    has_schema_privilege($1, 'backchannel', 'CREATE'),
                    (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'backchannel')",
            &[&runtime.0],
        )
        .await
        .unwrap();
    assert!(!rights.get::<_, bool>(0) && !rights.get::<_, bool>(1));
    assert_eq!(rights.get::<_, String>(2), owner.0);

    // serve as the runtime role (the default BACKCHANNEL_MIGRATE=auto changes
    // nothing on a current schema, so it needs no CREATE).
    let runtime_settings = || {
        let mut settings = Settings::new(&runtime_url, &[SUBMITTER], &[LISTENER]);
        settings.pool_size = 2;
        settings.retention = Duration::from_secs(1);
        settings.reaper_interval = Duration::from_secs_f64(0.2);
        settings
    };
    let a = instance_with(runtime_settings()).await;
    let b = instance_with(runtime_settings()).await;

    // A round trip.
    let mut old = a.stream(Some("castellum")).await.expect("stream");
    let waiting = a.spawn_submit(json!({"kind": "least.privilege"}), 30.0);
    let id = old.next_job(LONG).await.expect("job")["id"]
        .as_i64()
        .unwrap();
    assert_eq!(b.answer(id, json!({"result": "ok"})).await.status, 200);
    let done = tokio::time::timeout(LONG, waiting).await.unwrap().unwrap();
    assert_eq!(done.status(), 200);

    // A takeover: the same listener id replaces its stale stream
    // (pg_terminate_backend of a session of the same role).
    let mut new = b.stream(Some("castellum")).await.expect("takeover");
    assert!(old.ended(LONG).await, "the stale stream ends");
    let next = a.submit_job("after.takeover", json!(null)).await;
    assert_eq!(new.next_job(LONG).await.expect("job")["id"], next);
    drop(new);

    // An expiry by the reaper, then the delete after the retention.
    let r = a
        .submit(json!({"kind": "expires", "timeout": 0.3}), None)
        .await;
    assert_eq!(r.status, 202);
    let expiring = r.body["id"].as_i64().unwrap();
    let state = || async {
        admin
            .query_opt(
                "SELECT state::text FROM backchannel.jobs WHERE id = $1",
                &[&expiring],
            )
            .await
            .unwrap()
            .map(|row| row.get::<_, String>(0))
    };
    assert!(
        eventually(LONG, || async {
            state().await.as_deref() == Some("expired")
        })
        .await,
        "the reaper expires it"
    );
    assert!(
        eventually(LONG, || async { state().await.is_none() }).await,
        "and deletes it after the retention"
    );
    drop((a, b));

    // A right taken away: serve refuses, naming it and what to run.
    admin
        .batch_execute(&format!(
            "REVOKE DELETE ON backchannel.jobs FROM {}",
            runtime.0
        ))
        .await
        .unwrap();
    let message = refused(runtime_settings()).await;
    assert!(message.contains("DELETE on backchannel.jobs"), "{message}");
    assert!(
        message.contains(&format!("backchannel migrate --grant {}", runtime.0)),
        "{message}"
    );
    let (ok, _, stderr) = migrate(&owner_url, &["--grant", &runtime.0]);
    assert!(ok, "{stderr}");

    // The schema one version behind: serve refuses and says what to run.
    admin
        .execute(
            "DELETE FROM backchannel.schema_migrations WHERE version = $1",
            &[&latest],
        )
        .await
        .unwrap();
    let mut check = runtime_settings();
    check.migrate = MigrateMode::Check;
    let message = refused(check).await;
    let behind = format!(
        "at version {} and this build needs version {latest}",
        latest - 1
    );
    assert!(message.contains(&behind), "{message}");
    assert!(message.contains("run `backchannel migrate`"), "{message}");
    // With auto it tries, and may not: the same advice, with the reason.
    let message = refused(runtime_settings()).await;
    assert!(message.contains("may not change the schema"), "{message}");
    assert!(message.contains("42501"), "{message}");
}

#[tokio::test]
async fn every_role_serve_uses_is_checked_the_pool_s_included() {
    let owner = Role::create("owner").await;
    let pool_role = Role::create("pool").await;
    let direct_role = Role::create("direct").await;
    let db = TestDb::new().await;
    let admin = db.client().await;
    admin
        .batch_execute(&format!(
            "GRANT CREATE ON DATABASE {} TO {}",
            db.name, owner.0
        ))
        .await
        .unwrap();
    let owner_url = url_as(&db, &owner);
    let (ok, _, stderr) = migrate(&owner_url, &[]);
    assert!(ok, "{stderr}");
    for role in [&pool_role, &direct_role] {
        let (ok, _, stderr) = migrate(&owner_url, &["--grant", &role.0]);
        assert!(ok, "{stderr}");
    }
    let settings = || {
        let mut settings = Settings::new(&url_as(&db, &pool_role), &[SUBMITTER], &[LISTENER]);
        settings.direct_database_url = Some(url_as(&db, &direct_role));
        settings.migrate = MigrateMode::Check;
        settings.pool_size = 2;
        settings
    };

    // The pool's role lacks a right its submits need; the direct role has
    // every right: refused, naming the pool's role, its URL and the right.
    admin
        .batch_execute(&format!(
            "REVOKE USAGE ON SEQUENCE backchannel.jobs_id_seq FROM {}",
            pool_role.0
        ))
        .await
        .unwrap();
    let message = refused(settings()).await;
    assert!(
        message.contains("USAGE on sequence backchannel.jobs_id_seq"),
        "{message}"
    );
    assert!(
        message.contains(&format!("role {} (of DATABASE_URL)", pool_role.0)),
        "{message}"
    );
    assert!(
        message.contains(&format!("backchannel migrate --grant {}", pool_role.0)),
        "{message}"
    );
    assert!(!message.contains(&direct_role.0), "{message}");

    // The direct role lacking one: refused too, naming its own URL.
    let (ok, _, stderr) = migrate(&owner_url, &["--grant", &pool_role.0]);
    assert!(ok, "{stderr}");
    admin
        .batch_execute(&format!(
            "REVOKE SELECT ON backchannel.stream_holder FROM {}",
            direct_role.0
        ))
        .await
        .unwrap();
    let message = refused(settings()).await;
    assert!(
        message.contains(&format!(
            "role {} (of BACKCHANNEL_DIRECT_DATABASE_URL)",
            direct_role.0
        )),
        "{message}"
    );
    assert!(
        message.contains("SELECT on backchannel.stream_holder"),
        "{message}"
    );

    // Both granted: it starts, and a submit works.
    let (ok, _, stderr) = migrate(&owner_url, &["--grant", &direct_role.0]);
    assert!(ok, "{stderr}");
    let bc = instance_with(settings()).await;
    let r = bc.submit(json!({"kind": "two.roles"}), None).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
}

#[tokio::test]
async fn grant_names_a_missing_role_and_a_missing_schema() {
    let owner = Role::create("owner").await;
    let someone = Role::create("someone").await;
    let db = TestDb::new().await;
    let admin = db.client().await;
    admin
        .batch_execute(&format!(
            "GRANT CREATE ON DATABASE {} TO {}",
            db.name, owner.0
        ))
        .await
        .unwrap();
    let owner_url = url_as(&db, &owner);

    // Before the schema exists: say to migrate first.
    let (ok, _, stderr) = migrate(&owner_url, &["--grant", &someone.0]);
    assert!(!ok);
    assert!(
        stderr.contains("not (fully) installed") && stderr.contains("backchannel migrate"),
        "{stderr}"
    );

    let (ok, _, stderr) = migrate(&owner_url, &[]);
    assert!(ok, "{stderr}");
    // A role that does not exist: said so, not an ownership complaint.
    let (ok, _, stderr) = migrate(&owner_url, &["--grant", "nosuchrole"]);
    assert!(!ok);
    assert!(
        stderr.contains("role nosuchrole does not exist") && stderr.contains("CREATE ROLE"),
        "{stderr}"
    );
    assert!(!stderr.contains("owner"), "{stderr}");
    assert!(
        stderr.contains("/usr/share/doc/backchannel/docs/postgres.md")
            && stderr.contains("docs/postgres.md in the source tree"),
        "{stderr}"
    );
    // A role that may not grant (not the owner): the ownership message.
    let (ok, _, stderr) = migrate(&url_as(&db, &someone), &["--grant", &someone.0]);
    assert!(!ok);
    assert!(stderr.contains("only the owner"), "{stderr}");
    let (ok, out, stderr) = migrate(&owner_url, &["--grant", &someone.0]);
    assert!(ok, "{stderr}");
    assert!(
        out.contains("/usr/share/backchannel/sql/grants.sql"),
        "{out}"
    );
}

/// The migrations are in the binary: `migrate --print --all` works from a
/// copy of it far from the source tree, as the installed one does.
#[test]
fn migrate_print_needs_no_source_tree() {
    let dir = std::env::temp_dir().join(format!("bc-bin-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("backchannel");
    std::fs::copy(env!("CARGO_BIN_EXE_backchannel"), &copy).unwrap();
    let output = Command::new(&copy)
        .args(["migrate", "--print", "--all"])
        .current_dir("/")
        .env_clear()
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let script = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    for (_, name, sql) in backchannel::store::migrate::MIGRATIONS {
        assert!(script.contains(&format!("-- {name}")), "{name}");
        assert!(script.contains(sql.trim_end()), "{name}");
    }
    assert!(
        script.contains("/usr/share/backchannel/sql/grants.sql"),
        "{script}"
    );
}
