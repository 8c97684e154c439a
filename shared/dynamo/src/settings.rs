//! An org's settings after creation, and their history: one `SETTING#<time>#<setting>`
//! item per setting that changed (from, to, by whom), written in the same transaction as
//! the change itself. Every change moves the org's revision on, on the condition that it
//! has not moved since the org was read, so two changes never interleave.

use agent_credits_domain::{
    Markup, MemberId, Org, Role, Setting, SettingChanged, SettingsChange, StoreError, WalletSettings,
};
use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::attr::{Item, Reader, n_dec, n_usd, s};
use crate::items::{WALLET_SK, key, member_sk, org_pk, parse_time, timestamp};
use crate::orgs::{OrgStore, PROFILE_SK, committed, revised};
use crate::store::{put, sdk_error, unbuilt};
use crate::update::UpdateExpr;

const HISTORY_PREFIX: &str = "SETTING#";

/// A setting as it was and as it is now (`None`: the default).
type Diff = (Setting, Option<String>, Option<String>);

/// Who makes a change: an owner (checked still to be one when it is written), or an
/// operator (by their role; IAM let them in).
enum Who<'a> {
    Owner(&'a MemberId),
    Operator(&'a str),
}

impl Who<'_> {
    fn name(&self) -> &str {
        match self {
            Who::Owner(m) => m.as_str(),
            Who::Operator(o) => o,
        }
    }
}

fn history_item(org: &Org, (setting, from, to): &Diff, by: &str, now: DateTime<Utc>) -> Item {
    let at = now.to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut item = key(
        org_pk(&org.id),
        format!("{HISTORY_PREFIX}{at}#{}", setting.as_str()),
    );
    item.extend([
        ("type".to_owned(), s("setting_changed")),
        ("setting".to_owned(), s(setting.as_str())),
        ("by".to_owned(), s(by)),
        ("at".to_owned(), timestamp(now)),
    ]);
    if let Some(f) = from {
        item.insert("from".to_owned(), s(f.as_str()));
    }
    if let Some(t) = to {
        item.insert("to".to_owned(), s(t.as_str()));
    }
    item
}

fn changed_from_item(item: &Item) -> Result<SettingChanged, StoreError> {
    let r = Reader::new(item);
    let setting = r.s("setting")?;
    Ok(SettingChanged {
        setting: Setting::parse(setting).ok_or_else(|| r.corrupt(format!("setting {setting}")))?,
        from: r.opt_s("from")?.map(str::to_owned),
        to: r.opt_s("to")?.map(str::to_owned),
        by: r.s("by")?.to_owned(),
        at: parse_time(&r, "at")?,
    })
}

impl OrgStore {
    /// Writes `diffs` of the org as read, in one transaction: the profile's revision
    /// moved on (with `profile`'s own changes), the wallet's `wallet` changes, and one
    /// history item per setting. `false`: the org moved meanwhile; nothing was written.
    async fn write_settings(
        &self,
        org: &Org,
        mut profile: UpdateExpr,
        wallet: Option<UpdateExpr>,
        diffs: &[Diff],
        by: Who<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        profile.condition("attribute_not_exists(creating_by)");
        let mut items: Vec<TransactWriteItem> =
            vec![profile.update(&self.table, key(org_pk(&org.id), PROFILE_SK))?];
        // A member's change: they are still an owner when it is written (demoting an
        // owner does not move the org's revision).
        if let Who::Owner(member) = by {
            let check = ConditionCheck::builder()
                .table_name(&*self.table)
                .set_key(Some(key(org_pk(&org.id), member_sk(member))))
                .condition_expression("#role = :owner")
                .expression_attribute_names("#role", "role")
                .expression_attribute_values(":owner", s(Role::Owner.as_str()))
                .build()
                .map_err(unbuilt)?;
            items.push(TransactWriteItem::builder().condition_check(check).build());
        }
        if let Some(mut w) = wallet {
            w.condition("attribute_exists(pk)");
            items.push(w.update(&self.table, key(org_pk(&org.id), WALLET_SK))?);
        }
        for d in diffs {
            items.push(put(
                &self.table,
                history_item(org, d, by.name(), now),
                Some("attribute_not_exists(pk)"),
                false,
            )?);
        }
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        committed(sent)
    }

