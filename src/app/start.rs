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
    let forwarder = http::forward::Forwarder::load(&settings)?;
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("cannot listen on {}", settings.bind))?;
    let addr = listener.local_addr()?;
    let mut settings = settings;
    settings.advertise_url = advertise_url(&settings, addr);
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
    // A channel not created (a read-only database) is 404 until a reload
    // or a restart creates it; the channels that exist are served.
    if let Err(error) = broker
        .ensure_channels(&tokens.current().channel_names())
        .await
    {
        tracing::warn!(%error, "could not create the channels the token files name");
    }
    tokio::spawn(keep_channels(
        broker.clone(),
        tokens.subscribe(),
        shutdown.clone(),
    ));
    let background = broker.spawn_loops(direct.named("backchannel-listen"));

    let metrics = broker.metrics().clone();
    let reload =
        tokens
            .clone()
            .reload_on_hangup(settings.clone(), metrics, shutdown.clone(), notifier);
    tokio::spawn(reload);
    if let Some(reload) = broker.reload_seal_signers_on_hangup(shutdown.clone()) {
        tokio::spawn(reload);
    }
    let forwarder = forwarder.map(|forwarder| Arc::new(forwarder.ready(&broker)));
    log_forwarding(&settings, forwarder.is_some());
    let task = tokio::spawn(serve(
        listener,
        &broker,
        tokens,
        forwarder,
        shutdown.clone(),
    ));
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

/// After every reload of the tokens (SIGHUP), create the channels the token
/// files now name. A failure is logged; a request on a channel not created
/// yet is answered 404 until the next reload (or restart) creates it.
async fn keep_channels(
    broker: Arc<Broker>,
    mut tokens: tokio::sync::watch::Receiver<Arc<crate::http::auth::Tokens>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = tokens.changed() => if changed.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let names = tokens.borrow_and_update().channel_names();
        match broker.ensure_channels(&names).await {
            Ok(()) => tracing::info!(channels = names.len(), "channels of the token files ready"),
            Err(error) => {
                tracing::error!(%error, "could not create the channels the token files name")
            }
        }
    }
}

/// The URL the other instances reach this one at: the one set, or the
/// bound address when it is not a wildcard.
fn advertise_url(settings: &Settings, bound: SocketAddr) -> Option<String> {
    if let Some(url) = &settings.advertise_url {
        return crate::config::advertised(url).ok();
    }
    (!bound.ip().is_unspecified()).then(|| format!("http://{bound}"))
}

/// Say once whether this instance forwards to the stream's holder, and why not.
fn log_forwarding(settings: &Settings, on: bool) {
    let secret = settings.cluster_secret.is_some() || settings.cluster_secret_file.is_some();
    if on {
        tracing::info!(
            advertise_url = settings.advertise_url.as_deref().unwrap_or("(none: a wildcard bind address; set BACKCHANNEL_ADVERTISE_URL to be forwarded to)"),
            peers = %settings.peers.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            "forwarding on: work goes to the stream's holder"
        );
    } else if secret || !settings.peers.is_empty() {
        tracing::warn!(
            "forwarding off: it needs both BACKCHANNEL_CLUSTER_SECRET (or _FILE) and \
             BACKCHANNEL_PEERS; every instance does its own work (docs/scaling.md)"
        );
    } else {
        tracing::info!("forwarding off: every instance does its own work (docs/scaling.md)");
    }
}

/// The HTTP server until shutdown and its grace period; then the state
/// changes the requests started are let finish, and the last notifications
/// leave.
fn serve(
    listener: TcpListener,
    broker: &Arc<Broker>,
    tokens: LiveTokens,
    forwarder: Option<Arc<http::forward::Forwarder>>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let settings = broker.settings();
    let routes = http::routes(broker.clone(), tokens.clone(), forwarder);
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
