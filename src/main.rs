//! The command line: parse, set up logging, dispatch.

use std::ffi::OsString;

use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use backchannel::config::Settings;
use backchannel::{admin, agent, app, client, telemetry};

/// backchannel: a private service receives jobs over one outbound SSE stream.
#[derive(Debug, Parser)]
#[command(name = "backchannel", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (checks the schema first; BACKCHANNEL_MIGRATE=auto applies
    /// pending migrations).
    Serve(Box<Settings>),
    /// Apply the migrations in sql/ as the schema's owner and exit; or print
    /// them (--print), or grant the runtime role its rights (--grant ROLE).
    Migrate(admin::MigrateArgs),
    /// Submit one job, optionally wait, print it as JSON (exit 0 only for `done`).
    Submit(client::SubmitArgs),
    /// Print who holds the stream and how many jobs are where.
    Status(client::StatusArgs),
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
    Manual { out: std::path::PathBuf },
}

/// jemalloc, not the system allocator: it keeps its bookkeeping apart from the
/// memory it hands out, so a buffer a connection reserved but never wrote
/// costs no resident memory, and it returns freed pages to the system over
/// time. Measured with `make bench` (idle, 10,000 waiting requests): about a
/// third less memory per waiting request than glibc's malloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    telemetry::init();
    match command {
        Command::Serve(settings) => {
            let running = app::start(*settings).await?;
            app::shutdown_signal().await;
            tracing::info!("shutdown signal received");
            running.stop().await;
        }
        Command::Migrate(args) => print!("{}", with_newline(admin::migrate(args).await?)),
        Command::Submit(args) => client::check_done(&client::submit(args).await?)?,
        Command::Status(args) => std::process::exit(client::status(args).await),
        Command::Agent(args) => {
            let agent = agent::Agent::new(*args)?;
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                app::shutdown_signal().await;
                tracing::info!("shutdown signal received");
                signal.cancel();
            });
            agent.run(shutdown).await;
        }
        Command::Bench { args } => return Err(bench(args)),
        Command::Manual { out } => backchannel::manual::write(Cli::command(), &out)?,
    }
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
