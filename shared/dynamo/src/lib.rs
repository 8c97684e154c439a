//! The DynamoDB adapter of agent-credits: implements the domain's `WalletStore` over the
//! one table described in `infra/TABLE.md` and defined in `infra/template.yaml`.

mod agents;
mod attr;
mod daily;
mod holds;
pub mod items;
mod lots;
mod members;
mod notifications;
mod orgs;
mod payments;
mod plans;
mod rates;
mod recharge;
mod reconcile;
mod settings;
mod store;
mod update;

pub use agents::AgentRuntime;
pub use daily::{UsageByDay, Used};
pub use holds::Expired;
pub use lots::LotsExpired;
pub use members::{MonthRow, Unbilled};
pub use notifications::Outgoing;
pub use orgs::{KeyMeta, Member, MemberChange, OrgStore, Reserved};
pub use payments::{EVENT_RECEIPT_DAYS, InvoiceGrant, InvoiceRecord, PaymentRecord};
pub use plans::{GRANTS_DUE_PK, GrantsMade, MonthlyGrant, PlanLock, SubscriptionRecord};
pub use rates::RateStore;
pub use recharge::{Attempt, Card, Claim, Configured, Due, Gate, RechargeConfig, RechargeStore};
pub use reconcile::StoredWallet;
pub use store::{DynamoWalletStore, RetryPolicy};
