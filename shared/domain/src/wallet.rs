//! The wallet: three buckets, open holds, lifetime totals and the pause state, and the one
//! function that decides every change of it: [`Wallet::plan`].
//!
//! Balance = base + rollover + purchased. Available = balance − held, never below zero,
//! and held never above the balance. The wallet plans a change and the store commits it
//! under a condition on the version it was planned from, so what is planned here is what
//! the database holds. The plan also decides what the change does to the attributed
//! member's month ([`crate::member`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::buckets::{Bucket, BucketDelta, Buckets};
use crate::change::{ChangeRequest, Movement};
use crate::ids::{MemberId, OrgId};
use crate::ledger::{Attribution, EntryKind, LedgerEntry};
use crate::lots::{Lot, Lots};
use crate::member::{CounterChange, MemberMonth, month_of};
use crate::money::{MoneyError, SignedUsd, Usd};
use crate::settings::WalletSettings;
use crate::state::{NotificationKind, PauseReason, WalletState};

/// One org's wallet as last committed. `version` counts committed changes: each change
/// writes exactly one ledger entry whose sequence number is the new version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub org: OrgId,
    pub buckets: Buckets,
    /// The dated grants the expiring bucket holds: they sum to `buckets.expiring`.
    pub lots: Lots,
    pub held: Usd,
    /// Every credit in: purchases, auto top-ups, and what was granted.
    pub lifetime_added: Usd,
    /// The part of `lifetime_added` that nobody paid for by card (plans' base credits,
    /// grants, adjustments): reference 002's "lifetime added" is purchases and top-ups,
    /// so grants are shown apart.
    pub lifetime_granted: Usd,
    pub lifetime_spent: Usd,
    /// Dated credits that reached their date, and plans' base credits beyond the rollover
    /// cap at a new period.
    pub lifetime_expired: Usd,
    /// What went back to the card (refunds, lost disputes, operators' debits), less what
    /// a failed refund gave back.
    pub lifetime_taken_back: Usd,
    /// Earned credits paid out or waiting to be, less what failed payouts gave back.
    pub lifetime_withdrawn: Usd,
    pub state: WalletState,
    /// The disputes that paused the org and have not closed (their Stripe ids): a
    /// `disputed` pause is lifted only when the last of them closes.
    pub open_disputes: BTreeSet<String>,
    /// Held credits that money going back to the card took (a take-back takes held
    /// credits too): the open holds made before `forgiven_at` reserve this much less than
    /// their amounts say. Whichever of them closes first gives it up.
    pub forgiven: Usd,
    /// The version of the last take-back that shrank the holds.
    pub forgiven_at: u64,
    /// A `credit_balance_low` was sent and no `credit_balance_recovered` since: the one
    /// that answers it is sent when the balance is back at the threshold or over it.
    pub low: bool,
    pub version: u64,
    pub settings: WalletSettings,
}

/// Why a change was not made. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("insufficient credits: {available} available")]
    InsufficientFunds { available: Usd },
    /// The member's month has no room for the hold.
    #[error("the member's monthly limit of {limit} is reached")]
    MemberLimitReached { limit: Usd },
    /// The key was used before for a different change (or the hold id by another hold).
    #[error("the idempotency key was used for a different change")]
    IdempotencyKeyReused,
    #[error("no such hold")]
    HoldNotFound,
    #[error("the hold is already closed")]
    HoldClosed,
    /// Paused for a reason a credit does not lift (dispute, failed recharge): nothing may
    /// be reserved or spent ahead; calls already made are still charged.
    #[error("the org is paused: {}", .0.as_str())]
    Paused(PauseReason),
    /// An expiry found nothing past its date that holds leave free: nothing to write.
    #[error("nothing to expire")]
    NothingToExpire,
    /// A dated grant of a new date when the wallet has the most lots it keeps.
    #[error("the wallet has the most dated grants it keeps: grant with a date it has, or none")]
    TooManyLots,
    /// The payout a settlement names is not pending (settled before, or never made), or
    /// a new one's id is taken.
    #[error("the payout is not pending")]
    PayoutNotPending,
    /// A withdrawal asked for more earned credits than are free to leave.
    #[error("only {withdrawable} of earned credits can be withdrawn")]
    NotWithdrawable { withdrawable: Usd },
    /// The key this change yields to ([`ChangeRequest::unless`]) was used first.
    #[error("overtaken by the change it yields to")]
    Superseded,
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// A change that stands: made now, or made before under the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Committed(LedgerEntry),
    /// The idempotency key was used before for the same change: the original entry.
    Replayed(LedgerEntry),
}

impl Applied {
    pub fn entry(&self) -> &LedgerEntry {
        match self {
            Applied::Committed(e) | Applied::Replayed(e) => e,
        }
    }

    pub fn into_entry(self) -> LedgerEntry {
        match self {
            Applied::Committed(e) | Applied::Replayed(e) => e,
        }
    }

    pub fn replayed(&self) -> bool {
        matches!(self, Applied::Replayed(_))
    }
}

/// What became of a change request: it stands, or it was refused and nothing was written.
pub type Outcome = Result<Applied, Refusal>;

/// A hold as the store found it, for a change that names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldState {
    pub amount: Usd,
    pub open: bool,
    /// The member it was made for: its capture is theirs, whatever the report says.
    pub member: Option<MemberId>,
    /// The month whose counter holds its reservation (`None`: it reserved nothing there).
    pub counted_in: Option<String>,
    /// The wallet version its reservation was made at.
    pub made_at: u64,
}

/// A lifetime total that may also go down: what undoes an earlier move (a failed
/// refund's restore, a failed payout's return) takes it back. Never below zero (a wallet
/// from before the total was kept may undo more than it counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Net {
    up: Usd,
    down: Usd,
}

impl Net {
    fn apply_to_lifetime(self, total: Usd) -> Result<Usd, MoneyError> {
        Ok(total.checked_add(self.up)?.saturating_sub(self.down))
    }
}

/// Where one change's amount goes among the lifetime totals, so that always
/// `added − taken_back = balance + spent + expired + withdrawn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Flows {
    added: Usd,
    spent: Usd,
    expired: Usd,
    taken_back: Net,
    withdrawn: Net,
}

impl Flows {
    fn of(req: &ChangeRequest, amount: SignedUsd) -> Result<Flows, MoneyError> {
        let moved = amount.magnitude();
        let mut f = Flows::default();
        match req.movement() {
            // The whole grant came in; what the base lost beyond the rollover cap expired.
            Movement::Renew { grant, .. } => {
                f.added = grant;
                f.expired = Usd::try_from_decimal(grant.as_decimal() - amount.as_decimal())?;
            }
            Movement::Restore(_) => f.taken_back.down = moved,
            Movement::TakeBack { .. } => f.taken_back.up = moved,
            Movement::Expire => f.expired = moved,
            Movement::Withdraw(_) => f.withdrawn.up = moved,
            _ if req.kind() == EntryKind::WithdrawalReturned => f.withdrawn.down = moved,
            _ if !amount.is_negative() => f.added = moved,
            _ if req.kind().counts_as_spent() => f.spent = moved,
            // An operator's debit: money taken back by hand.
            _ => f.taken_back.up = moved,
        }
        Ok(f)
    }
}

/// What the plan needs besides the wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanContext {
    pub now: DateTime<Utc>,
    /// The request's hold, if it names one and the store found it.
    pub hold: Option<HoldState>,
    /// For a hold made for a member: their month and limit as read.
    pub member: Option<MemberMonth>,
    /// The key the request yields to was used.
    pub superseded: bool,
}

impl PlanContext {
    pub fn at(now: DateTime<Utc>) -> PlanContext {
        PlanContext {
            now,
            hold: None,
            member: None,
            superseded: false,
        }
    }
}

/// What a change does to the org's recharge-due mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueMark {
    Keep,
    /// Fell below the threshold with auto-recharge on: due (the first mark stands).
    Set,
    /// A fresh mark in place of the one there: a top-up that left the org still below.
    Renew,
    /// A top-up brought the org back over its threshold.
    Clear,
}

