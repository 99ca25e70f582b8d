use clap::Parser;

use backchannel::config::{Cli, Command};
use backchannel::{bench, server, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    match cli.command {
        Command::Serve(settings) => {
            let running = server::start(*settings).await?;
            shutdown_signal().await;
            tracing::info!("shutdown signal received");
            running.stop().await;
        }
        Command::Migrate(args) => {
            let applied = server::migrate(&args.database_url).await?;
            println!("applied {} migration(s)", applied.len());
        }
        Command::Bench(args) => bench::run(*args).await?,
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
