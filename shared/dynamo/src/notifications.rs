//! The org's notifications feed: read, and marked read; and, for the notifier, each
//! notification as it is published to the event bus, and marked published.

use agent_credits_domain::{OrgId, StoreError, Usd};
use chrono::{DateTime, Utc};

use crate::attr::{Reader, s};
use crate::items::{self, key, org_pk, timestamp};
use crate::store::{DynamoWalletStore, get_consistent, query_prefix, sdk_error};

/// A notification as it leaves the system: the feed's fields, the threshold its balance
/// was measured against, who it is for, and whether it was published already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub notification: items::Notification,
    /// The low-balance threshold at the time (absent on notices that carry none).
    pub threshold: Option<Usd>,
    /// `owners` for notices meant for the owners alone; absent: owners and admins.
    pub recipients: Option<String>,
    /// When the notifier published it; absent until then.
    pub published_at: Option<String>,
}

impl DynamoWalletStore {
    /// Marks notifications read; `ids` of `None` marks every unread one. Returns how many
    /// changed; unknown ids change nothing.
    pub async fn mark_read(&self, org: &OrgId, ids: Option<&[String]>) -> Result<usize, StoreError> {
        let ids: Vec<String> = match ids {
            Some(ids) => ids.to_vec(),
            None => query_prefix(self.client(), self.table(), org_pk(org), "NOTIF#")
                .await?
                .iter()
                .map(items::notification_from_item)
                .filter(|n| n.as_ref().map_or(true, |n| !n.read))
                .map(|n| n.map(|n| n.id))
                .collect::<Result<_, _>>()?,
        };
        let mut changed = 0;
        for id in ids {
            let sent = self
                .client()
                .update_item()
                .table_name(self.table())
                .set_key(Some(key(org_pk(org), format!("NOTIF#{id}"))))
                .update_expression("SET #read = :true")
                .condition_expression("attribute_exists(pk) AND #read = :false")
                .expression_attribute_names("#read", "read")
                .expression_attribute_values(":true", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
                .expression_attribute_values(":false", aws_sdk_dynamodb::types::AttributeValue::Bool(false))
                .send()
                .await;
            match sent {
                Ok(_) => changed += 1,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(sdk_error(e)),
            }
        }
        Ok(changed)
    }

    /// The org's notifications, newest first.
    pub async fn notifications(
        &self,
        org: &OrgId,
        limit: i32,
    ) -> Result<Vec<items::Notification>, StoreError> {
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk AND begins_with(sk, :n)")
            .expression_attribute_values(":pk", s(org_pk(org)))
            .expression_attribute_values(":n", s("NOTIF#"))
            .scan_index_forward(false)
            .limit(limit)
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        out.items().iter().map(items::notification_from_item).collect()
    }
}

impl DynamoWalletStore {
    /// The notification `id` of `org` as it is now (read consistently), or `None` when it
    /// is not there.
    pub async fn outgoing(&self, org: &OrgId, id: &str) -> Result<Option<Outgoing>, StoreError> {
        let Some(item) = get_consistent(
            self.client(),
            self.table(),
            key(org_pk(org), format!("NOTIF#{id}")),
        )
        .await?
        else {
            return Ok(None);
        };
        let r = Reader::new(&item);
        Ok(Some(Outgoing {
            notification: items::notification_from_item(&item)?,
            threshold: r.opt_usd("threshold")?,
            recipients: r.opt_s("recipients")?.map(str::to_owned),
            published_at: r.opt_s("published_at")?.map(str::to_owned),
        }))
    }

    /// Records that the notification was published, once: `false` when it already was (or
    /// is not there).
    pub async fn mark_published(&self, org: &OrgId, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let sent = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(org_pk(org), format!("NOTIF#{id}"))))
            .update_expression("SET published_at = :at")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(published_at)")
            .expression_attribute_values(":at", timestamp(at))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error(e)),
        }
    }
}

impl agent_credits_domain::NotificationFeed for DynamoWalletStore {
    fn notifications<'a>(
        &'a self,
        org: &'a OrgId,
        limit: u16,
    ) -> agent_credits_domain::ports::Pending<'a, Vec<items::Notification>> {
        Box::pin(DynamoWalletStore::notifications(self, org, i32::from(limit)))
    }

    fn mark_read<'a>(
        &'a self,
        org: &'a OrgId,
        ids: Option<&'a [String]>,
    ) -> agent_credits_domain::ports::Pending<'a, usize> {
        Box::pin(DynamoWalletStore::mark_read(self, org, ids))
    }
}