/// A change the wallet agreed to: the wallet after it, its ledger entry, and what it
/// sets off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub before: Wallet,
    pub after: Wallet,
    pub entry: LedgerEntry,
    /// Emitted in the same transaction as the change, so exactly once per crossing.
    pub notifications: Vec<NotificationKind>,
    pub due: DueMark,
    /// What the change adds to members' month counters, in the same transaction.
    pub counters: Vec<CounterChange>,
}

impl Wallet {
    /// The wallet of an org that has never had a change: nothing in it, version 0.
    pub fn empty(org: OrgId) -> Wallet {
        Wallet {
            org,
            buckets: Buckets::default(),
            lots: Lots::default(),
            held: Usd::ZERO,
            lifetime_added: Usd::ZERO,
            lifetime_granted: Usd::ZERO,
            lifetime_spent: Usd::ZERO,
            lifetime_expired: Usd::ZERO,
            lifetime_taken_back: Usd::ZERO,
            lifetime_withdrawn: Usd::ZERO,
            state: WalletState::Active,
            open_disputes: BTreeSet::new(),
            forgiven: Usd::ZERO,
            forgiven_at: 0,
            low: false,
            version: 0,
            settings: WalletSettings::default(),
        }
    }

    /// What closing the open hold `h` frees: its amount, less what a take-back already
    /// took from it (only a hold made before that take-back can have lost any). Returns
    /// the held amount and the forgiven amount after.
    fn close(&self, h: &HoldState, held: Usd, forgiven: Usd) -> (Usd, Usd) {
        let shrunk = if h.made_at < self.forgiven_at {
            h.amount.min(forgiven)
        } else {
            Usd::ZERO
        };
        (
            held.saturating_sub(h.amount.saturating_sub(shrunk)),
            forgiven.saturating_sub(shrunk),
        )
    }

    pub fn balance(&self) -> Result<Usd, MoneyError> {
        self.buckets.total()
    }

    /// Balance less open holds, never below zero.
    pub fn available(&self) -> Result<Usd, MoneyError> {
        Ok(self.balance()?.saturating_sub(self.held))
    }

    /// Earned credits that may leave now: not spent, and not reserved by open holds.
    pub fn withdrawable(&self) -> Result<Usd, MoneyError> {
        Ok(self.buckets.earned.min(self.available()?))
    }

    /// Whether every credit is accounted for, as the lifetime totals say: lifetime added −
    /// taken back = balance + spent + expired + withdrawn, and the lots are the expiring
    /// bucket. True of every wallet whose history these totals saw whole (README, "Money
    /// rules").
    pub fn accounts_for_every_credit(&self) -> Result<bool, MoneyError> {
        let d = |u: Usd| u.as_decimal();
        let came = d(self.lifetime_added) - d(self.lifetime_taken_back);
        let went = d(self.balance()?)
            + d(self.lifetime_spent)
            + d(self.lifetime_expired)
            + d(self.lifetime_withdrawn);
        Ok(came == went && self.lots.total()? == self.buckets.expiring)
    }

    /// At or below the low-balance threshold: the dashboard's Low Balance badge.
    pub fn is_low(&self) -> Result<bool, MoneyError> {
        Ok(self.available()? <= self.settings.low_threshold())
    }

    /// Plans `req` against this wallet. Pure: the store commits the result only if the
    /// wallet is still at this version.
    pub fn plan(&self, req: &ChangeRequest, ctx: &PlanContext) -> Result<Planned, Refusal> {
        if ctx.superseded {
            return Err(Refusal::Superseded);
        }
        let available = self.available()?;
        let balance = self.balance()?;
        let mut held = self.held;
        let mut forgiven = self.forgiven;
        let mut shortfall = Usd::ZERO;
        // A call already made: takes what `balance - held` leaves, up to `amount`.
        let take_up_to = |amount: Usd, held: Usd, shortfall: &mut Usd| -> Result<BucketDelta, Refusal> {
            let take = amount.min(balance.saturating_sub(held));
            *shortfall = amount.saturating_sub(take);
            self.buckets
                .split_debit(take)
                .ok_or(Refusal::InsufficientFunds { available })
        };
        // Nothing is reserved, spent ahead or paid out while a dispute (or a failed
        // recharge) pauses the org; calls already made are still charged.
        let pays_out =
            matches!(req.movement(), Movement::Withdraw(_)) || req.kind() == EntryKind::WithdrawalPaid;
        if let WalletState::Paused(reason) = self.state
            && reason != PauseReason::CreditsExhausted
            && (pays_out || matches!(req.movement(), Movement::Debit(_) | Movement::Hold { .. }))
        {
            return Err(Refusal::Paused(reason));
        }
        // An open hold gives up what it reserved, never more than is still held (a
        // take-back may have shrunk the holds).
        let open_hold = ctx.hold.as_ref().filter(|h| h.open);
        let delta = match req.movement() {
            Movement::Debit(amount) => {
                if amount.usd() > available {
                    return Err(Refusal::InsufficientFunds { available });
                }
                take_up_to(amount.usd(), held, &mut shortfall)?
            }
            Movement::DebitUpTo(amount) => take_up_to(amount.usd(), held, &mut shortfall)?,
            Movement::Credit { bucket, amount } => BucketDelta::credit(bucket, amount.usd()),
            Movement::CreditUntil { amount, .. } => BucketDelta::credit(Bucket::Expiring, amount.usd()),
            Movement::Expire => {
                // Never what open holds reserve: that waits for the next sweep.
                let expire = self.lots.due(ctx.now)?.min(available);
                if expire.is_zero() {
                    return Err(Refusal::NothingToExpire);
                }
                BucketDelta {
                    expiring: SignedUsd::debit(expire),
                    ..BucketDelta::default()
                }
            }
            Movement::Withdraw(amount) => {
                let withdrawable = self.withdrawable()?;
                if amount.usd() > withdrawable {
                    return Err(Refusal::NotWithdrawable { withdrawable });
                }
                BucketDelta {
                    earned: SignedUsd::debit(amount.usd()),
                    ..BucketDelta::default()
                }
            }
            Movement::Restore(back) => back,
            Movement::TakeBack { amount, first } => {
                let (delta, left) = self.buckets.split_take(amount.usd(), first);
                shortfall = left;
                delta
            }
            Movement::Hold { amount, .. } => {
                if amount.usd() > available {
                    return Err(Refusal::InsufficientFunds { available });
                }
                held = held.checked_add(amount.usd())?;
                BucketDelta::default()
            }
            Movement::Capture { actual } => match open_hold {
                // No hold open (it expired, was released, or was never made): the call
                // still happened, so charge it like any call already made.
                None => take_up_to(actual, held, &mut shortfall)?,
                Some(h) => {
                    (held, forgiven) = self.close(h, held, forgiven);
                    take_up_to(actual, held, &mut shortfall)?
                }
            },
            Movement::Release => match (&ctx.hold, open_hold) {
                (None, _) => return Err(Refusal::HoldNotFound),
                (Some(_), None) => return Err(Refusal::HoldClosed),
                (Some(_), Some(h)) => {
                    (held, forgiven) = self.close(h, held, forgiven);
                    BucketDelta::default()
                }
            },
            Movement::Pause(_) | Movement::Lift(_) | Movement::Note => BucketDelta::default(),
            Movement::Renew { grant, rollover_cap } => self.buckets.renewal(grant, rollover_cap, held)?,
        };
        let amount = delta.total()?;
        let buckets = self.buckets.apply(&delta)?;
        let after_balance = buckets.total()?;
        let lots = self.lots_after(req, &delta, ctx.now)?;
        if lots.total()? != buckets.expiring {
            return Err(Refusal::Money(MoneyError::Negative));
        }
        // Nothing stays held that is no longer there: money that went back to the card
        // (a take-back) shrinks the holds open now, and their captures come up short.
        let mut forgiven_at = self.forgiven_at;
        if held > after_balance {
            forgiven = forgiven.checked_add(held.saturating_sub(after_balance))?;
            forgiven_at = self.version + 1;
            held = after_balance;
        }
        let after_available = after_balance.saturating_sub(held);
        let flows = Flows::of(req, amount)?;
        // Pauses, notifications and the recharge mark follow the balance, not holds: a
        // hold that reserves everything is answered by may-I-run, and its capture or
        // release must not pause, notify or mark anything twice.
        let moved_out = amount.is_negative() || !shortfall.is_zero();
        let ran_dry = moved_out && after_available.is_zero();
        let open_disputes = self.disputes_after(req);
        let state = self.state_after(req, &open_disputes, ran_dry, after_available);
        let mut notifications = vec![];
        let threshold = self.settings.low_threshold();
        let crossed_low = balance >= threshold && after_balance < threshold;
        if crossed_low {
            notifications.push(NotificationKind::CreditBalanceLow);
        }
        // Back at the threshold or over it after a low that was sent: its answer, once.
        // (Credits that were never above the threshold, an org's first ones say, are no
        // recovery: nobody was told they were low.)
        let recovered = self.low && after_balance >= threshold;
        if recovered {
            notifications.push(NotificationKind::CreditBalanceRecovered);
        }
        let low = (self.low || crossed_low) && !recovered;
        let depleted =
            ran_dry && state != self.state && state == WalletState::Paused(PauseReason::CreditsExhausted);
        if depleted {
            notifications.push(NotificationKind::CreditBalanceDepleted);
        }
        notifications.extend(req.notification());
        let recharge_on = self.settings.recharge.enabled;
        let due = match (req.ends_recharge_due(), recharge_on) {
            // A top-up that leaves the org below its threshold keeps it due: the next
            // sweep tops it up again, within the day's cap.
            (true, true) if after_balance < self.settings.recharge.threshold => DueMark::Renew,
            (true, _) => DueMark::Clear,
            (false, true) if crossed_low || depleted => DueMark::Set,
            (false, _) => DueMark::Keep,
        };
        // A capture or release belongs to the member its hold was made for.
        let attribution = match ctx.hold.as_ref().and_then(|h| h.member.clone()) {
            Some(member) if matches!(req.movement(), Movement::Capture { .. } | Movement::Release) => {
                Attribution {
                    member: Some(member),
                    ..req.attribution().clone()
                }
            }
            _ => req.attribution().clone(),
        };
        let counters = self.counters(req, ctx, &attribution, amount, shortfall)?;
        let after = Wallet {
            org: self.org.clone(),
            buckets,
            lots,
            held,
            lifetime_added: self.lifetime_added.checked_add(flows.added)?,
            lifetime_granted: match req.kind() {
                EntryKind::Purchase | EntryKind::AutoTopUp => self.lifetime_granted,
                _ => self.lifetime_granted.checked_add(flows.added)?,
            },
            lifetime_spent: self.lifetime_spent.checked_add(flows.spent)?,
            lifetime_expired: self.lifetime_expired.checked_add(flows.expired)?,
            lifetime_taken_back: flows.taken_back.apply_to_lifetime(self.lifetime_taken_back)?,
            lifetime_withdrawn: flows.withdrawn.apply_to_lifetime(self.lifetime_withdrawn)?,
            state,
            open_disputes,
            forgiven,
            forgiven_at,
            low,
            version: self.version + 1,
            settings: self.settings,
        };
        let entry = LedgerEntry {
            org: self.org.clone(),
            seq: after.version,
            kind: req.kind(),
            amount,
            buckets: delta,
            held_change: self.held.delta_to(held),
            shortfall,
            hold: req.hold_id().cloned(),
            balance_after: after_balance,
            available_after: after_available,
            attribution,
            idempotency_key: req.key().clone(),
            external: req.external().clone(),
            note: req.note_text().map(str::to_owned),
            created_at: ctx.now,
        };
        Ok(Planned {
            before: self.clone(),
            after,
            entry,
            notifications,
            due,
            counters,
        })
    }

