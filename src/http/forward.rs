//! Forwarding to the stream's holder (docs/scaling.md): an instance that
//! does not hold the stream sends its submits, reads, cancels and answers to
//! the instance that does, which runs them in its own group commits, claims
//! new jobs in their insert and wakes its waiters in memory: no
//! `NOTIFY backchannel_new`, no read back.
//!
//! The hop is `POST /v1/hop` with an [`Envelope`]: what the client asked
//! (the route, the job id, the query, the JSON body) and who it was (its
//! role, never its token), signed with the cluster secret (HMAC-SHA256 over
//! the exact bytes sent, in `X-Backchannel-Hop-Signature`). The envelope
//! names the address it was sent to and when, so that the holder refuses an
//! envelope meant for another address (a holder record rewritten to point
//! elsewhere gets nothing it could replay at the real holder) or older than
//! [`WINDOW`]. A replay within the window repeats an idempotent request: a
//! forwarded submit always carries an idempotency key.
//!
//! Whatever goes wrong on the way (the holder unreachable, slow, refusing,
//! shutting down), the instance does the work itself, as without forwarding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;
use zeroize::Zeroizing;

use super::annotate::JobId;
use super::auth::{Client, Role};
use super::error::ApiError;
use crate::broker::{Broker, Holder};
use crate::config::{Peer, Settings, check_cluster_secret};

/// How far an envelope's time may be from the receiver's clock.
pub const WINDOW: Duration = Duration::from_secs(30);
/// The header of the envelope's signature.
pub const SIGNATURE: &str = "x-backchannel-hop-signature";
/// Set on every forwarded request, and honoured on any request: an instance
/// never forwards a request that carries it (no second hop). A client that
/// sends it only keeps its request on the instance it reached.
pub const FORWARDED: &str = "x-backchannel-forwarded";
/// What the signature covers before the body: the scheme's name.
const DOMAIN: &[u8] = b"backchannel-hop/v1\n";
/// What a reply's signature covers before the request's signature, the
/// status and the body.
const REPLY_DOMAIN: &[u8] = b"backchannel-hop-reply/v1\n";
/// The envelope's size beyond the client's own body.
pub const OVERHEAD: u64 = 64 * 1024;

/// The API routes a request may be forwarded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Submit,
    Get,
    Cancel,
    Answer,
}

impl Op {
    /// The role the route is for.
    pub fn role(self) -> Role {
        match self {
            Op::Submit | Op::Get | Op::Cancel => Role::Submitter,
            Op::Answer => Role::Listener,
        }
    }

    /// The route's template, for metrics.
    pub fn route(self) -> &'static str {
        match self {
            Op::Submit => "/v1/jobs",
            Op::Get | Op::Cancel => "/v1/jobs/{id}",
            Op::Answer => "/v1/jobs/{id}/result",
        }
    }
}

/// One forwarded request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The version of this format: 1.
    pub v: u8,
    /// The advertised URL it was sent to.
    pub to: String,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub ts: i64,
    /// The forwarding instance's name, for the log.
    pub from: String,
    /// The client's role, as its token said on the forwarding instance.
    pub role: String,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub query: HashMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The channel a submit is for (absent: the default channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The channels the client's token may use, by name (absent: the
    /// default channel only, as an earlier release's envelopes mean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
}

impl Envelope {
    /// The client, as the forwarding instance checked its token.
    pub fn client(&self) -> Client {
        let role = self.op.role();
        match &self.channels {
            Some(channels) => Client {
                role,
                channels: Some(Arc::from(channels.clone())),
            },
            None => Client::of_default(role),
        }
    }
}

/// What a route forwards: its request, as validated here, its wait, and
/// who its client is.
pub struct Hop<'a> {
    pub op: Op,
    pub id: Option<&'a str>,
    pub query: &'a HashMap<String, String>,
    pub body: Option<Value>,
    pub wait: Duration,
    pub client: &'a Client,
    pub channel: Option<&'a str>,
}

/// Why a forward did not bring the holder's answer: the metric's reason.
pub type Fallback = &'static str;

