//! agent-credits domain: exact money, the wallet with its three buckets, ledger entries,
//! the business rules around them, and the ports (store, clock, payment gateway) that
//! adapters implement.
//! No AWS, Stripe or HTTP here.

pub mod account;
pub mod buckets;
pub mod byok;
pub mod change;
pub mod consumables;
pub mod daily;
pub mod grants;
pub mod ids;
pub mod keys;
pub mod ledger;
pub mod lots;
pub mod member;
pub mod money;
pub mod offers;
pub mod payments;
pub mod plans;
pub mod ports;
pub mod pricing;
pub mod recharge;
pub mod settings;
pub mod state;
pub mod verdict;
pub mod wallet;
pub mod withdrawals;

pub use account::{
    Action, Context, Member, Org, Provider, PurchasePolicy, Role, Runtime, SwitchRefused, UnknownProvider,
    switch_billing_mode,
};
pub use buckets::{Bucket, BucketDelta, Buckets};
pub use byok::{KeyFormatError, ProviderKey};
pub use change::{ChangeRequest, KindMismatch, Movement};
pub use consumables::{Consumable, Feature, UnitRate};
pub use grants::{GrantKind, GrantRefused};
pub use ids::{AgentId, ApiKeyId, HoldId, IdError, IdempotencyKey, MemberId, OrgId, WithdrawalId};
pub use ledger::{Attribution, Direction, EntryKind, ExternalRefs, LedgerEntry};
pub use lots::{Lot, Lots};
pub use member::{CounterChange, MemberMonth, month_of};
pub use money::{MoneyError, PositiveUsd, SignedUsd, Usd};
pub use offers::{Catalog, Choice, Offer, OfferError, Package, default_packages, shown_credits};
pub use payments::{
    BillingGateway, ChargeGateway, CheckoutGateway, CheckoutSession, GatewayError, Intent, IntentStatus,
    InvoiceSeen, NewCheckout, NewSubscription, OffSessionCharge, PaidInvoice, PaymentLookup, PaymentMade,
    RefundSeen, SubscriptionSeen,
};
pub use plans::{ChangeRule, Interval, Plan, Plans, ProratedLine, ProrationError};
pub use ports::{
    Clock, HistoryPage, KeySource, KeyStore, MemberLimits, MemberMonths, Notification, NotificationFeed,
    OrgDirectory, PageRequest, StoreError, Stored, SystemClock, WalletStore,
};
pub use pricing::{
    Markup, ModelId, ModelRate, PricingError, ProviderCost, Quantity, RatePerMillion, TokenUsage, UnitPrice,
};
pub use recharge::{RechargeSettings, RechargeSettingsError};
/// Keys and secrets: printed `[REDACTED]`, zeroed when dropped, read only by `expose_secret`.
pub use secrecy::{ExposeSecret, SecretString};
pub use settings::{BillingMode, RechargeTrigger, Setting, SettingChanged, SettingsChange, WalletSettings};
pub use state::{NotificationKind, PauseReason, WalletState};
pub use verdict::{
    Billing, Verdict, billing, billing_for, billing_of_call, missing_byok_key, reason_at_zero, verdict,
};
pub use wallet::{Applied, DueMark, HoldState, Outcome, PlanContext, Planned, Refusal, Wallet};
pub use withdrawals::{Payout, PayoutState, PayoutStep};
