//! Hold expiry. Open holds carry `gsi1pk = HOLDS#OPEN#<shard of their org>` and
//! `gsi1sk = <org>#<expires>#<hold>`; closing a hold removes both, so the index holds open
//! holds only and a read of it never grows with the holds an org ever closed.
//!
//! - Before a debit (and on may-I-run), one org's expired holds: one Query of its shard
//!   between `<org>#` and `<org>#<now>`.
//! - The scheduled sweep (the recharge function's tick): every shard, the holds expired
//!   by now. Each is released once, under its own key (`expire:<hold>`).

use agent_credits_domain::{ChangeRequest, HoldId, OrgId, StoreError, WalletStore, keys};

use crate::attr::s;
use crate::items::{self, HOLD_SHARDS, HoldRecord, hold_sk, key, org_pk};
use crate::store::{DynamoWalletStore, get_consistent, sdk_error};

/// What one pass over expired holds did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Expired {
    /// Expired holds found open.
    pub found: usize,
    /// Released by this pass (the rest were closed meanwhile).
    pub released: usize,
}

impl DynamoWalletStore {
    /// Releases the org's open holds that expired by now, each once.
    pub async fn expire_holds(&self, org: &OrgId) -> Result<Expired, StoreError> {
        let now = items::hold_time(self.now());
        let lo = format!("{org}#");
        let hi = format!("{org}#{now}");
        let found = self
            .open_holds(&items::hold_shard_pk(org), Some((&lo, &hi)), None)
            .await?;
        self.release_expired(found).await
    }

    /// The sweep: every open hold of every org that expired by now, released once.
    pub async fn sweep_expired_holds(&self) -> Result<Expired, StoreError> {
        let now = items::hold_time(self.now());
        let mut total = Expired::default();
        for shard in 0..HOLD_SHARDS {
            let found = self
                .open_holds(&format!("{}{shard}", items::HOLD_SHARD_PREFIX), None, Some(&now))
                .await?;
            let done = self.release_expired(found).await?;
            total.found += done.found;
            total.released += done.released;
        }
        Ok(total)
    }

    /// Open holds of one index partition: within a sort-key range, or expired by `now`.
    async fn open_holds(
        &self,
        partition: &str,
        range: Option<(&str, &str)>,
        expired_by: Option<&str>,
    ) -> Result<Vec<(OrgId, HoldId)>, StoreError> {
        let mut found = vec![];
        let mut start = None;
        loop {
            let mut q = self
                .client()
                .query()
                .table_name(self.table())
                .index_name("gsi1")
                .expression_attribute_values(":p", s(partition))
                .set_exclusive_start_key(start);
            q = match range {
                Some((lo, hi)) => q
                    .key_condition_expression("gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":lo", s(lo))
                    .expression_attribute_values(":hi", s(hi)),
                None => q.key_condition_expression("gsi1pk = :p"),
            };
            if let Some(now) = expired_by {
                q = q
                    .filter_expression("hold_expires <= :now")
                    .expression_attribute_values(":now", s(now));
            }
            let out = q.send().await.map_err(sdk_error)?;
            for item in out.items() {
                found.push(items::open_hold_ref(item)?);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(found),
            }
        }
    }

    async fn release_expired(&self, found: Vec<(OrgId, HoldId)>) -> Result<Expired, StoreError> {
        let mut done = Expired {
            found: found.len(),
            released: 0,
        };
        for (org, id) in found {
            let key = keys::expiry(&id);
            if let Ok(agent_credits_domain::Applied::Committed(_)) =
                self.apply(ChangeRequest::release(org, id, key)).await?
            {
                done.released += 1;
            }
        }
        Ok(done)
    }

    /// The hold named `id`, if any.
    pub async fn hold(&self, org: &OrgId, id: &HoldId) -> Result<Option<HoldRecord>, StoreError> {
        let out = get_consistent(self.client(), self.table(), key(org_pk(org), hold_sk(id))).await?;
        out.as_ref().map(items::hold_from_item).transpose()
    }
}