/// The cluster secret, the peers, and the kept-alive connections to the holder.
pub struct Forwarder {
    secret: Zeroizing<Vec<u8>>,
    peers: Vec<Peer>,
    timeout: Duration,
    client: reqwest::Client,
    /// This instance's advertised URL (what envelopes sent here must name).
    me: Option<String>,
    instance: String,
    /// The last holder address found outside the peers (warned about once).
    warned: Mutex<Option<String>>,
    /// The largest reply read from a holder.
    reply_limit: u64,
}

impl Forwarder {
    /// The forwarder of `settings`, when forwarding is on (a cluster secret
    /// and peers); the secret file is read here.
    pub fn load(settings: &Settings) -> anyhow::Result<Option<Forwarder>> {
        if !settings.forwarding() {
            return Ok(None);
        }
        let secret = match (&settings.cluster_secret, &settings.cluster_secret_file) {
            (Some(secret), _) => secret.trim().to_string(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    anyhow::anyhow!(
                        "BACKCHANNEL_CLUSTER_SECRET_FILE {}: {error}",
                        path.display()
                    )
                })?;
                let secret = text.lines().next().unwrap_or("").trim().to_string();
                check_cluster_secret(&secret).map_err(|error| {
                    anyhow::anyhow!(
                        "BACKCHANNEL_CLUSTER_SECRET_FILE {}: {error}",
                        path.display()
                    )
                })?;
                secret
            }
            (None, None) => return Ok(None),
        };
        let client = reqwest::Client::builder()
            .connect_timeout(settings.forward_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .http1_only()
            // Straight to the peer the allow-list named, never via a proxy
            // of the environment (HTTP_PROXY, ALL_PROXY).
            .no_proxy()
            .build()?;
        Ok(Some(Forwarder {
            secret: Zeroizing::new(secret.into_bytes()),
            peers: settings.peers.clone(),
            timeout: settings.forward_timeout,
            client,
            me: None,
            instance: String::new(),
            warned: Mutex::new(None),
            reply_limit: settings.max_body.saturating_mul(2).saturating_add(OVERHEAD),
        }))
    }

    /// Once the broker knows its address and name.
    pub fn ready(mut self, broker: &Broker) -> Forwarder {
        self.me = broker.settings().advertise_url.clone();
        self.instance = broker.instance().to_string();
        self
    }

    fn mac(&self, domain: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC takes a key of any length");
        mac.update(domain);
        mac
    }

    /// The signature of `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac(DOMAIN);
        mac.update(body);
        format!(
            "v1={}",
            Base64UrlUnpadded::encode_string(&mac.finalize().into_bytes())
        )
    }

    /// The MAC of a reply to the request signed `request`: bound to that
    /// request, its status and its body.
    fn reply_mac(&self, request: &str, status: u16, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac(REPLY_DOMAIN);
        mac.update(request.as_bytes());
        mac.update(format!("\n{status}\n").as_bytes());
        mac.update(body);
        mac
    }

    /// The signature of a reply, in the reply's `X-Backchannel-Hop-Signature`:
    /// the forwarding instance relays only replies its holder signed, so an
    /// address that is not a holder can neither read a token nor answer a
    /// client.
    pub fn sign_reply(&self, request: &str, status: u16, body: &[u8]) -> String {
        let mac = self.reply_mac(request, status, body);
        format!(
            "v1={}",
            Base64UrlUnpadded::encode_string(&mac.finalize().into_bytes())
        )
    }

    fn reply_is_signed(
        &self,
        request: &str,
        status: u16,
        body: &[u8],
        signature: Option<&str>,
    ) -> bool {
        let Some(tag) = signature
            .and_then(|s| s.trim().strip_prefix("v1="))
            .and_then(|s| Base64UrlUnpadded::decode_vec(s).ok())
        else {
            return false;
        };
        self.reply_mac(request, status, body)
            .verify_slice(&tag)
            .is_ok()
    }

    /// Whether `url`'s host is one of the peers.
    pub fn allows(&self, url: &str) -> bool {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return false;
        };
        let Some(host) = parsed.host_str() else {
            return false;
        };
        self.peers.iter().any(|peer| peer.allows(host))
    }

    /// Check a received envelope: its signature, its address, its time, its
    /// form. The refusal's reason is a metric label.
    pub fn open(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Envelope, (&'static str, String)> {
        let tag = signature
            .and_then(|s| s.trim().strip_prefix("v1="))
            .and_then(|s| Base64UrlUnpadded::decode_vec(s).ok())
            .ok_or((
                "signature",
                "no valid X-Backchannel-Hop-Signature".to_string(),
            ))?;
        let mut mac = self.mac(DOMAIN);
        mac.update(body);
        mac.verify_slice(&tag).map_err(|_| {
            (
                "signature",
                "the signature does not match (another cluster secret?)".to_string(),
            )
        })?;
        let envelope: Envelope = serde_json::from_slice(body)
            .map_err(|error| ("malformed", format!("the envelope cannot be read: {error}")))?;
        if envelope.v != 1 {
            return Err(("malformed", format!("envelope version {}", envelope.v)));
        }
        if self.me.as_deref() != Some(envelope.to.as_str()) {
            return Err((
                "address",
                format!(
                    "the envelope was sent to {} (this instance is {})",
                    envelope.to,
                    self.me.as_deref().unwrap_or("not advertised")
                ),
            ));
        }
        let skew = (now_millis() - envelope.ts).unsigned_abs();
        if skew > WINDOW.as_millis() as u64 {
            return Err((
                "window",
                format!(
                    "the envelope is {} ms from this instance's clock (at most {} ms)",
                    skew,
                    WINDOW.as_millis()
                ),
            ));
        }
        if envelope.role != envelope.op.role().name() {
            return Err(("role", format!("a {} may not forward that", envelope.role)));
        }
        Ok(envelope)
    }

    /// Send `op` to the holder and bring back its answer, or say why not.
    /// The request's own `wait` extends the timeout.
    pub async fn send(
        &self,
        broker: &Broker,
        holder: &Holder,
        hop: Hop<'_>,
    ) -> Result<Response, Fallback> {
        let Hop {
            op,
            id,
            query,
            body,
            wait,
            client,
            channel,
        } = hop;
        let metrics = &broker.metrics().forward;
        if !self.allows(&holder.url) {
            self.warn_not_allowed(&holder.url);
            return Err("peer_not_allowed");
        }
        let envelope = Envelope {
            v: 1,
            to: holder.url.clone(),
            ts: now_millis(),
            from: self.instance.clone(),
            role: op.role().name().to_string(),
            op,
            id: id.map(str::to_string),
            query: query.clone(),
            body,
            channel: channel.map(str::to_string),
            channels: client.channels.as_deref().map(<[String]>::to_vec),
        };
        let bytes = serde_json::to_vec(&envelope).map_err(|_| "error")?;
        let signature = self.sign(&bytes);
        let started = Instant::now();
        let sent = self
            .client
            .post(format!("{}/v1/hop", holder.url))
            .timeout(wait + self.timeout)
            .header(header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE, &signature)
            .header(FORWARDED, &self.instance)
            .body(bytes)
            .send()
            .await;
        let outcome = match sent {
            Ok(response) => self.relay(&signature, response).await,
            Err(error) if error.is_timeout() => Err("timeout"),
            Err(error) if error.is_connect() => Err("unreachable"),
            Err(_) => Err("error"),
        };
        metrics.seconds.observe(started.elapsed().as_secs_f64());
        if let Err(reason) = outcome {
            // Not this holder for now (it is read again RETRY later, or when
            // a stream opens or closes): a holder that refuses, answers
            // unsigned or is full is not asked again for every request.
            if reason != "holder_full" {
                broker.forget_holder(&holder.url);
            }
            tracing::debug!(holder = %holder.instance, reason, "forward failed; doing it here");
        }
        outcome
    }

    fn warn_not_allowed(&self, url: &str) {
        let mut warned = self.warned.lock().expect("forward lock");
        if warned.as_deref() != Some(url) {
            tracing::warn!(
                url,
                "the stream's holder advertises an address outside BACKCHANNEL_PEERS: \
                 not forwarding there (every request is done here)"
            );
            *warned = Some(url.to_string());
        }
    }
}