    /// The lots after `delta`: what it draws from the expiring bucket leaves the soonest
    /// lots; what it adds is a new lot (see [`crate::lots`]).
    fn lots_after(
        &self,
        req: &ChangeRequest,
        delta: &BucketDelta,
        now: DateTime<Utc>,
    ) -> Result<Lots, Refusal> {
        let change = delta.expiring;
        if change.is_zero() {
            return Ok(self.lots.clone());
        }
        if change.is_negative() {
            return Ok(self.lots.take(change.magnitude())?);
        }
        let seq = self.version + 1;
        let lots = match req.movement() {
            Movement::CreditUntil { amount, expires_at } => self.lots.with(Lot {
                seq,
                expires_at,
                left: amount.usd(),
            })?,
            _ => self.lots.given_back(seq, change.magnitude(), now)?,
        };
        // A new date past the most lots a wallet keeps (money given back never makes one
        // while a lot is left: it joins the latest).
        if lots.len() > crate::lots::MAX_LOTS && lots.len() > self.lots.len() {
            return Err(Refusal::TooManyLots);
        }
        Ok(lots)
    }

    /// Disputes pause by id: one that closes lifts the pause only if no other is open.
    fn disputes_after(&self, req: &ChangeRequest) -> BTreeSet<String> {
        let mut open = self.open_disputes.clone();
        match (req.movement(), req.external().dispute.as_deref()) {
            (Movement::Pause(PauseReason::Disputed), Some(id)) => {
                open.insert(id.to_owned());
            }
            (Movement::Lift(PauseReason::Disputed), Some(id)) => {
                open.remove(id);
            }
            _ => {}
        }
        open
    }

    fn state_after(
        &self,
        req: &ChangeRequest,
        open_disputes: &BTreeSet<String>,
        ran_dry: bool,
        after_available: Usd,
    ) -> WalletState {
        match (req.movement(), self.state) {
            (Movement::Pause(reason), _) => WalletState::Paused(reason),
            (Movement::Lift(PauseReason::Disputed), WalletState::Paused(PauseReason::Disputed))
                if !open_disputes.is_empty() =>
            {
                WalletState::Paused(PauseReason::Disputed)
            }
            (Movement::Lift(reason), WalletState::Paused(paused)) if paused == reason => {
                if after_available.is_zero() {
                    WalletState::Paused(PauseReason::CreditsExhausted)
                } else {
                    WalletState::Active
                }
            }
            (_, WalletState::Active) if ran_dry => WalletState::Paused(PauseReason::CreditsExhausted),
            (_, WalletState::Paused(PauseReason::CreditsExhausted)) if !after_available.is_zero() => {
                WalletState::Active
            }
            (_, state) => state,
        }
    }

