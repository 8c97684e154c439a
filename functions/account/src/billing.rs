//! The credits card (references 000 §4, 002) and the month's usage by member (003).

use agent_credits_domain::{Consumable, Org, PageRequest, Usd, WalletStore, verdict};
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response, query_param};
use chrono::{Datelike, NaiveDate};
use lambda_http::Request;
use lambda_http::http::StatusCode;
use rust_decimal::Decimal;

use crate::{Account, keys, views};

pub(crate) async fn balance(svc: &Account, org: &Org) -> Reply {
    let keys = async { keys::stored_keys(svc, org).await };
    let (wallet, recent, keys) = tokio::try_join!(
        async { Ok::<_, ApiError>(svc.store.wallet(&org.id).await?) },
        // The five most recent money movements: holds and releases are left out, so a
        // page a little larger than five is read.
        async { Ok::<_, ApiError>(svc.store.history(&org.id, PageRequest::first(25)).await?) },
        keys,
    )?;
    let balance = wallet.balance().map_err(|e| ApiError::internal(&e))?;
    // The same verdict the runtime gets from may-i-run, for the org's own runtime.
    let billing = agent_credits_domain::billing(org.billing_mode, org.runtime, &keys);
    let v = verdict(org.billing_mode, Consumable::Llm, &wallet, billing, None)
        .map_err(|e| ApiError::internal(&e))?;
    let on_credits = org.billing_mode == agent_credits_domain::BillingMode::Credits;
    let credits = (balance.as_decimal() * Decimal::from(org.credits_per_usd)).normalize();
    let card = views::Balance {
        balance,
        available: v.available,
        held: wallet.held,
        credits: credits.to_string(),
        credits_per_usd: org.credits_per_usd,
        buckets: &wallet.buckets,
        // A byok or deferred org's wallet stays empty: it is never low nor out of credits.
        low_balance: on_credits && v.available <= wallet.settings.low_threshold(),
        low_balance_threshold: wallet.settings.low_threshold(),
        exhausted: on_credits && v.available.is_zero(),
        state: if v.allowed {
            views::State::Active
        } else {
            views::State::Paused
        },
        pause_reason: v.reason,
        billed_to: v.billed_to,
        // Reference 002: purchases and top-ups; grants apart.
        lifetime_added: wallet
            .lifetime_added
            .checked_sub(wallet.lifetime_granted)
            .map_err(|e| ApiError::internal(&e))?,
        lifetime_granted: wallet.lifetime_granted,
        lifetime_spent: wallet.lifetime_spent,
        lifetime_expired: wallet.lifetime_expired,
        lifetime_withdrawn: wallet.lifetime_withdrawn,
        withdrawable: wallet.withdrawable().map_err(|e| ApiError::internal(&e))?,
        next_expiry: wallet.lots.next_expiry().map(|at| views::NextExpiry {
            expires_at: at,
            amount: wallet.lots.due(at).unwrap_or(Usd::ZERO),
        }),
        recent: recent
            .entries
            .iter()
            .filter(|e| !crate::history::is_hold(e.kind))
            .take(5)
            .map(views::Entry::from)
            .collect(),
        auto_recharge: views::AutoRechargeSummary {
            enabled: wallet.settings.recharge.enabled,
            threshold: wallet.settings.recharge.threshold,
        },
    };
    Ok(json_response(StatusCode::OK, &card))
}

/// Usage by member for a month (`?month=yyyy-mm`, this month by default), with limits.
pub(crate) async fn month_usage(svc: &Account, org: &Org, req: &Request) -> Reply {
    let month = match query_param(req, "month") {
        Some(m) => NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d")
            .map(|_| m)
            .map_err(|_| ApiError::bad_request(ErrorCode::InvalidMonth, "month is yyyy-mm"))?,
        None => svc.clock.now().format("%Y-%m").to_string(),
    };
    let (rows, members) = tokio::try_join!(
        async { Ok::<_, ApiError>(svc.store.month_usage(&org.id, &month).await?) },
        async { Ok::<_, ApiError>(svc.orgs.members(&org.id).await?) },
    )?;
    let rows: Vec<_> = members
        .iter()
        .map(|m| {
            let row = rows.iter().find(|r| r.member == m.id.as_str());
            let (spent, held, unbilled) = row.map_or((Usd::ZERO, Usd::ZERO, Usd::ZERO), |r| {
                (r.spent, r.held, r.unbilled)
            });
            views::MemberMonth {
                member: &m.id,
                role: m.role,
                spent,
                held,
                unbilled,
                monthly_limit: m.monthly_limit,
            }
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &views::MonthUsage { month, members: rows },
    ))
}

/// The longest range `GET .../usage/daily` answers: a quarter.
const MAX_DAYS: i64 = 92;

/// Usage by day from `from` to `to` (`yyyy-mm-dd`, both included; by default this month
/// up to today, UTC), with the range's total and its breakdown by member, API key, model
/// and kind, largest first.
pub(crate) async fn daily_usage(svc: &Account, org: &Org, req: &Request) -> Reply {
    let today = svc.clock.now().date_naive();
    let day = |name: &str, default: NaiveDate| -> Result<NaiveDate, ApiError> {
        match query_param(req, name) {
            None => Ok(default),
            Some(v) => agent_credits_domain::daily::parse_day(&v).ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidDate,
                    format!("{name} is a day written yyyy-mm-dd"),
                )
            }),
        }
    };
    let from = day("from", today.with_day(1).unwrap_or(today))?;
    let to = day("to", today)?;
    let span = (to - from).num_days();
    if !(0..MAX_DAYS).contains(&span) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidDate,
            format!("from must not be after to, and the range at most {MAX_DAYS} days"),
        ));
    }
    let usage = svc.store.usage_by_day(&org.id, from, to).await?;
    Ok(json_response(
        StatusCode::OK,
        &views::DailyUsage::of(from, to, &usage)?,
    ))
}