impl Forwarder {
    /// The holder's answer as this instance's, or why it is not one to
    /// relay: a refused hop (a signature or address the holder does not
    /// accept), a reply not signed for this request (not from a holder), and
    /// a holder shutting down are done here instead.
    async fn relay(
        &self,
        request: &str,
        response: reqwest::Response,
    ) -> Result<Response, Fallback> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = bounded(response, self.reply_limit).await?;
        if status == StatusCode::FORBIDDEN && error_code(&body).as_deref() == Some("hop_refused") {
            return Err("refused");
        }
        let signature = headers.get(SIGNATURE).and_then(|v| v.to_str().ok());
        if !self.reply_is_signed(request, status.as_u16(), &body, signature) {
            return Err("unsigned_reply");
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            match error_code(&body).as_deref() {
                Some("shutting_down") => return Err("shutting_down"),
                // The holder's waiting places are its own: this instance has
                // room (it reserved one), so the request waits here.
                Some("too_many_waiting") => return Err("holder_full"),
                _ => {}
            }
        }
        Ok(rebuild(status, &headers, body))
    }

    /// Sign the reply to the request signed `request` (the holder's side).
    pub async fn signed(&self, request: &str, response: Response) -> Response {
        use http_body_util::BodyExt;
        let (mut parts, body) = response.into_parts();
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let signature = self.sign_reply(request, parts.status.as_u16(), &bytes);
        if let Ok(value) = HeaderValue::from_str(&signature) {
            parts.headers.insert(SIGNATURE, value);
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, bytes.into())
    }
}

