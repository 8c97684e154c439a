//! History: pages of entries newest first, and the whole (filtered) history as CSV.

use agent_credits_domain::{
    Consumable, EntryKind, Feature, LedgerEntry, MemberId, Org, PageRequest, WalletStore,
};
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response, named, query_param};
use chrono::{DateTime, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::{Account, views};

/// What the history routes filter on: kind, member and a date range (RFC 3339 instants or
/// `yyyy-mm-dd` days, UTC; `from` inclusive, `to` exclusive). History shows money
/// movements: holds and their releases (credits set aside, then freed) only when asked
/// for, with `include=holds` or by their kind.
pub(crate) struct Filters {
    kind: Option<EntryKind>,
    /// Uses of one consumable (`consumable=email`) and of one feature (`feature=rag`).
    consumable: Option<Consumable>,
    feature: Option<Feature>,
    holds: bool,
    member: Option<MemberId>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl Filters {
    fn of(req: &Request) -> Result<Filters, ApiError> {
        let kind = query_param(req, "kind")
            .map(|k| {
                EntryKind::parse(&k)
                    .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidKind, format!("no kind {k}")))
            })
            .transpose()?;
        let consumable = named(query_param(req, "consumable").as_deref())?;
        let feature = named(query_param(req, "feature").as_deref())?;
        let member = query_param(req, "member")
            .map(|m| {
                MemberId::parse(m).map_err(|e| ApiError::bad_request(ErrorCode::InvalidMember, e.to_string()))
            })
            .transpose()?;
        let instant = |name: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
            let Some(v) = query_param(req, name) else {
                return Ok(None);
            };
            if let Ok(t) = DateTime::parse_from_rfc3339(&v) {
                return Ok(Some(t.with_timezone(&Utc)));
            }
            agent_credits_domain::daily::parse_day(&v)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| Some(d.and_utc()))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        ErrorCode::InvalidDate,
                        format!("{name} is an RFC 3339 time or yyyy-mm-dd"),
                    )
                })
        };
        let holds = match query_param(req, "include").as_deref() {
            None => false,
            Some("holds") => true,
            Some(other) => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidRequest,
                    format!("include is holds, not {other}"),
                ));
            }
        };
        let (from, to) = (instant("from")?, instant("to")?);
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidDate,
                "from must be before to",
            ));
        }
        Ok(Filters {
            kind,
            consumable,
            feature,
            holds,
            member,
            from,
            to,
        })
    }

    fn keeps(&self, e: &LedgerEntry) -> bool {
        let asked = self.holds || self.kind.is_some() || !is_hold(e.kind);
        asked
            && self.kind.is_none_or(|k| e.kind == k)
            && self.consumable.is_none_or(|k| e.consumed() == Some(k))
            && self.feature.is_none_or(|f| e.attribution.feature == Some(f))
            && self
                .member
                .as_ref()
                .is_none_or(|m| e.attribution.member.as_ref() == Some(m))
            && self.from.is_none_or(|f| e.created_at >= f)
            && self.to.is_none_or(|t| e.created_at < t)
    }
}

/// A hold or its release: credits set aside and freed, not money in or out.
pub(crate) fn is_hold(kind: EntryKind) -> bool {
    matches!(kind, EntryKind::Hold | EntryKind::Release)
}

/// Pages of entries, newest first. Filters apply to the pages the store reads; a filtered
/// page may hold fewer entries than asked, and `next` continues it.
pub(crate) async fn history(svc: &Account, org: &Org, req: &Request) -> Reply {
    let limit = match query_param(req, "limit") {
        Some(l) => l
            .parse::<u16>()
            .ok()
            .filter(|l| (1..=PageRequest::MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidLimit,
                    format!("limit must be 1 to {}", PageRequest::MAX_LIMIT),
                )
            })?,
        None => 25,
    };
    let cursor = query_param(req, "cursor")
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is the `next` of a page")
            })
        })
        .transpose()?;
    let filters = Filters::of(req)?;
    let page = match cursor {
        Some(c) => PageRequest::after_cursor(limit, c),
        None => PageRequest::first(limit),
    };
    let found = svc.store.history(&org.id, page).await?;
    let entries: Vec<_> = found
        .entries
        .iter()
        .filter(|e| filters.keeps(e))
        .map(views::Entry::from)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &views::History {
            entries,
            next: found.next.map(|n| n.to_string()),
        },
    ))
}

/// The whole history (filtered), newest first, as CSV for a spreadsheet.
pub(crate) async fn history_csv(svc: &Account, org: &Org, req: &Request) -> Reply {
    let filters = Filters::of(req)?;
    let mut csv = String::from(
        "id,created_at,kind,amount,balance_after,available_after,shortfall,member,api_key,agent,payment_intent,refund,dispute,invoice,model,consumable,feature\n",
    );
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let found = svc.store.history(&org.id, page).await?;
        for e in found.entries.iter().filter(|e| filters.keeps(e)) {
            let cells = [
                e.id(),
                e.created_at.to_rfc3339(),
                e.kind.to_string(),
                e.amount.to_string(),
                e.balance_after.to_string(),
                e.available_after.to_string(),
                e.shortfall.to_string(),
                e.attribution
                    .member
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                e.attribution
                    .api_key
                    .as_ref()
                    .map(|k| k.to_string())
                    .unwrap_or_default(),
                e.attribution
                    .agent
                    .as_ref()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                e.external.payment_intent.clone().unwrap_or_default(),
                e.external.refund.clone().unwrap_or_default(),
                e.external.dispute.clone().unwrap_or_default(),
                e.external.invoice.clone().unwrap_or_default(),
                // Added last: a reader of the earlier columns by position still reads them.
                e.attribution
                    .model
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                e.consumed().map(|k| k.to_string()).unwrap_or_default(),
                e.attribution.feature.map(|f| f.to_string()).unwrap_or_default(),
            ];
            let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            csv.push_str(&row.join(","));
            csv.push('\n');
        }
        // Older than the range: nothing further can match.
        let past = filters
            .from
            .zip(found.entries.last())
            .is_some_and(|(f, last)| last.created_at < f);
        match found.next {
            Some(next) if !past => page = PageRequest::after_cursor(PageRequest::MAX_LIMIT, next),
            _ => break,
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/csv; charset=utf-8")
        .header(
            "content-disposition",
            format!("attachment; filename=\"{}-history.csv\"", org.id),
        )
        .body(Body::Text(csv))
        .map_err(|e| ApiError::internal(&e))
}

/// A CSV cell: quoted when it holds a separator, a quote or a line break, and never read
/// as a formula by a spreadsheet.
pub(crate) fn csv_cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '@']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}
