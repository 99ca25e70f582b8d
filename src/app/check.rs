//! `backchannel serve --check` (like `nginx -t`): everything `serve` settles
//! before it serves, without serving, binding or changing anything. The
//! settings, the token files, both URLs (connected), the direct sessions,
//! the schema's version and the runtime role's rights; one line per check,
//! naming variables, files, hosts and token ids, never a secret. And
//! `serve --check-tokens`, the token part alone (for `ExecReload=`, before
//! the SIGHUP: a set the broker would refuse fails the reload).

use std::fmt;

use deadpool_postgres::Pool;

use crate::config::{MigrateMode, Settings};
use crate::http::auth::{Role, Tokens};
use crate::store::{self, Target, schema::Version};

use super::preflight;

/// How a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Ok,
    /// Not a problem for `serve`, but worth a look (pending migrations that
    /// `BACKCHANNEL_MIGRATE=auto` will apply, a newer schema).
    Warn,
    /// `serve` would refuse to start (or fail later).
    Fail,
}

impl Mark {
    fn word(self) -> &'static str {
        match self {
            Mark::Ok => "ok",
            Mark::Warn => "warn",
            Mark::Fail => "FAIL",
        }
    }
}

/// What the checks found, in order.
#[derive(Debug)]
pub struct Report {
    /// `--check` or `--check-tokens`.
    flag: &'static str,
    pub lines: Vec<(Mark, String, String)>,
}

impl Report {
    fn new(flag: &'static str) -> Report {
        Report {
            flag,
            lines: Vec::new(),
        }
    }

    fn add(&mut self, mark: Mark, what: impl Into<String>, found: impl Into<String>) {
        self.lines.push((mark, what.into(), found.into()));
    }

    /// How many checks failed.
    pub fn problems(&self) -> usize {
        self.lines
            .iter()
            .filter(|(m, _, _)| *m == Mark::Fail)
            .count()
    }

    /// The exit code: 0 when nothing failed, 1 otherwise.
    pub fn code(&self) -> i32 {
        i32::from(self.problems() > 0)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (mark, what, found) in &self.lines {
            writeln!(f, "{:<5} {what}: {found}", mark.word())?;
        }
        let flag = self.flag;
        match self.problems() {
            0 => write!(f, "backchannel serve {flag}: ok"),
            n if flag == "--check-tokens" => write!(
                f,
                "backchannel serve {flag}: {n} problem(s); a reload would be refused"
            ),
            n => write!(
                f,
                "backchannel serve {flag}: {n} problem(s); serve would not start"
            ),
        }
    }
}

/// `serve --check`: every check, in the order `serve` meets them. A failed
/// connection skips the checks that need it.
pub async fn check(settings: &Settings) -> Report {
    let mut report = Report::new("--check");
    match settings.validate() {
        Ok(()) => report.add(
            Mark::Ok,
            "settings",
            format!(
                "valid; serve would listen on {} (not bound by --check), \
                 BACKCHANNEL_MIGRATE={}",
                settings.bind,
                migrate_word(settings.migrate)
            ),
        ),
        Err(error) => report.add(Mark::Fail, "settings", error.to_string()),
    }
    tokens(settings, &mut report);
    let pooled = target(&settings.database_url, "DATABASE_URL", &mut report);
    let direct = match &settings.direct_database_url {
        Some(url) => target(url, "BACKCHANNEL_DIRECT_DATABASE_URL", &mut report),
        None => pooled.clone(),
    };
    let pool = match &pooled {
        Some(pooled) => pool(pooled, settings, &mut report).await,
        None => None,
    };
    let schema_fine = match &direct {
        Some(direct) => database(direct, settings, &mut report).await,
        None => false,
    };
    // The pool's role is checked on its own only when it may differ from the
    // direct URL's, and once the schema it needs rights on is there.
    if let (Some(pool), Some(pooled), true) = (&pool, &pooled, schema_fine) {
        if settings.direct_database_url.is_some() {
            match preflight::pool_rights(pool, pooled).await {
                Ok(()) => report.add(
                    Mark::Ok,
                    "rights (DATABASE_URL)",
                    "the pool's role holds every right of sql/grants.sql",
                ),
                Err(error) => report.add(Mark::Fail, "rights (DATABASE_URL)", error.to_string()),
            }
        }
    }
    report
}

