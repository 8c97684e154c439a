//! The usage function: what the agent runtime calls around every model call.
//!
//! Routes (IAM-authorized; see README "Auth"):
//! - `POST /v1/orgs/{org}/usage`: a call made; debit its price (or record it, BYOK)
//! - `POST /v1/orgs/{org}/holds`: reserve an estimate before a call
//! - `POST /v1/orgs/{org}/holds/{hold}/capture`: the call's actual price against its hold
//! - `POST /v1/orgs/{org}/holds/{hold}/release`: drop a hold without a charge
//! - `GET  /v1/orgs/{org}/may-i-run?member=`: allowed, or paused with a reason
//! - `PUT  /v1/rates/{model}`: set a model's token prices from a date on (operators)
//! - `POST /v1/orgs/{org}/grants`: grant credits of a kind, maybe dated (operators)
//! - `POST /v1/orgs/{org}/withdrawals/{withdrawal}/paid|failed`: settle a payout (operators)

mod grants;
mod handler;
mod holds;
mod markup;
mod payouts;
mod provider_key;
mod rates;
mod reported;
pub mod settings;
mod verdict;
pub mod views;

pub use handler::{Usage, handle, routes};
pub use settings::Settings;
