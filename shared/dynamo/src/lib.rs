//! The DynamoDB adapter of agent-credits: implements the domain's `WalletStore` over the
//! one table described in `infra/TABLE.md` and defined in `infra/template.yaml`.

mod agents;
mod attr;
pub mod items;
mod orgs;
mod payments;
mod rates;
mod recharge;
mod store;
mod update;

pub use agents::AgentRuntime;
pub use orgs::{KeyMeta, Member, MemberChange, OrgStore};
pub use payments::{EVENT_RECEIPT_DAYS, PaymentRecord};
pub use rates::RateStore;
pub use recharge::{Claim, Due, RechargeConfig, RechargeStore};
pub use store::{DynamoWalletStore, RetryPolicy};
