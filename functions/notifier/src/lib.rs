//! The notifier function: the table's stream, filtered to new notification items
//! (`NOTIF#`), in; one EventBridge event per notification out, on the deployment's bus.
//!
//! Each notification is published once:
//! 1. it is read again, consistently: gone, or already `published_at`, and it is skipped
//!    (a duplicated stream record, or a batch delivered again after a failure);
//! 2. its recipients are read: the org's owners and admins (owners only for a notice
//!    meant for them), the person of a personal account;
//! 3. `PutEvents` with the notification's kind as detail-type and a stable `event_id`
//!    (`<org>/<notification id>`) in the detail;
//! 4. `published_at` is set under `attribute_not_exists`.
//!
//! A failure at 2, 3 or 4 answers the record as failed: Lambda delivers it again, with
//! everything after it on its shard, and (bisecting, then after its retries) sends what
//! never went through to the dead-letter queue. A crash between 3 and 4 publishes the
//! event again on that retry, with the same `event_id`: consumers that must see each
//! alert once deduplicate on it. Without such a crash, each notification reaches the bus
//! once, however often the stream delivers it.

use agent_credits_aws::stream::{BatchResponse, StreamEvent, StreamRecord};
use agent_credits_domain::{Clock, OrgId, Role, StoreError};
use agent_credits_dynamo::{DynamoWalletStore, OrgStore, Outgoing};
use serde::Serialize;
use std::sync::Arc;

/// The `source` of every event this deployment publishes.
pub const SOURCE: &str = "agent-credits";

/// The notifier's settings, read once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The credits table (`TABLE_NAME`).
    pub table: String,
    /// The bus the events go to (`EVENT_BUS_NAME`).
    pub bus: String,
}

impl agent_credits_aws::settings::FromEnv for Settings {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        use agent_credits_aws::settings::required;
        Ok(Settings {
            table: required(&get, "TABLE_NAME")?,
            bus: required(&get, "EVENT_BUS_NAME")?,
        })
    }
}

pub struct Notifier {
    pub store: DynamoWalletStore,
    pub orgs: OrgStore,
    pub events: aws_sdk_eventbridge::Client,
    pub bus: String,
    pub clock: Arc<dyn Clock>,
}

/// The EventBridge client: AWS's, or `EVENTBRIDGE_ENDPOINT`'s (moto locally).
pub fn eventbridge(aws: &agent_credits_aws::SdkConfig) -> aws_sdk_eventbridge::Client {
    let mut conf = aws_sdk_eventbridge::config::Builder::from(aws);
    if let Some(endpoint) = agent_credits_aws::env("EVENTBRIDGE_ENDPOINT") {
        conf = conf.endpoint_url(endpoint);
    }
    aws_sdk_eventbridge::Client::from_conf(conf.build())
}

/// One recipient of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    pub member: String,
    pub role: &'static str,
}

/// An event's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    /// Stable across deliveries: `<org>/<notification id>`.
    pub event_id: String,
    pub org: String,
    /// `org`, or `personal` for a person's own account (`@<user>`).
    pub account: &'static str,
    pub kind: String,
    pub available_usd: String,
    pub threshold_usd: Option<String>,
    pub reason: Option<String>,
    /// The wallet version the notification was written at.
    pub seq: u64,
    pub created_at: String,
    pub recipients: Vec<Recipient>,
}

/// What publishing one notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    Now,
    /// Published before (a duplicate delivery).
    Already,
    /// Not in the table.
    Gone,
}

/// The org and notification id of a record that inserted a notification.
pub fn notification_of(record: &StreamRecord) -> Option<(OrgId, String)> {
    if record.event_name != "INSERT" {
        return None;
    }
    let (pk, sk) = record.key()?;
    let org = OrgId::parse(pk.strip_prefix("ORG#")?).ok()?;
    Some((org, sk.strip_prefix("NOTIF#")?.to_owned()))
}

/// One batch: each notification published in stream order; the first that fails is
/// delivered again, with the ones after it.
pub async fn handle(n: &Notifier, event: &StreamEvent) -> BatchResponse {
    for record in &event.records {
        let Some((org, id)) = notification_of(record) else {
            continue;
        };
        match publish(n, &org, &id).await {
            Ok(done) => tracing::info!(org = %org, notification = id, ?done, "notification"),
            Err(e) => {
                tracing::error!(org = %org, notification = id, error = %e, "not published; delivered again");
                return BatchResponse::retry_from(record);
            }
        }
    }
    BatchResponse::default()
}

/// Why a notification was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("EventBridge: {0}")]
    Bus(String),
}

/// Publishes the notification `id` of `org`, unless it was published already.
pub async fn publish(n: &Notifier, org: &OrgId, id: &str) -> Result<Published, PublishError> {
    let Some(out) = n.store.outgoing(org, id).await? else {
        return Ok(Published::Gone);
    };
    if out.published_at.is_some() {
        return Ok(Published::Already);
    }
    let detail = detail(org, &out, recipients(n, org, out.recipients.as_deref()).await?);
    let body = serde_json::to_string(&detail).map_err(|e| PublishError::Bus(e.to_string()))?;
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .event_bus_name(&n.bus)
        .source(SOURCE)
        .detail_type(&out.notification.kind)
        .detail(body)
        .resources(format!("agent-credits:org/{org}"))
        .build();
    let sent = n
        .events
        .put_events()
        .entries(entry)
        .send()
        .await
        .map_err(|e| PublishError::Bus(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string()))?;
    if sent.failed_entry_count() > 0 {
        let why = sent
            .entries()
            .iter()
            .filter_map(|e| e.error_code())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(PublishError::Bus(format!("the entry was refused: {why}")));
    }
    // Already marked means another delivery published it meanwhile: its event id is the same.
    n.store.mark_published(org, id, n.clock.now()).await?;
    Ok(Published::Now)
}

/// Who an alert is for: the owners (and admins, unless `only` is `owners`), or the person
/// whose own account it is.
async fn recipients(n: &Notifier, org: &OrgId, only: Option<&str>) -> Result<Vec<Recipient>, StoreError> {
    if let Some(person) = org.personal_owner() {
        return Ok(vec![Recipient {
            member: person.as_str().to_owned(),
            role: Role::Owner.as_str(),
        }]);
    }
    let owners_only = only == Some("owners");
    let mut members: Vec<Recipient> = n
        .orgs
        .members(org)
        .await?
        .into_iter()
        .filter(|m| m.role == Role::Owner || (m.role == Role::Admin && !owners_only))
        .map(|m| Recipient {
            member: m.id.as_str().to_owned(),
            role: m.role.as_str(),
        })
        .collect();
    members.sort_by(|a, b| a.member.cmp(&b.member));
    Ok(members)
}

/// The event's detail for notification `out` of `org`.
pub fn detail(org: &OrgId, out: &Outgoing, recipients: Vec<Recipient>) -> Detail {
    let n = &out.notification;
    Detail {
        event_id: format!("{org}/{}", n.id),
        org: org.to_string(),
        account: if org.is_personal() { "personal" } else { "org" },
        kind: n.kind.clone(),
        available_usd: n.available.to_string(),
        threshold_usd: out.threshold.map(|t| t.to_string()),
        reason: n.reason.clone(),
        seq: n.seq,
        created_at: n.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        recipients,
    }
}