    /// An owner's change of the org as read (`org`, its wallet's `seen` settings): what
    /// differs is written with its history, or nothing when nothing differs. `None`: the
    /// org or its threshold moved meanwhile (read it again); nothing was written.
    pub async fn change_settings(
        &self,
        org: &Org,
        seen: &WalletSettings,
        change: &SettingsChange,
        by: &MemberId,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<SettingChanged>>, StoreError> {
        let diffs = change.diff(org, seen);
        if diffs.is_empty() {
            return Ok(Some(vec![]));
        }
        let mut profile = revised(org);
        if let Some(p) = change.purchase_policy {
            profile.set("purchase_policy", s(p.as_str()));
        }
        if let Some(b) = change.members_see_billing {
            profile.set(
                "members_see_billing",
                aws_sdk_dynamodb::types::AttributeValue::Bool(b),
            );
        }
        let wallet = match change.low_threshold {
            Some(to) if to != seen.low_threshold => {
                let mut w = UpdateExpr::default();
                match to {
                    Some(t) => w.set("low_threshold", n_usd(t)),
                    None => w.remove("low_threshold"),
                }
                match seen.low_threshold {
                    Some(v) => {
                        w.condition("#low_threshold = :seen_low");
                        w.value(":seen_low", n_usd(v));
                    }
                    None => w.condition("attribute_not_exists(#low_threshold)"),
                }
                Some(w)
            }
            _ => None,
        };
        let written = self
            .write_settings(org, profile, wallet, &diffs, Who::Owner(by), now)
            .await?;
        Ok(written.then(|| stamped(diffs, by.as_str(), now)))
    }

    /// An operator sets the org's markup (`None`: the deployment's default), on the
    /// condition that it is still `seen`. `None`: it moved meanwhile; nothing written.
    pub async fn set_markup(
        &self,
        org: &Org,
        seen: Option<Markup>,
        to: Option<Markup>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<SettingChanged>>, StoreError> {
        if seen == to {
            return Ok(Some(vec![]));
        }
        let diff = (
            Setting::Markup,
            seen.map(|m| m.to_string()),
            to.map(|m| m.to_string()),
        );
        let mut w = UpdateExpr::default();
        match to {
            Some(m) => w.set("markup", n_dec(m.as_decimal())),
            None => w.remove("markup"),
        }
        match seen {
            Some(m) => {
                w.condition("#markup = :seen_markup");
                w.value(":seen_markup", n_dec(m.as_decimal()));
            }
            None => w.condition("attribute_not_exists(#markup)"),
        }
        let diffs = [diff];
        let written = self
            .write_settings(org, revised(org), Some(w), &diffs, Who::Operator(by), now)
            .await?;
        Ok(written.then(|| stamped(diffs.to_vec(), by, now)))
    }

    /// The org's settings history, newest first, at most `limit` changes (one query of
    /// that many items, however long the history).
    pub async fn settings_history(&self, org: &Org, limit: u16) -> Result<Vec<SettingChanged>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(org_pk(&org.id)))
            .expression_attribute_values(":prefix", s(HISTORY_PREFIX))
            .scan_index_forward(false)
            .limit(i32::from(limit))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        out.items().iter().map(changed_from_item).collect()
    }
}

fn stamped(diffs: Vec<Diff>, by: &str, at: DateTime<Utc>) -> Vec<SettingChanged> {
    diffs
        .into_iter()
        .map(|(setting, from, to)| SettingChanged {
            setting,
            from,
            to,
            by: by.to_owned(),
            at,
        })
        .collect()
}
