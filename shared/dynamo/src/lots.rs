//! The expiry of dated credits. Each lot of a wallet's expiring credits has a marker item
//! (`LOT#<seq>`) carrying `gsi1pk = DUE#EXPIRY` and `gsi1sk = <expires_at>#<org>#<seq>`,
//! put and deleted in the same transaction as the lot itself (see the store's
//! transaction), so the index holds exactly the lots that exist.
//!
//! The sweep (the recharge function's tick, after expired holds are released) reads the
//! markers past their date and expires each org's due lots in one change, keyed by the
//! wallet version it was planned from: two sweeps that read the same version write one
//! entry, and an expiry finds nothing left to expire once another has run. What open
//! holds reserve stays until they close; the marker stays with it, for the next tick.

use std::collections::BTreeSet;

use agent_credits_domain::{ChangeRequest, OrgId, Refusal, StoreError, WalletStore, keys};

use crate::attr::Reader;
use crate::items;
use crate::store::{DynamoWalletStore, query_due};

/// What one pass over dated credits did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LotsExpired {
    /// Orgs with a lot past its date.
    pub orgs: usize,
    /// Orgs whose due credits this pass expired (the rest: held, or expired meanwhile).
    pub expired: usize,
    /// Orgs whose expiry failed: their markers stay for the next pass.
    pub errors: usize,
}

impl DynamoWalletStore {
    /// The orgs with a lot whose date has come.
    pub async fn orgs_with_due_lots(&self) -> Result<BTreeSet<OrgId>, StoreError> {
        // Markers sort by date: everything up to now, and nothing later.
        let upto = format!("{}~", items::hold_time(self.now()));
        let mut orgs = BTreeSet::new();
        for item in query_due(self.client(), self.table(), items::LOTS_DUE_PK, &upto).await? {
            // One unreadable marker must not hide the others.
            let r = Reader::new(&item);
            match r
                .s("org")
                .and_then(|o| OrgId::parse(o).map_err(|e| r.corrupt(e.to_string())))
            {
                Ok(org) => {
                    orgs.insert(org);
                }
                Err(e) => tracing::error!(error = %e, "an unreadable lot marker"),
            }
        }
        Ok(orgs)
    }

    /// Expires what the org's lots past their date have left (never what holds reserve).
    /// `true` when this call wrote the entry.
    pub async fn expire_lots(&self, org: &OrgId) -> Result<bool, StoreError> {
        let version = self.wallet(org).await?.version;
        let req = ChangeRequest::expire(org.clone(), keys::lots_expired(version));
        match self.apply(req).await? {
            Ok(applied) => Ok(!applied.replayed()),
            Err(Refusal::NothingToExpire) => Ok(false),
            Err(other) => Err(StoreError::Invalid(format!("expiring {org}'s lots: {other}"))),
        }
    }

    /// The sweep: every org with lots past their date, expired once each.
    pub async fn sweep_expired_lots(&self) -> Result<LotsExpired, StoreError> {
        let orgs = self.orgs_with_due_lots().await?;
        let mut done = LotsExpired {
            orgs: orgs.len(),
            ..LotsExpired::default()
        };
        for org in orgs {
            match self.expire_lots(&org).await {
                Ok(true) => done.expired += 1,
                Ok(false) => {}
                // One org's trouble must not stop the others.
                Err(e) => {
                    tracing::error!(%org, error = %e, "expiring dated credits failed; retried next sweep");
                    done.errors += 1;
                }
            }
        }
        Ok(done)
    }
}
