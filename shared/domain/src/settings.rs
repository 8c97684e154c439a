//! The org's billing settings the money paths need on every change. They live on the
//! wallet item so that a debit reads them with the wallet, in the same request.

use serde::{Deserialize, Serialize};

use crate::money::Usd;
use crate::pricing::Markup;

/// How an org pays for model calls: a required choice at creation, with no default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingMode {
    /// Prepaid wallet: usage debits it live.
    Credits,
    /// The org's own provider key: usage is recorded for attribution, never debited.
    Byok,
    /// Decide later: runs on a key if one is configured, else on credits if any.
    Deferred,
}

impl BillingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingMode::Credits => "credits",
            BillingMode::Byok => "byok",
            BillingMode::Deferred => "deferred",
        }
    }

    pub fn parse(s: &str) -> Option<BillingMode> {
        [BillingMode::Credits, BillingMode::Byok, BillingMode::Deferred]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// Auto-recharge as the debit path needs it: whether a low balance marks the org due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RechargeTrigger {
    pub enabled: bool,
    pub threshold: Usd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WalletSettings {
    /// `None` until the org is created with its choice.
    pub billing_mode: Option<BillingMode>,
    /// `None`: the deployment's default markup.
    pub markup: Option<Markup>,
    /// Threshold of `credit_balance_low` when auto-recharge is off; `None`: the default.
    pub low_threshold: Option<Usd>,
    pub recharge: RechargeTrigger,
}

/// The low-balance threshold when neither auto-recharge nor the org sets one.
pub const DEFAULT_LOW_THRESHOLD: Usd = Usd::from_whole_dollars(20);

impl WalletSettings {
    /// `credit_balance_low` fires when available falls below this: the auto-recharge
    /// threshold when auto-recharge is on, else the org's or the default.
    pub fn low_threshold(&self) -> Usd {
        if self.recharge.enabled {
            self.recharge.threshold
        } else {
            self.low_threshold.unwrap_or(DEFAULT_LOW_THRESHOLD)
        }
    }
}

/// One of an org's settings, as its settings history names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    PurchasePolicy,
    MembersSeeBilling,
    LowBalanceThreshold,
    Markup,
}

impl Setting {
    pub const ALL: [Setting; 4] = [
        Setting::PurchasePolicy,
        Setting::MembersSeeBilling,
        Setting::LowBalanceThreshold,
        Setting::Markup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Setting::PurchasePolicy => "purchase_policy",
            Setting::MembersSeeBilling => "members_see_billing",
            Setting::LowBalanceThreshold => "low_balance_threshold",
            Setting::Markup => "markup",
        }
    }

    pub fn parse(s: &str) -> Option<Setting> {
        Setting::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A setting that changed: from and to as shown (`None`: the default), by whom (a member,
/// or an operator's IAM identity) and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingChanged {
    pub setting: Setting,
    pub from: Option<String>,
    pub to: Option<String>,
    pub by: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// An owner's change of the org's settings after creation; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SettingsChange {
    pub purchase_policy: Option<crate::account::PurchasePolicy>,
    pub members_see_billing: Option<bool>,
    /// `Some(None)`: back to the default ([`DEFAULT_LOW_THRESHOLD`]).
    pub low_threshold: Option<Option<Usd>>,
}

impl SettingsChange {
    pub fn is_empty(&self) -> bool {
        *self == SettingsChange::default()
    }

    /// What would change for an org as read (`org`, and its wallet's `wallet` settings):
    /// each setting whose value differs, from and to as shown.
    pub fn diff(
        &self,
        org: &crate::account::Org,
        wallet: &WalletSettings,
    ) -> Vec<(Setting, Option<String>, Option<String>)> {
        let mut out = vec![];
        if let Some(p) = self.purchase_policy
            && p != org.purchase_policy
        {
            out.push((
                Setting::PurchasePolicy,
                Some(org.purchase_policy.as_str().to_owned()),
                Some(p.as_str().to_owned()),
            ));
        }
        if let Some(b) = self.members_see_billing
            && b != org.members_see_billing
        {
            out.push((
                Setting::MembersSeeBilling,
                Some(org.members_see_billing.to_string()),
                Some(b.to_string()),
            ));
        }
        if let Some(t) = self.low_threshold
            && t != wallet.low_threshold
        {
            out.push((
                Setting::LowBalanceThreshold,
                wallet.low_threshold.map(|u| u.to_string()),
                t.map(|u| u.to_string()),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::PurchasePolicy;

    #[test]
    fn a_change_lists_only_what_differs_and_default_is_none() {
        let org = crate::account::tests::org();
        let wallet = WalletSettings::default();
        let same = SettingsChange {
            purchase_policy: Some(PurchasePolicy::OwnersOnly),
            members_see_billing: Some(true),
            low_threshold: Some(None),
        };
        assert!(same.diff(&org, &wallet).is_empty());
        let ten = Usd::from_whole_dollars(10);
        let change = SettingsChange {
            purchase_policy: Some(PurchasePolicy::OwnersAndAdmins),
            low_threshold: Some(Some(ten)),
            ..Default::default()
        };
        assert_eq!(
            change.diff(&org, &wallet),
            vec![
                (
                    Setting::PurchasePolicy,
                    Some("owners_only".into()),
                    Some("owners_and_admins".into())
                ),
                (Setting::LowBalanceThreshold, None, Some(ten.to_string())),
            ]
        );
    }
}
