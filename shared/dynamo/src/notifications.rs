//! The org's notifications feed: read, and marked read.

use agent_credits_domain::{OrgId, StoreError};

use crate::attr::s;
use crate::items::{self, key, org_pk};
use crate::store::{DynamoWalletStore, query_prefix, sdk_error};

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
