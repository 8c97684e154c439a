//! Credits nobody paid for by card: what an operator grants, and what an org earns.
//!
//! A grant names its kind. `referral` and `creator_earnings` are earned: they go to the
//! earned bucket, are spent last and are the only credits an owner may withdraw. Earned
//! credits never expire (they are owed to the org as money is). `support` and
//! `promotional` grants may carry a date: dated ones are a lot in the expiring bucket,
//! spent first and expired on their date ([`crate::lots`]); undated ones sit with
//! purchased credits.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::buckets::Bucket;
use crate::ledger::EntryKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    Referral,
    CreatorEarnings,
    Support,
    Promotional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantRefused {
    #[error("earned credits (referral, creator_earnings) do not expire")]
    EarnedCreditsDoNotExpire,
}

impl GrantKind {
    pub const ALL: [GrantKind; 4] = [
        GrantKind::Referral,
        GrantKind::CreatorEarnings,
        GrantKind::Support,
        GrantKind::Promotional,
    ];

    pub fn parse(s: &str) -> Option<GrantKind> {
        GrantKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        self.entry_kind().as_str()
    }

    pub fn entry_kind(self) -> EntryKind {
        match self {
            GrantKind::Referral => EntryKind::Referral,
            GrantKind::CreatorEarnings => EntryKind::CreatorEarnings,
            GrantKind::Support => EntryKind::Support,
            GrantKind::Promotional => EntryKind::Promotional,
        }
    }

    /// Earned credits: withdrawable, never dated.
    pub fn earned(self) -> bool {
        matches!(self, GrantKind::Referral | GrantKind::CreatorEarnings)
    }

    /// Where an undated grant of this kind goes.
    pub fn bucket(self) -> Bucket {
        if self.earned() {
            Bucket::Earned
        } else {
            Bucket::Purchased
        }
    }
}

impl fmt::Display for GrantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grant_kind_is_an_entry_kind_of_its_name() {
        for k in GrantKind::ALL {
            assert_eq!(GrantKind::parse(k.as_str()), Some(k));
            assert_eq!(EntryKind::parse(k.as_str()), Some(k.entry_kind()));
        }
        assert_eq!(GrantKind::parse("purchase"), None);
    }
}
