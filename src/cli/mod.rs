//! The command line: what each subcommand takes, and where it goes.
//!
//! - [`Cli`]: the subcommands and their arguments (clap), and [`Cli::run`];
//! - [`submit`]: `backchannel submit`, one job from a shell;
//! - [`status`]: `backchannel status`, and [`check`], its `--check` verdict
//!   for monitoring plugins;
//! - [`api`]: what `submit` and `status` share (the broker's URL, the token,
//!   its error answers);
//! - [`keys`]: `backchannel keys new|id`, sealed/v1 key files;
//! - [`migrate`]: `backchannel migrate` (apply, print, grant);
//! - [`manual`]: the man pages and shell completions, from [`Cli`] itself.
//!
//! `serve` is [`crate::app`], `agent` is [`crate::agent`].

pub mod api;
pub mod check;
pub mod keys;
pub mod manual;
pub mod migrate;
pub mod status;
pub mod submit;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::{agent, app};

/// backchannel: a private service receives jobs over one outbound SSE stream.
#[derive(Debug, Parser)]
#[command(name = "backchannel", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker (checks the schema first; BACKCHANNEL_MIGRATE=auto applies
    /// pending migrations).
    Serve(Box<ServeArgs>),
    /// Apply the migrations in sql/ as the schema's owner and exit; or print
    /// them (--print), or grant the runtime role its rights (--grant ROLE).
    Migrate(migrate::MigrateArgs),
    /// Submit one job, optionally wait, print it as JSON (exit 0 only for `done`).
    Submit(submit::SubmitArgs),
    /// Print who holds the stream and how many jobs are where.
    Status(status::StatusArgs),
    /// Make key files for sealed jobs (`keys new x25519|ed25519 --out PREFIX`)
    /// and print their key ids (`keys id FILE`).
    Keys(keys::KeysArgs),
    /// The listener side: hold the stream, forward each job to an internal
    /// HTTP endpoint, post the answer back, reconnect by itself.
    Agent(Box<agent::AgentArgs>),
    /// Load-test brokers on a scratch database and report (`make bench`); runs
    /// the `backchannel-bench` program installed next to this one.
    #[command(disable_help_flag = true)]
    Bench {
        /// Passed on to backchannel-bench (`backchannel bench --help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Write the man pages and shell completions into a folder (`make deb`).
    #[command(hide = true)]
    Manual { out: PathBuf },
}

/// `serve`: its settings, and the two checks that stop short of serving.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub settings: Settings,
    /// Check everything serve needs and exit, like `nginx -t`: settings,
    /// token files, both database URLs (connected), the sessions, the
    /// schema's version and the role's rights; one line per check, exit 0
    /// when serve would start, 1 otherwise. Never binds, serves or migrates.
    #[arg(long)]
    pub check: bool,
    /// Check only the tokens and token files, by the rules a SIGHUP reload
    /// applies, and exit 0 or 1 (no connection): run it before `kill -HUP`
    /// (ExecReload) so that a reload the broker would refuse fails.
    #[arg(long, conflicts_with = "check")]
    pub check_tokens: bool,
}

impl Cli {
    /// Run the subcommand to its end.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) if args.check => {
                let report = app::check::check(&args.settings).await;
                println!("{report}");
                std::process::exit(report.code());
            }
            Command::Serve(args) if args.check_tokens => {
                let report = app::check::check_tokens(&args.settings);
                println!("{report}");
                std::process::exit(report.code());
            }
            Command::Serve(args) => app::serve(args.settings).await?,
            Command::Migrate(args) => print!("{}", with_newline(migrate::run(args).await?)),
            Command::Submit(args) => submit::check_done(&submit::run(args).await?)?,
            Command::Status(args) => std::process::exit(status::run(args).await),
            Command::Keys(args) => println!("{}", keys::run(args)?),
            Command::Agent(args) => agent(*args).await?,
            Command::Bench { args } => return Err(bench(args)),
            Command::Manual { out } => manual::write(Cli::command(), &out)?,
        }
        Ok(())
    }
}

/// `backchannel agent`: run until SIGTERM or SIGINT.
async fn agent(args: agent::AgentArgs) -> anyhow::Result<()> {
    let agent = agent::Agent::new(args)?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        app::shutdown_signal().await;
        tracing::info!("shutdown signal received");
        signal.cancel();
    });
    agent.run(shutdown).await;
    Ok(())
}

fn with_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Replace this process with `backchannel-bench` from the same folder: the
/// load test and its dependencies (charts, histograms) stay out of the
/// production binary.
fn bench(args: Vec<OsString>) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let program = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("backchannel-bench")))
        .filter(|path| path.exists());
    let Some(program) = program else {
        return anyhow::anyhow!(
            "backchannel-bench is not installed next to this binary; build it with \
             `cargo build --release -p backchannel-bench` or run `make bench`"
        );
    };
    let error = std::process::Command::new(&program).args(args).exec();
    anyhow::Error::new(error).context(format!("cannot run {}", program.display()))
}

#[cfg(test)]
mod tests {
    use clap::builder::ValueParser;

    use super::*;
    use crate::config::SWITCH_WORDS;

    /// Every boolean setting with a variable, of every subcommand, is read by
    /// the one parser of `config::switch` (which lists `SWITCH_WORDS`).
    #[test]
    fn every_boolean_variable_takes_the_same_words() {
        let boolean = ValueParser::bool().type_id();
        let mut seen = Vec::new();
        for command in Cli::command().get_subcommands() {
            for arg in command.get_arguments() {
                if arg.get_env().is_none() || arg.get_value_parser().type_id() != boolean {
                    continue;
                }
                let words: Vec<String> = arg
                    .get_possible_values()
                    .iter()
                    .map(|value| value.get_name().to_owned())
                    .collect();
                assert_eq!(words, SWITCH_WORDS, "{:?}", arg.get_env());
                seen.push(arg.get_env().unwrap().to_string_lossy().into_owned());
            }
        }
        for variable in ["BACKCHANNEL_ACCESS_LOG", "BACKCHANNEL_ECHO"] {
            assert!(seen.iter().any(|v| v == variable), "{variable}: {seen:?}");
        }
    }
}