/// `serve --check-tokens`: the tokens and token files only, read by the
/// rules a SIGHUP applies. No connection.
pub fn check_tokens(settings: &Settings) -> Report {
    let mut report = Report::new("--check-tokens");
    tokens(settings, &mut report);
    report
}

fn migrate_word(mode: MigrateMode) -> &'static str {
    match mode {
        MigrateMode::Auto => "auto",
        MigrateMode::Check => "check",
    }
}

/// One line per role: how many tokens, their ids, where they come from.
fn tokens(settings: &Settings, report: &mut Report) {
    let tokens = match Tokens::load(settings) {
        Ok(tokens) => tokens,
        Err(error) => return report.add(Mark::Fail, "tokens", error.to_string()),
    };
    for role in Role::ALL {
        let (list, file) = match role {
            Role::Submitter => (&settings.submitter_tokens, &settings.submitter_tokens_file),
            Role::Listener => (&settings.listener_tokens, &settings.listener_tokens_file),
            Role::Monitor => (&settings.monitor_tokens, &settings.monitor_tokens_file),
        };
        let mut sources = Vec::new();
        if list.iter().any(|t| !t.trim().is_empty()) {
            sources.push(role.variable().to_owned());
        }
        if let Some(path) = file {
            sources.push(format!("{} {}", role.file_variable(), path.display()));
        }
        let ids: Vec<String> = tokens.ids(role).iter().map(|id| id.to_string()).collect();
        let found = if ids.is_empty() {
            "none".to_owned()
        } else {
            format!(
                "{} (ids {}; from {})",
                ids.len(),
                ids.join(" "),
                sources.join(", ")
            )
        };
        report.add(Mark::Ok, format!("{} tokens", role.name()), found);
    }
}

/// The URL of `variable`, read (its TLS parameters and files too).
fn target(url: &str, variable: &'static str, report: &mut Report) -> Option<Target> {
    match Target::new(url, variable) {
        Ok(target) => Some(target),
        Err(error) => {
            report.add(Mark::Fail, variable, error.to_string());
            None
        }
    }
}

/// Where a target goes, for a line: host:port, and the TLS mode.
fn place(target: &Target) -> String {
    format!(
        "{} (sslmode={})",
        store::tls::endpoints(target.config()),
        target.ssl_mode().as_str()
    )
}

/// The query pool's URL: a connection as the pool makes it (with its
/// session settings), and who it is. The pool, when it connects.
async fn pool(target: &Target, settings: &Settings, report: &mut Report) -> Option<Pool> {
    let variable = target.variable();
    let pool = match preflight::pool(target, settings).await {
        Ok(pool) => pool.pool,
        Err(error) => {
            report.add(Mark::Fail, variable, error.to_string());
            return None;
        }
    };
    let connection = match pool.get().await {
        Ok(connection) => connection,
        Err(error) => {
            report.add(Mark::Fail, variable, error.to_string());
            return None;
        }
    };
    let found = store::probe::who_and_where(&connection).await;
    drop(connection);
    match found {
        Ok(who) => report.add(
            Mark::Ok,
            variable,
            format!(
                "connected to {}: database {} as role {}, PostgreSQL {}",
                place(target),
                who.database,
                who.role,
                who.server_version
            ),
        ),
        Err(error) => report.add(
            Mark::Fail,
            variable,
            format!("connected, but a query failed: {}", target.explain(&error)),
        ),
    }
    Some(pool)
}

