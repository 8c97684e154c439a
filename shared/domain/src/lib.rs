//! agent-credits domain: exact money, the wallet with its three buckets, ledger entries,
//! and the ports (store, clock) that adapters implement. No AWS, Stripe or HTTP here.

pub mod account;
pub mod byok;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod offers;
pub mod ports;
pub mod pricing;
pub mod recharge;
pub mod settings;
pub mod wallet;

pub use account::{Action, Org, Provider, PurchasePolicy, Role, Runtime, SwitchRefused, switch_billing_mode};
pub use byok::{KeyFormatError, ProviderKey};
pub use ids::{AgentId, ApiKeyId, HoldId, IdError, IdempotencyKey, MemberId, OrgId};
pub use ledger::{
    Attribution, ChangeRequest, Direction, EntryKind, ExternalRefs, KindMismatch, LedgerEntry, Movement,
};
pub use money::{MoneyError, PositiveUsd, SignedUsd, Usd};
pub use offers::{Catalog, Choice, Offer, OfferError, Package};
pub use ports::{Clock, HistoryPage, Outcome, PageRequest, StoreError, SystemClock, WalletStore};
pub use pricing::{Markup, ModelId, ModelRate, PricingError, ProviderCost, RatePerMillion, TokenUsage};
pub use recharge::{RechargeSettings, RechargeSettingsError};
pub use settings::{BillingMode, RechargeTrigger, WalletSettings};
pub use wallet::{
    Bucket, BucketDelta, Buckets, HoldState, NotificationKind, PauseReason, PlanContext, Planned, Refusal,
    Wallet, WalletState,
};
