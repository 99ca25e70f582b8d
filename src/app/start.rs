//! Starting one broker instance: settings, preflight, the broker and its
//! background loops, the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::preflight;
use crate::broker::{Broker, SealGate};
use crate::config::Settings;
use crate::http::{self, access::AccessLog, auth::LiveTokens};
use crate::telemetry::systemd::Notifier;

/// A running instance: its address, its broker, and the handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub broker: Arc<Broker>,
    /// The schema's version found at start (after migrating, with `auto`).
    pub schema_version: i32,
    pub(super) shutdown: CancellationToken,
    pub(super) task: JoinHandle<()>,
    pub(super) background: Vec<JoinHandle<()>>,
}

fn instance_name(settings: &Settings) -> String {
    if let Some(id) = &settings.instance_id {
        return id.clone();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let suffix: u32 = rand::random_range(0..0x10000);
    format!("{host}-{}-{suffix:04x}", std::process::id())
}

/// Validate settings, check (or migrate) the schema, start the background
/// tasks and serve.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    start_notifying(settings, Notifier::disabled()).await
}

/// [`start`], telling systemd (through `notifier`) about each SIGHUP reload.
/// `READY=1` is the caller's, once this returned: the server listens then.
pub async fn start_notifying(settings: Settings, notifier: Notifier) -> anyhow::Result<Running> {
    settings.validate()?;
    let tokens = LiveTokens::load(&settings)?;
    let seal_gate = SealGate::load(&settings)?;
    let (pooled, direct) = preflight::targets(&settings)?;
    let schema = preflight::check_database(&direct, settings.migrate).await?;
    let pool = preflight::pool(&pooled, &settings).await?;
    preflight::pool_rights(&pool.pool, &pooled).await?;
    let shutdown = CancellationToken::new();
    let settings = Arc::new(settings);
    let broker = Broker::new(
        settings.clone(),
        pool,
        direct.named("backchannel-session"),
        instance_name(&settings),
        shutdown.clone(),
        seal_gate,
    );
    let background = broker.spawn_loops(direct.named("backchannel-listen"));

    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("cannot listen on {}", settings.bind))?;
    let addr = listener.local_addr()?;
    let metrics = broker.metrics().clone();
    let reload =
        tokens
            .clone()
            .reload_on_hangup(settings.clone(), metrics, shutdown.clone(), notifier);
    tokio::spawn(reload);
    if let Some(reload) = broker.reload_seal_signers_on_hangup(shutdown.clone()) {
        tokio::spawn(reload);
    }
    let task = tokio::spawn(serve(listener, &broker, tokens, shutdown.clone()));
    tracing::info!(
        %addr,
        instance = %broker.instance(),
        version = env!("CARGO_PKG_VERSION"),
        schema_version = schema,
        wake = ?settings.wake,
        "backchannel listening"
    );
    Ok(Running {
        addr,
        broker,
        schema_version: schema,
        shutdown,
        task,
        background,
    })
}

/// The HTTP server until shutdown and its grace period; then the state
/// changes the requests started are let finish, and the last notifications
/// leave.
fn serve(
    listener: TcpListener,
    broker: &Arc<Broker>,
    tokens: LiveTokens,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let settings = broker.settings();
    let routes = http::routes(broker.clone(), tokens.clone());
    tokens.publish(broker.metrics());
    let access = AccessLog::new(settings.access_log, broker.metrics().clone())
        .identifying(tokens.clone())
        .trusting(&settings.trusted_proxies);
    let peers = http::serve::PeerBound {
        heartbeat: settings.heartbeat,
    };
    let server = http::serve::serve(
        listener,
        routes,
        access,
        settings.header_timeout,
        peers,
        shutdown.clone(),
    );
    let grace = settings.shutdown_grace;
    let draining = broker.clone();
    async move {
        tokio::select! {
            _ = server => {}
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
            }
        }
        // The requests are done. State changes they started may still wait
        // for the database; once they are, the last notifications leave.
        draining.finish(grace).await;
    }
}
