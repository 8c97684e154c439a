//! agent-credits' Stripe adapter: [`StripeGateway`] implements the domain's
//! payment gateway ports (Checkout Sessions, off-session PaymentIntents, lookups of
//! PaymentIntents, refunds and invoices), [`metadata`] is the contract between the
//! payments we ask for and the events that credit them, and [`events`] reads Stripe's
//! signed events. Only the checkout, recharge and webhooks functions depend on it.

pub mod events;
mod gateway;
pub mod metadata;

pub use gateway::{PaymentSeen, StripeGateway, card_decline, intent};
pub use metadata::{Bought, MetadataError, PaymentMetadata};