    /// The member-limit rule ([`crate::member`]): what the change adds to the member's
    /// month, and whether a hold fits their room.
    fn counters(
        &self,
        req: &ChangeRequest,
        ctx: &PlanContext,
        attribution: &Attribution,
        amount: SignedUsd,
        shortfall: Usd,
    ) -> Result<Vec<CounterChange>, Refusal> {
        let Some(member) = attribution.member.clone() else {
            return Ok(vec![]);
        };
        let now = month_of(ctx.now);
        let change = |month: String, spent: Usd, held: SignedUsd| CounterChange {
            member: member.clone(),
            month,
            spent,
            held,
            at_most: None,
        };
        // What the call cost: what the wallet paid and what it could not.
        let billed = amount.magnitude().checked_add(shortfall)?;
        let open_hold = ctx.hold.as_ref().filter(|h| h.open);
        let reserved = open_hold.and_then(|h| h.counted_in.clone().map(|m| (m, h.amount)));
        let mut out = vec![];
        match req.movement() {
            Movement::Hold { amount, .. } => {
                let month = ctx.member.unwrap_or_default();
                let at_most = match month.limit {
                    None => None,
                    Some(limit) => {
                        let room = limit
                            .checked_sub(amount.usd())
                            .map_err(|_| Refusal::MemberLimitReached { limit })?;
                        if month.committed()? > room {
                            return Err(Refusal::MemberLimitReached { limit });
                        }
                        Some(room)
                    }
                };
                out.push(CounterChange {
                    at_most,
                    ..change(now, Usd::ZERO, SignedUsd::credit(amount.usd()))
                });
            }
            Movement::Debit(_) | Movement::DebitUpTo(_) if req.kind() == EntryKind::Usage => {
                out.push(change(now, billed, SignedUsd::ZERO));
            }
            Movement::Capture { .. } => match reserved {
                Some((month, held)) if month == now => {
                    out.push(change(now, billed, SignedUsd::debit(held)));
                }
                Some((month, held)) => {
                    out.push(change(now, billed, SignedUsd::ZERO));
                    out.push(change(month, Usd::ZERO, SignedUsd::debit(held)));
                }
                None => out.push(change(now, billed, SignedUsd::ZERO)),
            },
            Movement::Release => {
                if let Some((month, held)) = reserved {
                    out.push(change(month, Usd::ZERO, SignedUsd::debit(held)));
                }
            }
            _ => {}
        }
        out.retain(|c| !(c.spent.is_zero() && c.held.is_zero()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{HoldId, IdempotencyKey};
    use crate::money::PositiveUsd;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn usd(s: &str) -> Usd {
        Usd::parse(s).unwrap()
    }

    fn wallet(base: &str, rollover: &str, purchased: &str) -> Wallet {
        let mut w = Wallet::empty(OrgId::parse("org_1").unwrap());
        w.buckets = Buckets {
            base: usd(base),
            rollover: usd(rollover),
            purchased: usd(purchased),
            ..Buckets::default()
        };
        w.version = 7;
        w
    }

    fn debit(amount: &str) -> ChangeRequest {
        ChangeRequest::debit(
            OrgId::parse("org_1").unwrap(),
            EntryKind::Usage,
            PositiveUsd::parse(amount).unwrap(),
            IdempotencyKey::parse("usage:r1").unwrap(),
        )
        .unwrap()
    }

    fn credit(bucket: Bucket, amount: &str) -> ChangeRequest {
        let kind = if bucket == Bucket::Base {
            EntryKind::PlanGrant
        } else {
            EntryKind::Purchase
        };
        ChangeRequest::credit(
            OrgId::parse("org_1").unwrap(),
            kind,
            bucket,
            PositiveUsd::parse(amount).unwrap(),
            IdempotencyKey::parse("k").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn debit_draws_base_then_rollover_then_purchased() {
        let p = wallet("1.00", "2.00", "3.00")
            .plan(&debit("2.50"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(
            p.after.buckets,
            Buckets {
                base: usd("0"),
                rollover: usd("0.50"),
                purchased: usd("3.00"),
                ..Buckets::default()
            }
        );
        assert_eq!(p.entry.amount, SignedUsd::debit(usd("2.50")));
        assert_eq!(p.entry.balance_after, usd("3.50"));
        assert_eq!(p.entry.seq, 8);
        assert_eq!(p.after.lifetime_spent, usd("2.50"));
    }

    #[test]
    fn debit_beyond_available_is_refused_with_the_available_amount() {
        let mut w = wallet("0", "0", "5.00");
        w.held = usd("4.00");
        assert_eq!(
            w.plan(&debit("1.01"), &PlanContext::at(Utc::now())),
            Err(Refusal::InsufficientFunds {
                available: usd("1.00")
            })
        );
        assert!(w.plan(&debit("1.00"), &PlanContext::at(Utc::now())).is_ok());
    }

    #[test]
    fn reaching_zero_pauses_and_a_credit_resumes() {
        let p = wallet("0", "0", "0.07")
            .plan(&debit("0.07"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p.after.state, WalletState::Paused(PauseReason::CreditsExhausted));
        let p2 = p
            .after
            .plan(&credit(Bucket::Purchased, "100"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p2.after.state, WalletState::Active);
        assert_eq!(p2.after.lifetime_added, usd("100"));
        assert_eq!(p2.after.lifetime_granted, usd("0"), "a purchase is not a grant");
        let granted = ChangeRequest::credit(
            OrgId::parse("org_1").unwrap(),
            EntryKind::Grant,
            Bucket::Purchased,
            PositiveUsd::parse("5").unwrap(),
            IdempotencyKey::parse("grant:g_1").unwrap(),
        )
        .unwrap();
        let p3 = p2.after.plan(&granted, &PlanContext::at(Utc::now())).unwrap();
        assert_eq!(
            (p3.after.lifetime_added, p3.after.lifetime_granted),
            (usd("105"), usd("5"))
        );
    }

    #[test]
    fn a_dispute_pause_survives_a_credit() {
        let mut w = wallet("0", "0", "0");
        w.state = WalletState::Paused(PauseReason::Disputed);
        let p = w
            .plan(&credit(Bucket::Purchased, "10"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p.after.state, WalletState::Paused(PauseReason::Disputed));
    }

    #[test]
    fn credits_land_in_the_named_bucket() {
        let p = wallet("0", "0", "0")
            .plan(&credit(Bucket::Base, "5"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p.after.buckets.base, usd("5"));
        assert_eq!(p.entry.buckets.base, SignedUsd::credit(usd("5")));
    }

    fn hold_ctx(amount: &str, open: bool) -> PlanContext {
        PlanContext {
            hold: Some(HoldState {
                amount: usd(amount),
                open,
                member: None,
                counted_in: None,
                made_at: 1,
            }),
            ..PlanContext::at(Utc::now())
        }
    }

    fn hold_id() -> crate::ids::HoldId {
        crate::ids::HoldId::parse("h1").unwrap()
    }

    #[test]
    fn a_post_call_debit_takes_what_is_there_and_records_the_shortfall() {
        let req = ChangeRequest::usage(
            OrgId::parse("org_1").unwrap(),
            PositiveUsd::parse("0.50").unwrap(),
            IdempotencyKey::parse("u").unwrap(),
        );
        let p = wallet("0", "0", "0.30")
            .plan(&req, &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p.entry.amount, SignedUsd::debit(usd("0.30")));
        assert_eq!(p.entry.shortfall, usd("0.20"));
        assert_eq!(p.after.balance().unwrap(), Usd::ZERO);
        assert_eq!(p.after.state, WalletState::Paused(PauseReason::CreditsExhausted));
        assert!(p.notifications.contains(&NotificationKind::CreditBalanceDepleted));
    }

    #[test]
    fn a_hold_reserves_and_a_smaller_capture_releases_the_rest() {
        let org = OrgId::parse("org_1").unwrap();
        let w = wallet("0", "0", "5.00");
        let hold = ChangeRequest::hold(
            org.clone(),
            hold_id(),
            PositiveUsd::parse("2.00").unwrap(),
            Utc::now(),
            IdempotencyKey::parse("hold:h1").unwrap(),
        );
        let p = w.plan(&hold, &PlanContext::at(Utc::now())).unwrap();
        assert_eq!(p.after.held, usd("2.00"));
        assert_eq!(p.after.available().unwrap(), usd("3.00"));
        assert!(p.entry.amount.is_zero());
        assert_eq!(p.entry.held_change, SignedUsd::credit(usd("2.00")));

        let capture = ChangeRequest::capture(
            org,
            hold_id(),
            usd("1.25"),
            IdempotencyKey::parse("capture:h1").unwrap(),
        );
        let c = p.after.plan(&capture, &hold_ctx("2.00", true)).unwrap();
        assert_eq!(c.after.held, Usd::ZERO);
        assert_eq!(c.after.balance().unwrap(), usd("3.75"));
        assert_eq!(c.entry.held_change, SignedUsd::debit(usd("2.00")));
        assert!(c.entry.shortfall.is_zero());
    }

    #[test]
    fn a_capture_beyond_the_hold_takes_only_what_is_available() {
        let org = OrgId::parse("org_1").unwrap();
        let mut w = wallet("0", "0", "3.00");
        w.held = usd("2.00");
        let capture =
            ChangeRequest::capture(org, hold_id(), usd("4.00"), IdempotencyKey::parse("c").unwrap());
        let c = w.plan(&capture, &hold_ctx("2.00", true)).unwrap();
        assert_eq!(c.entry.amount, SignedUsd::debit(usd("3.00")));
        assert_eq!(c.entry.shortfall, usd("1.00"));
        assert_eq!(c.after.balance().unwrap(), Usd::ZERO);
        assert_eq!(c.after.held, Usd::ZERO);
    }

    #[test]
    fn a_hold_beyond_available_is_refused_and_releasing_a_closed_hold_too() {
        let org = OrgId::parse("org_1").unwrap();
        let w = wallet("0", "0", "1.00");
        let hold = ChangeRequest::hold(
            org.clone(),
            hold_id(),
            PositiveUsd::parse("1.01").unwrap(),
            Utc::now(),
            IdempotencyKey::parse("h").unwrap(),
        );
        assert_eq!(
            w.plan(&hold, &PlanContext::at(Utc::now())),
            Err(Refusal::InsufficientFunds {
                available: usd("1.00")
            })
        );
        let release = ChangeRequest::release(org, hold_id(), IdempotencyKey::parse("r").unwrap());
        assert_eq!(w.plan(&release, &hold_ctx("1", false)), Err(Refusal::HoldClosed));
        assert_eq!(
            w.plan(&release, &PlanContext::at(Utc::now())),
            Err(Refusal::HoldNotFound)
        );
    }

    #[test]
    fn falling_below_the_threshold_notifies_once_and_marks_recharge_due() {
        let mut w = wallet("0", "0", "20.05");
        w.settings.recharge = crate::settings::RechargeTrigger {
            enabled: true,
            threshold: usd("20"),
        };
        let first = w.plan(&debit("0.07"), &PlanContext::at(Utc::now())).unwrap();
        assert_eq!(first.notifications, vec![NotificationKind::CreditBalanceLow]);
        assert_eq!(first.due, DueMark::Set);
        let second = first
            .after
            .plan(&debit("0.07"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert!(second.notifications.is_empty(), "once per crossing");
        assert_eq!(second.due, DueMark::Keep);
    }

    #[test]
    fn recovered_only_answers_a_low_that_was_sent() {
        // Bought $5, then $20: never above the threshold before, never told it was low.
        let w = wallet("0", "0", "0");
        let five = w
            .plan(&credit(Bucket::Purchased, "5"), &PlanContext::at(Utc::now()))
            .unwrap();
        let more = five
            .after
            .plan(&credit(Bucket::Purchased, "20"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert!(
            more.notifications.is_empty(),
            "no low was sent: {:?}",
            more.notifications
        );
        // Low, then back: once each, and the flag goes with them.
        let low = more
            .after
            .plan(&debit("10"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(low.notifications, vec![NotificationKind::CreditBalanceLow]);
        assert!(low.after.low);
        let back = low
            .after
            .plan(&credit(Bucket::Purchased, "10"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(back.notifications, vec![NotificationKind::CreditBalanceRecovered]);
        assert!(!back.after.low);
    }

    #[test]
    fn climbing_back_over_the_threshold_notifies_recovered_once() {
        let w = wallet("0", "0", "20.05");
        let low = w.plan(&debit("0.10"), &PlanContext::at(Utc::now())).unwrap();
        assert_eq!(low.notifications, vec![NotificationKind::CreditBalanceLow]);
        // A credit that stays below the threshold is no recovery.
        let still_low = low
            .after
            .plan(&credit(Bucket::Purchased, "0.01"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert!(still_low.notifications.is_empty());
        let back = still_low
            .after
            .plan(&credit(Bucket::Purchased, "0.04"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(back.notifications, vec![NotificationKind::CreditBalanceRecovered]);
        let above = back
            .after
            .plan(&credit(Bucket::Purchased, "5"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert!(above.notifications.is_empty(), "once per climb");
        let first = wallet("0", "0", "0")
            .plan(&credit(Bucket::Purchased, "25"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert!(
            first.notifications.is_empty(),
            "an org's first credits are no recovery"
        );
    }

    #[test]
    fn a_new_plan_period_rolls_unused_base_over_up_to_the_cap() {
        let renew = |grant: &str, cap: &str| {
            ChangeRequest::renew_plan(
                OrgId::parse("org_1").unwrap(),
                usd(grant),
                usd(cap),
                IdempotencyKey::parse("stripe:invoice:in_1").unwrap(),
            )
        };
        // $30 of base unused, $80 already rolled over, cap $100: $20 rolls, $10 expires.
        let p = wallet("30", "80", "5")
            .plan(&renew("50", "100"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(
            p.after.buckets,
            Buckets {
                base: usd("50"),
                rollover: usd("100"),
                purchased: usd("5"),
                ..Buckets::default()
            }
        );
        assert_eq!(p.entry.amount, SignedUsd::credit(usd("40")));
        assert_eq!(p.entry.kind, EntryKind::PlanGrant);
        // Base never expires below what open holds need.
        let mut w = wallet("30", "100", "0");
        w.held = usd("140");
        let p = w.plan(&renew("20", "100"), &PlanContext::at(Utc::now())).unwrap();
        assert_eq!(p.after.balance().unwrap(), usd("140"));
        assert_eq!(p.after.buckets.base, usd("40"));
    }

    #[test]
    fn a_disputed_org_resumes_only_when_its_last_open_dispute_closes() {
        let org = OrgId::parse("org_1").unwrap();
        let step = |w: &Wallet, pause: bool, dispute: &str, k: &str| -> Wallet {
            let key = IdempotencyKey::parse(k).unwrap();
            let req = if pause {
                ChangeRequest::pause(org.clone(), EntryKind::Dispute, PauseReason::Disputed, key)
            } else {
                ChangeRequest::lift(org.clone(), EntryKind::Dispute, PauseReason::Disputed, key)
            }
            .with_external(crate::ledger::ExternalRefs {
                dispute: Some(dispute.to_owned()),
                ..Default::default()
            });
            w.plan(&req, &PlanContext::at(Utc::now())).unwrap().after
        };
        let disputed = WalletState::Paused(PauseReason::Disputed);
        let w = wallet("0", "0", "10");
        let w = step(&w, true, "dp_a", "a");
        let w = step(&w, true, "dp_b", "b");
        assert_eq!(w.open_disputes.len(), 2);
        // One closes: the other still holds the pause.
        let w = step(&w, false, "dp_a", "a:closed");
        assert_eq!(w.state, disputed, "dp_b is still open");
        // A dispute closing that never paused (its opening came late) lifts nothing.
        let w = step(&w, false, "dp_c", "c:closed");
        assert_eq!(w.state, disputed);
        let w = step(&w, false, "dp_b", "b:closed");
        assert_eq!(w.state, WalletState::Active);
        assert!(w.open_disputes.is_empty());
    }

    #[test]
    fn a_dispute_pause_holds_until_lifted_and_lifting_at_zero_leaves_it_exhausted() {
        let org = OrgId::parse("org_1").unwrap();
        let key = |k: &str| IdempotencyKey::parse(k).unwrap();
        let w = wallet("0", "0", "10");
        let paused = w
            .plan(
                &ChangeRequest::pause(org.clone(), EntryKind::Dispute, PauseReason::Disputed, key("p")),
                &PlanContext::at(Utc::now()),
            )
            .unwrap();
        assert_eq!(paused.after.state, WalletState::Paused(PauseReason::Disputed));
        assert!(paused.entry.amount.is_zero());
        assert_eq!(
            paused.after.plan(&debit("1"), &PlanContext::at(Utc::now())),
            Err(Refusal::Paused(PauseReason::Disputed))
        );
        // Lifting another reason changes nothing; lifting this one resumes.
        let other = paused
            .after
            .plan(
                &ChangeRequest::lift(
                    org.clone(),
                    EntryKind::Adjustment,
                    PauseReason::RechargeFailed,
                    key("l0"),
                ),
                &PlanContext::at(Utc::now()),
            )
            .unwrap();
        assert_eq!(other.after.state, WalletState::Paused(PauseReason::Disputed));
        let lifted = paused
            .after
            .plan(
                &ChangeRequest::lift(org.clone(), EntryKind::Dispute, PauseReason::Disputed, key("l")),
                &PlanContext::at(Utc::now()),
            )
            .unwrap();
        assert_eq!(lifted.after.state, WalletState::Active);
        let mut empty = wallet("0", "0", "0");
        empty.state = WalletState::Paused(PauseReason::Disputed);
        let lifted = empty
            .plan(
                &ChangeRequest::lift(org, EntryKind::Dispute, PauseReason::Disputed, key("l")),
                &PlanContext::at(Utc::now()),
            )
            .unwrap();
        assert_eq!(
            lifted.after.state,
            WalletState::Paused(PauseReason::CreditsExhausted)
        );
        assert!(lifted.notifications.is_empty());
    }

    #[test]
    fn a_refund_takes_back_what_is_there_and_records_the_rest() {
        let req = ChangeRequest::take_back(
            OrgId::parse("org_1").unwrap(),
            EntryKind::Refund,
            PositiveUsd::parse("100").unwrap(),
            Bucket::Purchased,
            IdempotencyKey::parse("stripe:refund:re_1").unwrap(),
        )
        .unwrap();
        let p = wallet("0", "0", "60")
            .plan(&req, &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p.entry.amount, SignedUsd::debit(usd("60")));
        assert_eq!(p.entry.shortfall, usd("40"));
        assert_eq!(p.after.lifetime_spent, Usd::ZERO, "a refund is not spending");
        assert!(
            ChangeRequest::take_back(
                OrgId::parse("org_1").unwrap(),
                EntryKind::Usage,
                PositiveUsd::parse("1").unwrap(),
                Bucket::Purchased,
                IdempotencyKey::parse("k").unwrap(),
            )
            .is_err()
        );
    }

    fn member() -> MemberId {
        MemberId::parse("m_1").unwrap()
    }

    fn for_member(req: ChangeRequest) -> ChangeRequest {
        req.attributed_to(Attribution {
            member: Some(member()),
            ..Default::default()
        })
    }

    fn usage(amount: &str, k: &str) -> ChangeRequest {
        for_member(ChangeRequest::usage(
            OrgId::parse("org_1").unwrap(),
            PositiveUsd::parse(amount).unwrap(),
            IdempotencyKey::parse(k).unwrap(),
        ))
    }

    fn member_hold(amount: &str) -> ChangeRequest {
        for_member(ChangeRequest::hold(
            OrgId::parse("org_1").unwrap(),
            HoldId::parse("h_m").unwrap(),
            PositiveUsd::parse(amount).unwrap(),
            Utc::now(),
            IdempotencyKey::parse("hold:h_m").unwrap(),
        ))
    }

    fn month(spent: &str, held: &str, limit: Option<&str>) -> MemberMonth {
        MemberMonth {
            spent: usd(spent),
            held: usd(held),
            limit: limit.map(usd),
        }
    }

    fn ctx_with(month: MemberMonth) -> PlanContext {
        PlanContext {
            member: Some(month),
            ..PlanContext::at(Utc::now())
        }
    }

    #[test]
    fn a_call_past_the_member_limit_is_still_charged_and_counted() {
        // $1.00 limit, $0.90 already spent: a $0.90 call is charged in full and counted.
        let p = wallet("0", "0", "50")
            .plan(
                &usage("0.90", "usage:r2"),
                &ctx_with(month("0.90", "0", Some("1.00"))),
            )
            .unwrap();
        assert_eq!(p.entry.amount, SignedUsd::debit(usd("0.90")));
        assert_eq!(
            p.counters,
            vec![CounterChange {
                member: member(),
                month: month_of(Utc::now()),
                spent: usd("0.90"),
                held: SignedUsd::ZERO,
                at_most: None,
            }]
        );
        // A shortfall is still what the call cost the member.
        let p = wallet("0", "0", "0.30")
            .plan(&usage("0.90", "u3"), &PlanContext::at(Utc::now()))
            .unwrap();
        assert_eq!(p.counters[0].spent, usd("0.90"));
    }

    #[test]
    fn a_hold_needs_room_and_open_holds_use_it() {
        let w = wallet("0", "0", "50");
        let p = w
            .plan(&member_hold("0.90"), &ctx_with(month("0", "0", Some("1.00"))))
            .unwrap();
        assert_eq!(p.counters[0].held, SignedUsd::credit(usd("0.90")));
        assert_eq!(p.counters[0].at_most, Some(usd("0.10")), "the store's condition");
        // One open hold of $0.90 leaves no room for another.
        assert_eq!(
            w.plan(&member_hold("0.90"), &ctx_with(month("0", "0.90", Some("1.00")))),
            Err(Refusal::MemberLimitReached { limit: usd("1.00") })
        );
        // Nor does a limit smaller than the hold.
        assert_eq!(
            w.plan(&member_hold("1.01"), &ctx_with(month("0", "0", Some("1.00")))),
            Err(Refusal::MemberLimitReached { limit: usd("1.00") })
        );
        // Without a limit the reservation is still counted, with no condition.
        let p = w
            .plan(&member_hold("5"), &ctx_with(month("0", "0", None)))
            .unwrap();
        assert_eq!(p.counters[0].at_most, None);
    }

    #[test]
    fn a_capture_counts_the_call_now_and_frees_the_reservation_where_it_was_made() {
        let mut w = wallet("0", "0", "50");
        w.held = usd("0.90");
        let capture = ChangeRequest::capture(
            OrgId::parse("org_1").unwrap(),
            HoldId::parse("h_m").unwrap(),
            usd("0.50"),
            IdempotencyKey::parse("capture:h_m").unwrap(),
        );
        let ctx = |counted_in: &str| PlanContext {
            hold: Some(HoldState {
                amount: usd("0.90"),
                open: true,
                member: Some(member()),
                counted_in: Some(counted_in.to_owned()),
                made_at: 1,
            }),
            ..PlanContext::at(Utc::now())
        };
        let now = month_of(Utc::now());
        let p = w.plan(&capture, &ctx(&now)).unwrap();
        assert_eq!(p.entry.attribution.member, Some(member()), "the hold's member");
        assert_eq!(p.counters.len(), 1);
        assert_eq!(p.counters[0].spent, usd("0.50"));
        assert_eq!(p.counters[0].held, SignedUsd::debit(usd("0.90")));
        // Made last month: freed there, counted here.
        let p = w.plan(&capture, &ctx("2000-01")).unwrap();
        assert_eq!(p.counters.len(), 2);
        assert_eq!(p.counters[1].month, "2000-01");
        assert_eq!(p.counters[1].held, SignedUsd::debit(usd("0.90")));
    }

    fn refund(amount: &str) -> ChangeRequest {
        ChangeRequest::take_back(
            OrgId::parse("org_1").unwrap(),
            EntryKind::Refund,
            PositiveUsd::parse(amount).unwrap(),
            Bucket::Purchased,
            IdempotencyKey::parse("stripe:refund:re_1").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn a_refund_takes_held_credits_too_and_the_capture_comes_up_short() {
        // $100 bought and held in full, then refunded in full.
        let mut w = wallet("0", "0", "100");
        w.held = usd("100");
        let p = w.plan(&refund("100"), &PlanContext::at(Utc::now())).unwrap();
        assert_eq!(p.entry.amount, SignedUsd::debit(usd("100")));
        assert!(p.entry.shortfall.is_zero());
        assert_eq!(p.after.held, Usd::ZERO, "the hold shrank with the money");
        assert_eq!(p.entry.held_change, SignedUsd::debit(usd("100")));
        // The hold's capture then charges nothing that is not there.
        let capture = ChangeRequest::capture(
            OrgId::parse("org_1").unwrap(),
            hold_id(),
            usd("60"),
            IdempotencyKey::parse("capture:h1").unwrap(),
        );
        let c = p.after.plan(&capture, &hold_ctx("100", true)).unwrap();
        assert!(c.entry.amount.is_zero());
        assert_eq!(c.entry.shortfall, usd("60"));
        assert_eq!(c.after.balance().unwrap(), Usd::ZERO);
        // And a release after it frees nothing that is not held.
        let r = p
            .after
            .plan(
                &ChangeRequest::release(
                    OrgId::parse("org_1").unwrap(),
                    hold_id(),
                    IdempotencyKey::parse("r").unwrap(),
                ),
                &hold_ctx("100", true),
            )
            .unwrap();
        assert_eq!(r.after.available().unwrap(), Usd::ZERO);
    }

    #[test]
    fn a_hold_made_after_a_take_back_keeps_its_whole_reservation() {
        let org = OrgId::parse("org_1").unwrap();
        let key = |k: &str| IdempotencyKey::parse(k).unwrap();
        let hold = |id: &str, amount: &str| {
            ChangeRequest::hold(
                org.clone(),
                HoldId::parse(id).unwrap(),
                PositiveUsd::parse(amount).unwrap(),
                Utc::now(),
                key(&format!("hold:{id}")),
            )
        };
        let open = |amount: &str, made_at: u64| PlanContext {
            hold: Some(HoldState {
                amount: usd(amount),
                open: true,
                member: None,
                counted_in: None,
                made_at,
            }),
            ..PlanContext::at(Utc::now())
        };
        let now = || PlanContext::at(Utc::now());
        // $100 bought, hold A of $100 (made at version 8), the dispute is lost.
        let w = wallet("0", "0", "100");
        let a = w.plan(&hold("a", "100"), &now()).unwrap().after;
        let lost = ChangeRequest::take_back(
            org.clone(),
            EntryKind::Dispute,
            PositiveUsd::parse("100").unwrap(),
            Bucket::Purchased,
            key("stripe:dispute:dp:lost"),
        )
        .unwrap();
        let taken = a.plan(&lost, &now()).unwrap().after;
        assert_eq!((taken.held, taken.forgiven), (Usd::ZERO, usd("100")));
        // $100 bought again and hold B of $100, made after the take-back.
        let bought = taken
            .plan(&credit(Bucket::Purchased, "100"), &now())
            .unwrap()
            .after;
        let b = bought.plan(&hold("b", "100"), &now()).unwrap();
        let b_made = b.entry.seq;
        let b = b.after;
        assert_eq!(b.available().unwrap(), Usd::ZERO);
        // Releasing A frees nothing: what it reserved went back to the card.
        let release_a = ChangeRequest::release(org.clone(), HoldId::parse("a").unwrap(), key("release:a"));
        let after_a = b.plan(&release_a, &open("100", 8)).unwrap().after;
        assert_eq!(
            (after_a.held, after_a.forgiven),
            (usd("100"), Usd::ZERO),
            "B still reserved"
        );
        assert_eq!(after_a.available().unwrap(), Usd::ZERO);
        // B's capture is paid in full from its reservation.
        let capture_b =
            ChangeRequest::capture(org, HoldId::parse("b").unwrap(), usd("100"), key("capture:b"));
        let c = after_a.plan(&capture_b, &open("100", b_made)).unwrap();
        assert!(c.entry.shortfall.is_zero());
        assert_eq!(c.entry.amount, SignedUsd::debit(usd("100")));
    }

    #[test]
    fn a_refund_takes_purchased_first_and_its_failure_puts_back_the_same_buckets() {
        let w = wallet("50", "0", "30");
        let p = w.plan(&refund("40"), &PlanContext::at(Utc::now())).unwrap();
        assert_eq!(p.after.buckets.purchased, Usd::ZERO);
        assert_eq!(p.after.buckets.base, usd("40"));
        let back = ChangeRequest::restore(
            OrgId::parse("org_1").unwrap(),
            &p.entry.buckets,
            IdempotencyKey::parse("stripe:refund:re_1:failed").unwrap(),
        )
        .unwrap();
        let r = p.after.plan(&back, &PlanContext::at(Utc::now())).unwrap();
        assert_eq!(r.after.buckets, w.buckets);
        assert_eq!(
            r.after.lifetime_added, w.lifetime_added,
            "a restore is not money in"
        );
    }

    #[test]
    fn a_change_that_yields_to_a_used_key_is_superseded() {
        let ctx = PlanContext {
            superseded: true,
            ..PlanContext::at(Utc::now())
        };
        assert_eq!(
            wallet("0", "0", "5").plan(&refund("1"), &ctx),
            Err(Refusal::Superseded)
        );
    }

    #[test]
    fn a_top_up_that_leaves_the_org_below_its_threshold_keeps_it_due() {
        let mut w = wallet("0", "0", "0");
        w.settings.recharge = crate::settings::RechargeTrigger {
            enabled: true,
            threshold: usd("20"),
        };
        let top_up = |amount: &str| {
            ChangeRequest::credit(
                OrgId::parse("org_1").unwrap(),
                EntryKind::AutoTopUp,
                Bucket::Purchased,
                PositiveUsd::parse(amount).unwrap(),
                IdempotencyKey::parse("stripe:payment:pi_1").unwrap(),
            )
            .unwrap()
            .ending_recharge_due()
        };
        assert_eq!(
            w.plan(&top_up("10"), &PlanContext::at(Utc::now())).unwrap().due,
            DueMark::Renew
        );
        assert_eq!(
            w.plan(&top_up("100"), &PlanContext::at(Utc::now())).unwrap().due,
            DueMark::Clear
        );
    }

    fn micros(max: i64) -> impl Strategy<Value = Usd> {
        (0..=max).prop_map(|m| Usd::try_from_decimal(Decimal::new(m, 6)).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn a_planned_change_moves_the_balance_by_exactly_its_amount(
            purchased in micros(10_000_000), held in micros(10_000_000), amount in micros(10_000_000),
            is_debit in any::<bool>(),
        ) {
            prop_assume!(!amount.is_zero());
            let mut w = wallet("0", "0", "0");
            w.buckets.purchased = purchased;
            w.held = held.min(purchased);
            let req = if is_debit { debit(&amount.to_string()) } else { credit(Bucket::Purchased, &amount.to_string()) };
            match w.plan(&req, &PlanContext::at(Utc::now())) {
                Err(Refusal::InsufficientFunds { available }) => {
                    prop_assert!(is_debit && amount > available);
                    prop_assert_eq!(available, w.available().unwrap());
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
                Ok(p) => {
                    let before = w.balance().unwrap();
                    prop_assert_eq!(p.entry.amount.apply_to(before).unwrap(), p.after.balance().unwrap());
                    prop_assert_eq!(p.entry.balance_after, p.after.balance().unwrap());
                    prop_assert!(p.after.balance().unwrap() >= p.after.held);
                    prop_assert_eq!(p.after.version, w.version + 1);
                }
            }
        }
    }

    fn org() -> OrgId {
        OrgId::parse("org_1").unwrap()
    }

    fn key(k: &str) -> IdempotencyKey {
        IdempotencyKey::parse(k).unwrap()
    }

    fn day(d: i64) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 1, 0, 0, 0).unwrap() + chrono::Duration::days(d)
    }

    fn grant(kind: crate::grants::GrantKind, amount: &str, expires: Option<i64>, k: &str) -> ChangeRequest {
        ChangeRequest::grant(
            org(),
            kind,
            PositiveUsd::parse(amount).unwrap(),
            expires.map(day),
            key(k),
        )
        .unwrap()
    }

    /// added − taken back = balance + spent + expired + withdrawn, and the lots hold the
    /// expiring bucket.
    fn assert_lifetimes_add_up(w: &Wallet) {
        assert!(w.accounts_for_every_credit().unwrap(), "{w:?}");
        assert!(w.held <= w.balance().unwrap());
    }

    #[test]
    fn dated_grants_go_first_soonest_first_and_expire_on_their_date_but_never_from_under_a_hold() {
        use crate::grants::GrantKind::*;
        let mut w = wallet("0", "0", "10");
        w.lifetime_added = usd("10");
        for (req, at) in [
            (grant(Promotional, "5", Some(20), "g1"), 0),
            (grant(Support, "3", Some(10), "g2"), 0),
            (grant(Referral, "7", None, "g3"), 0),
        ] {
            w = w.plan(&req, &PlanContext::at(day(at))).unwrap().after;
        }
        assert_eq!(
            (w.buckets.expiring, w.buckets.earned, w.buckets.purchased),
            (usd("8"), usd("7"), usd("10"))
        );
        // A debit takes the lot of day 10 first, then the one of day 20.
        let p = w.plan(&debit("4"), &PlanContext::at(day(1))).unwrap();
        assert_eq!(p.entry.buckets.expiring, SignedUsd::debit(usd("4")));
        w = p.after;
        assert_eq!(
            w.lots.iter().map(|l| (l.expires_at, l.left)).collect::<Vec<_>>(),
            vec![(day(20), usd("4"))]
        );
        // Nothing is due before day 20.
        let expire = ChangeRequest::expire(org(), key("expire:1"));
        assert_eq!(
            w.plan(&expire, &PlanContext::at(day(19))),
            Err(Refusal::NothingToExpire)
        );
        // A hold reserving all but 1 of the balance keeps 3 of the 4 from expiring.
        w.held = usd("20");
        let p = w.plan(&expire, &PlanContext::at(day(20))).unwrap();
        assert_eq!(p.entry.kind, EntryKind::Expired);
        assert_eq!(p.entry.amount, SignedUsd::debit(usd("1")));
        assert_eq!(p.after.lots.due(day(20)).unwrap(), usd("3"));
        assert_lifetimes_add_up(&p.after);
        // Earned credits never carry a date.
        assert_eq!(
            ChangeRequest::grant(
                org(),
                Referral,
                PositiveUsd::parse("1").unwrap(),
                Some(day(3)),
                key("g")
            ),
            Err(crate::grants::GrantRefused::EarnedCreditsDoNotExpire)
        );
    }

    #[test]
    fn a_wallet_keeps_at_most_its_lots_and_grants_of_one_date_share_one() {
        use crate::grants::GrantKind::*;
        let mut w = wallet("0", "0", "0");
        for d in 0..crate::lots::MAX_LOTS {
            let req = grant(Promotional, "1", Some(d as i64 + 1), &format!("g{d}"));
            w = w.plan(&req, &PlanContext::at(day(0))).unwrap().after;
        }
        assert_eq!(
            w.plan(
                &grant(Support, "1", Some(99), "new_date"),
                &PlanContext::at(day(0))
            ),
            Err(Refusal::TooManyLots)
        );
        let same = w
            .plan(
                &grant(Support, "2", Some(1), "same_date"),
                &PlanContext::at(day(0)),
            )
            .unwrap();
        assert_eq!(same.after.lots.len(), crate::lots::MAX_LOTS);
        assert_eq!(same.after.lots.due(day(1)).unwrap(), usd("3"));
        assert_lifetimes_add_up(&same.after);
    }

    #[test]
    fn only_earned_credits_that_holds_leave_free_can_be_withdrawn() {
        use crate::grants::GrantKind::*;
        let mut w = wallet("0", "0", "10");
        w.lifetime_added = usd("10");
        w = w
            .plan(&grant(CreatorEarnings, "6", None, "g"), &PlanContext::at(day(0)))
            .unwrap()
            .after;
        let withdraw = |a: &str| ChangeRequest::withdraw(org(), PositiveUsd::parse(a).unwrap(), key("w"));
        assert_eq!(
            w.plan(&withdraw("6.01"), &PlanContext::at(day(0))),
            Err(Refusal::NotWithdrawable {
                withdrawable: usd("6")
            })
        );
        w.held = usd("12");
        assert_eq!(
            w.plan(&withdraw("5"), &PlanContext::at(day(0))),
            Err(Refusal::NotWithdrawable {
                withdrawable: usd("4")
            })
        );
        let p = w.plan(&withdraw("4"), &PlanContext::at(day(0))).unwrap();
        assert_eq!(p.entry.buckets.earned, SignedUsd::debit(usd("4")));
        assert_eq!(p.after.lifetime_withdrawn, usd("4"));
        let back = ChangeRequest::withdrawal_returned(org(), PositiveUsd::parse("4").unwrap(), key("wr"));
        let p2 = p.after.plan(&back, &PlanContext::at(day(0))).unwrap();
        assert_eq!(
            (p2.after.buckets.earned, p2.after.lifetime_withdrawn),
            (usd("6"), Usd::ZERO)
        );
        assert_lifetimes_add_up(&p2.after);
        let mut disputed = p2.after.clone();
        disputed.state = WalletState::Paused(PauseReason::Disputed);
        assert_eq!(
            disputed.plan(&withdraw("1"), &PlanContext::at(day(0))),
            Err(Refusal::Paused(PauseReason::Disputed))
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Buy(u32),
        Grant(u8, u32, Option<i64>),
        Use(u32),
        TakeBack(u32, u8),
        RestoreLast,
        Renew(u32, u32),
        Expire,
        Withdraw(u32),
        ReturnLast,
        Tick(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u32..5_000).prop_map(Op::Buy),
            (0u8..4, 1u32..5_000, proptest::option::of(0i64..30)).prop_map(|(k, a, d)| Op::Grant(k, a, d)),
            (1u32..5_000).prop_map(Op::Use),
            (1u32..5_000, 0u8..5).prop_map(|(a, b)| Op::TakeBack(a, b)),
            Just(Op::RestoreLast),
            (0u32..3_000, 0u32..3_000).prop_map(|(g, c)| Op::Renew(g, c)),
            Just(Op::Expire),
            (1u32..5_000).prop_map(Op::Withdraw),
            Just(Op::ReturnLast),
            (0i64..10).prop_map(Op::Tick),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Every kind of change, in any order, keeps the lifetime totals adding up, the
        /// lots equal to the expiring bucket and nothing below zero.
        #[test]
        fn the_lifetime_totals_add_up_whatever_happens(ops in proptest::collection::vec(op(), 1..60)) {
            use crate::grants::GrantKind;
            let cents = |c: u32| PositiveUsd::new(Usd::from_cents(i64::from(c)).unwrap()).unwrap();
            let mut w = wallet("0", "0", "0");
            let mut now = 0;
            let mut last_take: Option<BucketDelta> = None;
            let mut last_withdrawal: Option<PositiveUsd> = None;
            for (i, op) in ops.into_iter().enumerate() {
                let k = key(&format!("k{i}"));
                let req = match op {
                    Op::Buy(c) => ChangeRequest::credit(org(), EntryKind::Purchase, Bucket::Purchased, cents(c), k).unwrap(),
                    Op::Grant(kind, c, d) => {
                        let kind = GrantKind::ALL[usize::from(kind)];
                        let d = d.filter(|_| !kind.earned()).map(|d| day(now + d));
                        ChangeRequest::grant(org(), kind, cents(c), d, k).unwrap()
                    }
                    Op::Use(c) => ChangeRequest::usage(org(), cents(c), k),
                    Op::TakeBack(c, b) => ChangeRequest::take_back(org(), EntryKind::Refund, cents(c), Bucket::DEBIT_ORDER[usize::from(b)], k).unwrap(),
                    Op::RestoreLast => match last_take.take().and_then(|t| ChangeRequest::restore(org(), &t, k)) {
                        Some(r) => r,
                        None => continue,
                    },
                    Op::Renew(g, c) => ChangeRequest::renew_plan(org(), Usd::from_cents(i64::from(g)).unwrap(), Usd::from_cents(i64::from(c)).unwrap(), k),
                    Op::Expire => ChangeRequest::expire(org(), k),
                    Op::Withdraw(c) => ChangeRequest::withdraw(org(), cents(c), k),
                    Op::ReturnLast => match last_withdrawal.take() {
                        Some(a) => ChangeRequest::withdrawal_returned(org(), a, k),
                        None => continue,
                    },
                    Op::Tick(d) => { now += d; continue; }
                };
                match w.plan(&req, &PlanContext::at(day(now))) {
                    Ok(p) => {
                        if p.entry.kind == EntryKind::Refund { last_take = Some(p.entry.buckets); }
                        if let Movement::Withdraw(a) = req.movement() { last_withdrawal = Some(a); }
                        if req.movement() == Movement::Expire {
                            prop_assert!(p.after.lots.due(day(now)).unwrap().is_zero() || p.after.available().unwrap().is_zero());
                        }
                        w = p.after;
                        assert_lifetimes_add_up(&w);
                    }
                    Err(Refusal::InsufficientFunds { .. } | Refusal::NothingToExpire | Refusal::NotWithdrawable { .. }) => {}
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
        }
    }
}
