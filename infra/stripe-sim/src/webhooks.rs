//! Events and their delivery: Stripe's event envelope, Stripe's signature scheme, and the
//! delivery options tests need (each event twice; held, then released in reverse).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, Uri, header};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::{Shared, new_id, now};

/// The API version async-stripe 1.0.0-rc.10 pins (`stripe_shared::version::VERSION`); events
/// are rendered in it, as a Stripe endpoint set to that version would receive them.
pub const API_VERSION: &str = "2026-09-30.endive";

/// A delivery that gets no answer in this time is recorded as failed, so one stuck
/// receiver cannot stall the events queued behind it forever.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// `Stripe-Signature` for a payload: `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>`,
/// keyed with the whole `whsec_...` string, as Stripe signs and async-stripe verifies.
pub fn signature_header(secret: &str, timestamp: i64, payload: &str) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(format!("{timestamp}.{payload}").as_bytes());
    Some(format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// The webhook endpoint and how events reach it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// `http://host:port/path` of the receiver.
    pub url: String,
    /// The endpoint's signing secret, `whsec_...`.
    pub secret: String,
    /// Deliver every event twice (same id and body), as Stripe may.
    #[serde(default)]
    pub duplicate: bool,
    /// Hold events until `release_held`, which can deliver them newest first.
    #[serde(default)]
    pub hold: bool,
}

/// One delivery attempt and what the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub event_id: String,
    pub event_type: String,
    pub url: String,
    /// The receiver's HTTP status; None when no answer came (see `error`).
    pub status: Option<u16>,
    pub error: Option<String>,
    pub attempted_at: i64,
}

/// In what order held events are released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    Reverse,
    Created,
}

/// Who caused an event: an API request (its id and Idempotency-Key), or nobody (a payer, a
/// bank, the simulator's control API), as Stripe fills the event's `request`.
#[derive(Default)]
pub(crate) struct Origin {
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
}

pub(crate) enum Job {
    Deliver(String),
    Flush(oneshot::Sender<()>),
}

pub(crate) struct StoredEvent {
    pub id: String,
    pub kind: String,
    pub json: Value,
    /// The exact bytes delivered, every time: a redelivery is byte-identical, as Stripe's.
    pub body: String,
}

pub(crate) struct Hooks {
    pub config: Option<WebhookConfig>,
    pub events: Vec<StoredEvent>,
    pub held: Vec<String>,
    pub deliveries: Vec<Delivery>,
    jobs: mpsc::UnboundedSender<Job>,
}

impl Hooks {
    pub fn new(jobs: mpsc::UnboundedSender<Job>) -> Self {
        Hooks {
            config: None,
            events: Vec::new(),
            held: Vec::new(),
            deliveries: Vec::new(),
            jobs,
        }
    }

    /// Records an event with a snapshot of `object` and queues it for delivery.
    pub fn emit(&mut self, kind: &str, object: Value, origin: &Origin) -> String {
        self.emit_change(kind, object, None, origin)
    }

    /// An `*.updated` event: with `previous` as `data.previous_attributes`, the fields that
    /// changed and their values before.
    pub fn emit_change(
        &mut self,
        kind: &str,
        object: Value,
        previous: Option<Value>,
        origin: &Origin,
    ) -> String {
        let id = new_id("evt_", 24);
        let mut data = json!({"object": object});
        if let (Some(previous), Some(fields)) = (previous, data.as_object_mut()) {
            fields.insert("previous_attributes".to_owned(), previous);
        }
        let json = json!({
            "id": id, "object": "event", "api_version": API_VERSION, "created": now(),
            "data": data, "livemode": false,
            "pending_webhooks": usize::from(self.config.is_some()),
            "request": {"id": origin.request_id, "idempotency_key": origin.idempotency_key},
            "type": kind,
        });
        let body = json.to_string();
        self.events.push(StoredEvent {
            id: id.clone(),
            kind: kind.to_string(),
            json,
            body,
        });
        match &self.config {
            // Like Stripe, an event created while no endpoint listens is never delivered.
            None => {}
            Some(config) if config.hold => self.held.push(id.clone()),
            Some(_) => self.enqueue(&id),
        }
        id
    }

