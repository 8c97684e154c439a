//! Every idempotency key, made here and only here. A key names the business object a
//! change comes from, so that every path to the same object (the recharge function's own
//! reply and the webhook's event, a redelivery, a retry a day later) lands on the same key
//! and changes the wallet once. Two crates writing the same key by hand would be one typo
//! away from crediting a top-up twice.

use crate::ids::{HoldId, IdError, IdempotencyKey, WithdrawalId};

/// A usage report of the call `request`.
pub fn usage(request: &HoldId) -> IdempotencyKey {
    IdempotencyKey::joined("usage", request.as_str())
}

/// The reservation of hold `hold`.
pub fn hold(hold: &HoldId) -> IdempotencyKey {
    IdempotencyKey::joined("hold", hold.as_str())
}

/// The capture of hold `hold`.
pub fn capture(hold: &HoldId) -> IdempotencyKey {
    IdempotencyKey::joined("capture", hold.as_str())
}

/// The runtime's release of hold `hold`.
pub fn release(hold: &HoldId) -> IdempotencyKey {
    IdempotencyKey::joined("release", hold.as_str())
}

/// The release of hold `hold` when it expired.
pub fn expiry(hold: &HoldId) -> IdempotencyKey {
    IdempotencyKey::joined("expire", hold.as_str())
}

/// An operator's grant `grant` (its `request_id`).
pub fn grant(grant: &HoldId) -> IdempotencyKey {
    IdempotencyKey::joined("grant", grant.as_str())
}

/// The expiry of dated credits past their date, planned from wallet version `version`:
/// two sweeps that read the same version write one entry between them.
pub fn lots_expired(version: u64) -> IdempotencyKey {
    IdempotencyKey::joined("expired", &format!("v{version}"))
}

/// A creator's share of the call that `payer` was charged in its entry `seq`: earned once
/// however often the stream delivers the entry. (The entry is the call's: its idempotency
/// key maps to it one to one, and the pair stays within a key's length where the payer's
/// id and the call's key together would not.)
pub fn creator_earnings(payer: &crate::ids::OrgId, seq: u64) -> IdempotencyKey {
    // A person's own account (`@<user>`, `+` for `:`) is written in a key's alphabet as
    // `personal:<user>`: more segments than any org's `<org>:<seq>`, so never the same.
    let payer = match payer.personal_owner() {
        Some(user) => format!("personal:{user}"),
        None => payer.to_string(),
    };
    IdempotencyKey::joined("creator", &format!("{payer}:{seq}"))
}

/// The referral the referrer of `referred` earns: one per referred org, ever (its first
/// purchase credited).
pub fn referral(referred: &crate::ids::OrgId) -> IdempotencyKey {
    IdempotencyKey::joined("referral", referred.as_str())
}

/// The referral of `referred` taken back (its first purchase refunded or disputed), once.
pub fn referral_reversed(referred: &crate::ids::OrgId) -> IdempotencyKey {
    IdempotencyKey::joined("referral_reversed", referred.as_str())
}

/// An owner's withdrawal `id`: its credits leave once.
pub fn withdrawal(id: &WithdrawalId) -> IdempotencyKey {
    IdempotencyKey::joined("withdrawal", id.as_str())
}

/// The payout of withdrawal `id` made.
pub fn withdrawal_paid(id: &WithdrawalId) -> IdempotencyKey {
    IdempotencyKey::joined("withdrawal_paid", id.as_str())
}

/// The payout of withdrawal `id` failed: its credits come back once.
pub fn withdrawal_failed(id: &WithdrawalId) -> IdempotencyKey {
    IdempotencyKey::joined("withdrawal_failed", id.as_str())
}

fn stripe(kind: &str, id: &str, step: &str) -> Result<IdempotencyKey, IdError> {
    IdempotencyKey::parse(format!("stripe:{kind}:{id}{step}"))
}

/// The credit of a Stripe payment (a checkout's or an auto-recharge's PaymentIntent),
/// whichever of its events or replies comes first.
pub fn payment(payment_intent: &str) -> Result<IdempotencyKey, IdError> {
    stripe("payment", payment_intent, "")
}

/// What refund `refund` takes back.
pub fn refund(refund: &str) -> Result<IdempotencyKey, IdError> {
    stripe("refund", refund, "")
}

/// Refund `refund` failed at the bank: what it took comes back (or, when it had taken
/// nothing yet, it never will).
pub fn refund_failed(refund: &str) -> Result<IdempotencyKey, IdError> {
    stripe("refund", refund, ":failed")
}

/// Dispute `dispute` opened: the org pauses.
pub fn dispute_opened(dispute: &str) -> Result<IdempotencyKey, IdError> {
    stripe("dispute", dispute, "")
}

/// Dispute `dispute` was lost: its credits are taken back.
pub fn dispute_lost(dispute: &str) -> Result<IdempotencyKey, IdError> {
    stripe("dispute", dispute, ":lost")
}

/// Dispute `dispute` closed: its pause lifts.
pub fn dispute_closed(dispute: &str) -> Result<IdempotencyKey, IdError> {
    stripe("dispute", dispute, ":closed")
}

/// The base grant of plan invoice `invoice`.
pub fn invoice(invoice: &str) -> Result<IdempotencyKey, IdError> {
    stripe("invoice", invoice, "")
}

/// The `month`-th monthly grant (1 to 11) of annual plan invoice `invoice`, after the
/// invoice's own.
pub fn invoice_month(invoice: &str, month: u32) -> Result<IdempotencyKey, IdError> {
    stripe("invoice", invoice, &format!(":m{month}"))
}

/// Annual plan invoice `invoice`'s months to come ended (its payment went back): each
/// month's grant yields to it.
pub fn invoice_months_ended(invoice: &str) -> Result<IdempotencyKey, IdError> {
    stripe("invoice", invoice, ":ended")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_object_and_refuse_unusable_ids() {
        let h = HoldId::parse("req_1").unwrap();
        assert_eq!(usage(&h).as_str(), "usage:req_1");
        assert_eq!(capture(&h).as_str(), "capture:req_1");
        assert_eq!(payment("pi_1").unwrap().as_str(), "stripe:payment:pi_1");
        assert_eq!(
            refund_failed("re_1").unwrap().as_str(),
            "stripe:refund:re_1:failed"
        );
        assert_eq!(
            dispute_closed("dp_1").unwrap().as_str(),
            "stripe:dispute:dp_1:closed"
        );
        assert!(payment("pi 1").is_err());
        assert!(payment(&"x".repeat(300)).is_err());
        let longest = HoldId::parse("x".repeat(HoldId::MAX_LEN)).unwrap();
        assert!(IdempotencyKey::parse(capture(&longest).as_str()).is_ok());
        // Keys made from other keys and ids still read back from the table, at their
        // longest too.
        let org = crate::ids::OrgId::parse("o".repeat(crate::ids::OrgId::MAX_LEN)).unwrap();
        let wd = WithdrawalId::parse("w".repeat(WithdrawalId::MAX_LEN)).unwrap();
        for key in [
            creator_earnings(&org, u64::MAX),
            creator_earnings(
                &crate::ids::OrgId::personal(
                    &crate::ids::MemberId::parse(format!("a:{}", "b".repeat(126))).unwrap(),
                ),
                u64::MAX,
            ),
            referral(&org),
            referral_reversed(&org),
            grant(&longest),
            lots_expired(u64::MAX),
            withdrawal(&wd),
            withdrawal_paid(&wd),
            withdrawal_failed(&wd),
        ] {
            assert!(IdempotencyKey::parse(key.as_str()).is_ok(), "{key}");
        }
    }
}
