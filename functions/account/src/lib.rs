//! The account function: what the dashboard calls.
//!
//! Routes (JWT-authorized; the caller is the token's `sub`):
//! - `POST   /v1/orgs`: create an org with its runtime and billing mode; the caller owns it
//! - `GET    /v1/orgs/{org}`: the org and the caller's role
//! - `GET    /v1/orgs/{org}/members`, `PUT|DELETE /v1/orgs/{org}/members/{member}`
//! - `GET    /v1/orgs/{org}/balance`: the credits card
//! - `GET    /v1/orgs/{org}/history?limit=&cursor=&kind=&member=`: entries, newest first
//! - `GET    /v1/orgs/{org}/notifications`: newest first
//!
//! Every route but `POST /v1/orgs` checks the caller's membership and role in the org of
//! the path (the matrix in `agent_credits_domain::account`): no cross-org read anywhere.

mod handler;

pub use handler::{Account, handle, routes};