/// A reply's body, refused past `limit` bytes (a reply is a job or an error).
async fn bounded(mut response: reqwest::Response, limit: u64) -> Result<Bytes, Fallback> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err("error");
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| "error")? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err("error");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn error_code(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value["error"]["code"].as_str().map(str::to_string)
}

/// The holder's response, with the headers that describe it (not those of
/// its connection).
fn rebuild(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Response {
    let id = serde_json::from_slice::<Value>(&body).ok().and_then(|job| {
        job["id"]
            .as_i64()
            .or_else(|| job["error"]["job"]["id"].as_i64())
    });
    let mut response = Response::new(body.into());
    if let Some(id) = id {
        response.extensions_mut().insert(JobId(id));
    }
    *response.status_mut() = status;
    for name in [
        header::CONTENT_TYPE,
        header::LOCATION,
        header::RETRY_AFTER,
        header::WWW_AUTHENTICATE,
        header::ALLOW,
        header::CACHE_CONTROL,
    ] {
        if let Some(value) = headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// The id of the open job a relayed `202` carries: from the signed body
/// (the access log's job id), never from an unsigned header.
pub fn job_of(response: &Response) -> Option<i64> {
    (response.status() == StatusCode::ACCEPTED)
        .then(|| response.extensions().get::<JobId>().map(|id| id.0))
        .flatten()
}

/// An idempotency key for a forwarded submit that has none: a retry of the
/// forward, or the fallback after a lost one, then finds the same job.
pub fn new_key(instance: &str) -> String {
    let random: u128 = rand::random();
    let name: String = instance
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!("hop-{name}-{random:032x}")
}

/// Whether a refusal may be logged at WARN now: at most once per 10 s.
pub fn warn_now() -> bool {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(i64::MIN);
    let now = now_millis();
    let last = LAST.load(Ordering::Relaxed);
    (last == i64::MIN || now - last >= 10_000)
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What a route's handler needs to forward: the forwarder, unless forwarding
/// is off or the request was forwarded already (or says it was).
#[derive(Clone)]
pub struct Via(Option<Arc<Forwarder>>);

impl Via {
    pub fn new(forwarder: Option<Arc<Forwarder>>, headers: &HeaderMap) -> Via {
        Via(forwarder.filter(|_| !headers.contains_key(FORWARDED)))
    }

    /// Where to forward now, if anywhere.
    pub fn target(&self, broker: &Broker) -> Option<(&Forwarder, Holder)> {
        let forwarder = self.0.as_deref()?;
        Some((forwarder, broker.forward_target()?))
    }
}

/// A refusal of a hop: 403 `hop_refused`, which the sender takes as "do it
/// yourself" (never relayed to a client).
pub fn refused(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "hop_refused", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarder(secret: &str, me: &str) -> Forwarder {
        let mut settings = Settings::new("postgres://x@127.0.0.1/x", &[], &[]);
        settings.cluster_secret = Some(secret.into());
        settings.peers = vec![crate::config::peer("127.0.0.1").unwrap()];
        let mut forwarder = Forwarder::load(&settings).unwrap().unwrap();
        forwarder.me = Some(me.into());
        forwarder
    }

    fn envelope(to: &str, ts: i64, op: Op, role: &str) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            v: 1,
            to: to.into(),
            ts,
            from: "a".into(),
            role: role.into(),
            op,
            id: None,
            query: HashMap::new(),
            body: Some(serde_json::json!({"kind": "k"})),
            channel: None,
            channels: None,
        })
        .unwrap()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const ME: &str = "http://127.0.0.1:9001";

    #[test]
    fn a_signed_envelope_for_this_address_opens() {
        let f = forwarder(SECRET, ME);
        let body = envelope(ME, now_millis(), Op::Submit, "submitter");
        let signature = f.sign(&body);
        let opened = f.open(&body, Some(&signature)).unwrap();
        assert_eq!(opened.op, Op::Submit);
    }

    #[test]
    fn refusals_say_why() {
        let f = forwarder(SECRET, ME);
        let other = forwarder(&"z".repeat(32), ME);
        let reason = |body: &[u8], signature: Option<&str>| f.open(body, signature).unwrap_err().0;

        let body = envelope(ME, now_millis(), Op::Submit, "submitter");
        assert_eq!(reason(&body, None), "signature");
        assert_eq!(reason(&body, Some("v1=AAAA")), "signature");
        assert_eq!(reason(&body, Some(&other.sign(&body))), "signature");
        // One byte changed after signing.
        let signature = f.sign(&body);
        let mut changed = body.clone();
        let at = changed.iter().position(|b| *b == b'k').unwrap();
        changed[at] = b'j';
        assert_eq!(reason(&changed, Some(&signature)), "signature");

        let elsewhere = envelope(
            "http://127.0.0.1:9002",
            now_millis(),
            Op::Submit,
            "submitter",
        );
        assert_eq!(reason(&elsewhere, Some(&f.sign(&elsewhere))), "address");

        let old = now_millis() - WINDOW.as_millis() as i64 - 1000;
        let stale = envelope(ME, old, Op::Submit, "submitter");
        assert_eq!(reason(&stale, Some(&f.sign(&stale))), "window");

        let wrong_role = envelope(ME, now_millis(), Op::Answer, "submitter");
        assert_eq!(reason(&wrong_role, Some(&f.sign(&wrong_role))), "role");
    }

    #[test]
    fn a_reply_is_relayed_only_when_signed_for_its_request() {
        let f = forwarder(SECRET, ME);
        let other = forwarder(&"z".repeat(32), ME);
        let request = f.sign(b"request one");
        let signed = f.sign_reply(&request, 200, b"{}");
        assert!(f.reply_is_signed(&request, 200, b"{}", Some(&signed)));
        assert!(!f.reply_is_signed(&request, 200, b"{}", None));
        assert!(
            !f.reply_is_signed(&request, 202, b"{}", Some(&signed)),
            "another status"
        );
        assert!(
            !f.reply_is_signed(&request, 200, b"[]", Some(&signed)),
            "another body"
        );
        let two = f.sign(b"request two");
        assert!(
            !f.reply_is_signed(&two, 200, b"{}", Some(&signed)),
            "another request"
        );
        let forged = other.sign_reply(&request, 200, b"{}");
        assert!(
            !f.reply_is_signed(&request, 200, b"{}", Some(&forged)),
            "another secret"
        );
    }

    #[test]
    fn peers_decide_where_a_forward_may_go() {
        let f = forwarder(SECRET, ME);
        assert!(f.allows("http://127.0.0.1:8080"));
        assert!(!f.allows("http://10.0.0.1:8080"));
        assert!(!f.allows("http://localhost:8080"), "names only by name");
        assert!(!f.allows("not a url"));
    }

    #[test]
    fn made_keys_are_valid_and_distinct() {
        let a = new_key("host-1/2");
        let b = new_key("host-1/2");
        assert_ne!(a, b);
        assert!(a.starts_with("hop-host-12-"));
        assert!(a.len() <= 200);
    }
}