/// The direct URL: a real session, then the schema and the rights on it.
/// True when the schema is there and its role holds every right.
async fn database(target: &Target, settings: &Settings, report: &mut Report) -> bool {
    let what = "BACKCHANNEL_DIRECT_DATABASE_URL";
    let own = settings.direct_database_url.is_some();
    let session = match preflight::dedicated(&target.named("backchannel-check")).await {
        Ok(session) => session,
        Err(error) => {
            if own {
                report.add(Mark::Fail, what, error.to_string());
            } // else already said on DATABASE_URL's line.
            return false;
        }
    };
    let where_ = if own {
        format!("connected to {}", place(target))
    } else {
        "not set: the dedicated sessions use DATABASE_URL".to_owned()
    };
    match preflight::check_sessions(&session).await {
        Ok(()) => report.add(
            Mark::Ok,
            what,
            format!(
                "{where_}; a real session (the same backend across statements, LISTEN and \
                 session advisory locks hold)"
            ),
        ),
        Err(error) => report.add(Mark::Fail, what, format!("{where_}; {error}")),
    }
    let found = match store::schema::inspect(&session.client).await {
        Ok(found) => found,
        Err(error) => {
            let error = preflight::migration_error(&error);
            report.add(Mark::Fail, "schema", format!("cannot be read: {error}"));
            return false;
        }
    };
    schema(&found, target.variable(), settings.migrate, report)
}

/// The schema's version and the role's rights, as `serve` would judge them
/// (without migrating). True when it is there and the role holds every right.
fn schema(
    found: &store::schema::Found,
    variable: &str,
    mode: MigrateMode,
    report: &mut Report,
) -> bool {
    let needed = store::migrate::latest();
    let role = &found.role;
    if found.behind() && mode == MigrateMode::Auto {
        let at = match found.version {
            Version::At(version) => format!("at version {version}"),
            _ => "not installed".to_owned(),
        };
        report.add(
            Mark::Warn,
            "schema",
            format!(
                "{at}, this build needs {needed}: serve will apply the migrations at start \
                 (BACKCHANNEL_MIGRATE=auto), which role {role} can do only if it owns the \
                 schema or has CREATE on the database; the rights are checked after that"
            ),
        );
        return false;
    }
    match found.version {
        Version::At(version) if version > needed => report.add(
            Mark::Warn,
            "schema",
            format!(
                "at version {version}, newer than this build's {needed} (expected during a \
                 rolling upgrade; serve starts)"
            ),
        ),
        Version::At(version) if version == needed => report.add(
            Mark::Ok,
            "schema",
            format!("at version {version}, as this build needs"),
        ),
        Version::Unreadable => {}
        _ => {
            let problem = found.problem(variable).unwrap_or_default();
            report.add(Mark::Fail, "schema", problem);
            return false;
        }
    }
    if found.missing.is_empty() {
        report.add(
            Mark::Ok,
            "rights",
            format!("role {role} holds every right of sql/grants.sql"),
        );
        true
    } else {
        let problem = found.problem(variable).unwrap_or_default();
        report.add(Mark::Fail, "rights", problem);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_its_failures_and_says_so_last() {
        let mut report = Report::new("--check");
        report.add(Mark::Ok, "settings", "valid");
        report.add(Mark::Warn, "schema", "newer");
        assert_eq!(report.code(), 0);
        assert!(report.to_string().ends_with("serve --check: ok"));
        report.add(Mark::Fail, "DATABASE_URL", "db:5432: connection refused");
        assert_eq!(report.code(), 1);
        let text = report.to_string();
        assert!(text.contains("FAIL  DATABASE_URL: db:5432: connection refused"));
        assert!(
            text.ends_with("1 problem(s); serve would not start"),
            "{text}"
        );
    }

    #[test]
    fn token_lines_name_ids_and_sources_never_tokens() {
        let settings = Settings::new(
            "postgres://nobody@127.0.0.1:9/x",
            &["submitter-token-0123456789"],
            &["listener-token-0123456789"],
        );
        let text = check_tokens(&settings).to_string();
        assert!(!text.contains("token-0123456789"), "{text}");
        let id = crate::http::auth::TokenId::of("submitter-token-0123456789");
        assert!(
            text.contains(&format!(
                "ok    submitter tokens: 1 (ids {id}; from BACKCHANNEL_SUBMITTER_TOKENS)"
            )),
            "{text}"
        );
        assert!(text.contains("ok    monitor tokens: none"), "{text}");
    }
}
