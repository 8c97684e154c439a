//! Usage by day, for charts and the month's total (references 002, 003): what each call
//! billed (what the wallet paid plus its shortfall), or would have cost on the org's own
//! key, counted on the day of the call, in total and by member, API key, model and kind,
//! in the same transaction as the call itself.
//!
//! Attribution (reference 004): a call the runtime reports without its member, API key or
//! model is still billed (a call already made always is) and counted under
//! [`UNATTRIBUTED`] (`(unattributed)`), visibly, never dropped.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::ledger::Attribution;

/// What a call counts under when the runtime did not say: no id can be written so (ids
/// hold no parentheses), so it never merges with a real member, key or model.
pub const UNATTRIBUTED: &str = "(unattributed)";

/// What the usage of a day is broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Member,
    ApiKey,
    Model,
    Kind,
    Feature,
}

impl Dimension {
    pub const ALL: [Dimension; 5] = [
        Dimension::Member,
        Dimension::ApiKey,
        Dimension::Model,
        Dimension::Kind,
        Dimension::Feature,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Member => "member",
            Dimension::ApiKey => "api_key",
            Dimension::Model => "model",
            Dimension::Kind => "kind",
            Dimension::Feature => "feature",
        }
    }

    pub fn parse(s: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// A day written exactly `yyyy-mm-dd`, as every route takes days (chrono alone reads
/// `26-01-01` as the year 26).
pub fn parse_day(s: &str) -> Option<NaiveDate> {
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shaped
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
}

/// The day a call counts on: its UTC date.
pub fn day_of(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

/// Where one call counts, besides the day's total: one value per dimension. A use that
/// is not a model call counts under the model `(unattributed)` too, so that every
/// dimension sums to the day's total.
pub fn breakdown(a: &Attribution) -> Vec<(Dimension, String)> {
    let or_unattributed = |v: Option<&str>| v.unwrap_or(UNATTRIBUTED).to_owned();
    vec![
        (
            Dimension::Member,
            or_unattributed(a.member.as_ref().map(|m| m.as_str())),
        ),
        (
            Dimension::ApiKey,
            or_unattributed(a.api_key.as_ref().map(|k| k.as_str())),
        ),
        (
            Dimension::Model,
            or_unattributed(a.model.as_ref().map(|m| m.as_str())),
        ),
        (Dimension::Kind, a.consumable.as_str().to_owned()),
        (Dimension::Feature, or_unattributed(a.feature.map(|f| f.as_str()))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MemberId;

    #[test]
    fn a_day_is_written_yyyy_mm_dd_and_real() {
        assert_eq!(parse_day("2026-02-28"), NaiveDate::from_ymd_opt(2026, 2, 28));
        for bad in [
            "26-02-28",
            "2026-2-28",
            "2026-02-30",
            "2026/02/28",
            "2026-02-28T00:00:00Z",
            "",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn what_the_runtime_did_not_say_counts_as_unattributed() {
        let a = Attribution {
            member: Some(MemberId::parse("u_1").unwrap()),
            ..Default::default()
        };
        assert_eq!(
            breakdown(&a),
            vec![
                (Dimension::Member, "u_1".to_owned()),
                (Dimension::ApiKey, UNATTRIBUTED.to_owned()),
                (Dimension::Model, UNATTRIBUTED.to_owned()),
                (Dimension::Kind, "llm".to_owned()),
                (Dimension::Feature, UNATTRIBUTED.to_owned()),
            ]
        );
    }
}