    pub fn enqueue(&self, id: &str) {
        let copies = if self.config.as_ref().is_some_and(|c| c.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            // Fails only once the simulator is stopping; nothing is left to deliver to then.
            let _ = self.jobs.send(Job::Deliver(id.to_string()));
        }
    }

    pub fn release(&mut self, order: Order) {
        let mut held = std::mem::take(&mut self.held);
        if order == Order::Reverse {
            held.reverse();
        }
        for id in held {
            self.enqueue(&id);
        }
    }

    pub fn flush_job(&self) -> oneshot::Receiver<()> {
        let (done, wait) = oneshot::channel();
        let _ = self.jobs.send(Job::Flush(done));
        wait
    }

    pub fn configure(&mut self, config: WebhookConfig) -> Result<(), ApiError> {
        if !config.secret.starts_with("whsec_") {
            return Err(ApiError::invalid(
                "secret",
                "The signing secret must start with whsec_.",
            ));
        }
        parse_target(&config.url).map_err(|message| ApiError::invalid("url", message))?;
        let releasing = self.config.as_ref().is_some_and(|c| c.hold) && !config.hold;
        self.config = Some(config);
        // Turning holding off must not strand what was held.
        if releasing {
            self.release(Order::Created);
        }
        Ok(())
    }

    pub fn event_summary(&self, id: &str) -> Option<crate::EventSummary> {
        let event = self.events.iter().find(|e| e.id == id)?;
        Some(crate::EventSummary {
            id: event.id.clone(),
            kind: event.kind.clone(),
            deliveries: self
                .deliveries
                .iter()
                .filter(|d| d.event_id == id)
                .cloned()
                .collect(),
        })
    }
}

/// Delivers queued events one at a time, in order, until the simulator stops.
pub(crate) async fn deliver(shared: Arc<Shared>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.recv().await {
        let id = match job {
            Job::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Job::Deliver(id) => id,
        };
        let prepared = {
            let store = shared.lock();
            let event = store.hooks.events.iter().find(|e| e.id == id);
            match (event, &store.hooks.config) {
                (Some(event), Some(config)) => Some((
                    event.kind.clone(),
                    event.body.clone(),
                    config.url.clone(),
                    config.secret.clone(),
                )),
                _ => None,
            }
        };
        let Some((kind, body, url, secret)) = prepared else {
            continue;
        };
        let attempted_at = now();
        let result = match signature_header(&secret, attempted_at, &body) {
            Some(signature) => post(&url, signature, body).await,
            None => Err("could not sign the event".to_string()),
        };
        let (status, error) = match result {
            Ok(status) => (Some(status), None),
            Err(error) => (None, Some(error)),
        };
        shared.lock().hooks.deliveries.push(Delivery {
            event_id: id,
            event_type: kind,
            url,
            status,
            error,
            attempted_at,
        });
    }
}

fn parse_target(url: &str) -> Result<(Uri, String, u16), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("Invalid webhook URL {url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "The webhook URL must be http:// (the simulator speaks no TLS): {url}"
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("The webhook URL has no host: {url}"))?
        .to_string();
    // A local simulator delivers to local receivers only: a mistyped URL must never send
    // signed events across a network.
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!(
            "The webhook URL must be on this machine (127.0.0.1, localhost or [::1]): {url}"
        ));
    }
    let port = uri.port_u16().unwrap_or(80);
    Ok((uri, host, port))
}

async fn post(url: &str, signature: String, body: String) -> Result<u16, String> {
    let (uri, host, port) = parse_target(url)?;
    let attempt = async {
        let stream = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        let request = Request::post(path)
            .header(header::HOST, authority)
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .header(
                header::USER_AGENT,
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            )
            .header("stripe-signature", signature)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        Ok(response.status().as_u16())
    };
    tokio::time::timeout(DELIVERY_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {} s", DELIVERY_TIMEOUT.as_secs())))
}
