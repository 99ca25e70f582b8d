use clap::Parser;

use backchannel::config::{Cli, Command};
use backchannel::{agent, bench, cli, server, telemetry};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    telemetry::init();
    match command {
        Command::Serve(settings) => {
            let running = server::start(*settings).await?;
            server::shutdown_signal().await;
            tracing::info!("shutdown signal received");
            running.stop().await;
        }
        Command::Migrate(args) => {
            let applied = server::migrate(&args.database_url).await?;
            println!("applied {} migration(s)", applied.len());
        }
        Command::Submit(args) => cli::check_done(&cli::submit(args).await?)?,
        Command::Status(args) => cli::status(args).await?,
        Command::Agent(args) => {
            let agent = agent::Agent::new(*args)?;
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                server::shutdown_signal().await;
                tracing::info!("shutdown signal received");
                signal.cancel();
            });
            agent.run(shutdown).await;
        }
        Command::Bench(args) => bench::run(*args).await?,
    }
    Ok(())
}
