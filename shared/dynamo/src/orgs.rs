//! Orgs and their members: `ORG#<org>/PROFILE` and `ORG#<org>/MEMBER#<sub>` (with
//! `gsi1pk = USER#<sub>` for "my orgs"). The profile counts its owners, and every change
//! of an owner's role moves that count under a condition, so an org never loses its last
//! owner, whatever the concurrency.

use std::sync::Arc;

use agent_credits_domain::{
    BillingMode, MemberId, Org, OrgId, Provider, PurchasePolicy, Role, Runtime, StoreError, WalletSettings,
    recharge,
};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};

use crate::attr::{Item, Reader, n_u64, s};
use crate::items::{self, WALLET_SK, key, member_sk, org_pk, timestamp};
use crate::recharge::{RechargeConfig, card_owner_leaves, read_config};
use crate::store::{get_consistent, query_prefix, sdk_error};
use crate::update::UpdateExpr;

pub(crate) const PROFILE_SK: &str = "PROFILE";

pub use agent_credits_domain::Member;

/// An org's provider key as shown: never the key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyMeta {
    pub provider: Provider,
    pub last4: String,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
}

fn key_sk(provider: Provider) -> String {
    format!("KEY#{provider}")
}

/// Whose an org id is, once reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// Reserved for this creator (now, or by an earlier try of theirs).
    Ours,
    /// Created and opened by this creator before, as asked again now.
    AlreadyOpen,
    /// Someone else's org.
    Taken,
}

/// What became of a membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    Done,
    /// It would leave the org without an owner.
    LastOwner,
    NotAMember,
}

#[derive(Clone)]
pub struct OrgStore {
    pub(crate) client: Client,
    pub(crate) table: Arc<str>,
}

fn bad(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(e.to_string())
}

pub(crate) fn cancelled_on_condition(
    err: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError>,
) -> bool {
    matches!(err.as_service_error(), Some(TransactWriteItemsError::TransactionCanceledException(e))
        if e.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed")))
}

/// Whether a conditioned transaction was written: `false` when one of its conditions
/// refused it, and nothing was.
pub(crate) fn committed<O>(
    sent: Result<O, aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError>>,
) -> Result<bool, StoreError> {
    match sent {
        Ok(_) => Ok(true),
        Err(e) if cancelled_on_condition(&e) => Ok(false),
        Err(e) => Err(sdk_error(e)),
    }
}

/// The PROFILE update that moves the org's revision on from the one `org` was read at, on
/// the condition that neither it nor the billing mode moved meanwhile.
pub(crate) fn revised(org: &Org) -> UpdateExpr {
    let mut profile = UpdateExpr::default();
    profile.set("revision", n_u64(org.revision + 1));
    profile.name_only("billing_mode");
    profile.condition("#billing_mode = :seen_mode");
    profile.value(":seen_mode", s(org.billing_mode.as_str()));
    if org.revision == 0 {
        profile.condition("attribute_not_exists(#revision)");
    } else {
        profile.condition("#revision = :seen_revision");
        profile.value(":seen_revision", n_u64(org.revision));
    }
    profile
}

impl OrgStore {
    pub fn new(client: Client, table: impl Into<Arc<str>>) -> OrgStore {
        OrgStore {
            client,
            table: table.into(),
        }
    }

    fn member_item(&self, org: &OrgId, member: &MemberId, role: Role, now: DateTime<Utc>) -> Item {
        let mut item = key(org_pk(org), member_sk(member));
        item.extend([
            ("type".to_owned(), s("member")),
            ("member".to_owned(), s(member.as_str())),
            ("role".to_owned(), s(role.as_str())),
            ("added_at".to_owned(), timestamp(now)),
            ("gsi1pk".to_owned(), s(format!("USER#{member}"))),
            ("gsi1sk".to_owned(), s(org_pk(org))),
        ]);
        item
    }

    /// Creates the org with `owner` as its first owner and its billing settings on the
    /// wallet ([`OrgStore::reserve`], then [`OrgStore::open`]). `false` when the org id is
    /// taken.
    pub async fn create(
        &self,
        org: &Org,
        owner: &MemberId,
        settings: &WalletSettings,
    ) -> Result<bool, StoreError> {
        match self.reserve(org, owner).await? {
            Reserved::Taken | Reserved::AlreadyOpen => Ok(false),
            Reserved::Ours => {
                self.open(&org.id, owner, settings).await?;
                Ok(true)
            }
        }
    }

    /// Reserves the org id for `owner`: its profile, marked as being created by them
    /// (`creating_by`; every read treats the org as absent until it opens), and `owner` as
    /// its first owner, in one transaction. A reservation of theirs that never opened (a
    /// failure halfway) is theirs again, with the profile of this request.
    pub async fn reserve(&self, org: &Org, owner: &MemberId) -> Result<Reserved, StoreError> {
        let mut profile = key(org_pk(&org.id), PROFILE_SK);
        profile.extend([
            ("type".to_owned(), s("org")),
            ("name".to_owned(), s(org.name.clone())),
            ("runtime".to_owned(), s(org.runtime.as_str())),
            ("billing_mode".to_owned(), s(org.billing_mode.as_str())),
            ("purchase_policy".to_owned(), s(org.purchase_policy.as_str())),
            (
                "members_see_billing".to_owned(),
                AttributeValue::Bool(org.members_see_billing),
            ),
            (
                "credits_per_usd".to_owned(),
                n_u64(u64::from(org.credits_per_usd)),
            ),
            ("created_at".to_owned(), timestamp(org.created_at)),
            ("owners".to_owned(), n_u64(1)),
            ("created_by".to_owned(), s(owner.as_str())),
            ("creating_by".to_owned(), s(owner.as_str())),
        ]);
        if let Some(referrer) = &org.referred_by {
            profile.insert("referred_by".to_owned(), s(referrer.as_str()));
        }
        let put = |item: Item,
                   condition: Option<&str>,
                   mine: Option<&MemberId>|
         -> Result<TransactWriteItem, StoreError> {
            let mut p = Put::builder()
                .table_name(&*self.table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_owned));
            if let Some(me) = mine {
                p = p
                    .expression_attribute_names("#creating_by", "creating_by")
                    .expression_attribute_values(":me", s(me.as_str()));
            }
            Ok(TransactWriteItem::builder().put(p.build().map_err(bad)?).build())
        };
        let member = self.member_item(&org.id, owner, Role::Owner, org.created_at);
        let fresh = vec![
            put(profile.clone(), Some("attribute_not_exists(pk)"), None)?,
            put(member.clone(), Some("attribute_not_exists(pk)"), None)?,
        ];
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(fresh))
            .send()
            .await
        {
            Ok(_) => return Ok(Reserved::Ours),
            Err(e) if cancelled_on_condition(&e) => {}
            Err(e) => return Err(sdk_error(e)),
        }
        // Taken, unless it is this creator's own unfinished reservation.
        let again = vec![
            put(profile, Some("#creating_by = :me"), Some(owner))?,
            put(member, None, None)?,
        ];
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(again))
            .send()
            .await
        {
            Ok(_) => return Ok(Reserved::Ours),
            Err(e) if cancelled_on_condition(&e) => {}
            Err(e) => return Err(sdk_error(e)),
        }
        // Opened already by this creator, as this request asks (a retry whose first answer
        // was lost): the same org, not a conflict.
        let same = match self.get(&org.id).await? {
            Some(open) => {
                open.runtime == org.runtime && open.billing_mode == org.billing_mode && open.name == org.name
            }
            None => false,
        };
        let profile = get_consistent(&self.client, &self.table, key(org_pk(&org.id), PROFILE_SK)).await?;
        let creator = match profile.as_ref() {
            Some(item) => Reader::new(item).opt_s("created_by")?.map(str::to_owned),
            None => None,
        };
        Ok(if same && creator.as_deref() == Some(owner.as_str()) {
            Reserved::AlreadyOpen
        } else {
            Reserved::Taken
        })
    }

    /// Opens an org `owner` reserved: its billing settings on the wallet and the
    /// reservation lifted, together.
    pub async fn open(
        &self,
        org: &OrgId,
        owner: &MemberId,
        settings: &WalletSettings,
    ) -> Result<(), StoreError> {
        let mut wallet = UpdateExpr::default();
        wallet.set("type", s("wallet"));
        for (name, value) in items::settings_attrs(settings) {
            match value {
                Some(v) => wallet.set(name, v),
                None => wallet.remove(name),
            }
        }
        let mut profile = UpdateExpr::default();
        profile.remove("creating_by");
        profile.condition("#creating_by = :me");
        profile.value(":me", s(owner.as_str()));
        self.client
            .transact_write_items()
            .transact_items(profile.update(&self.table, key(org_pk(org), PROFILE_SK))?)
            .transact_items(wallet.update(&self.table, key(org_pk(org), WALLET_SK))?)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    pub async fn get(&self, org: &OrgId) -> Result<Option<Org>, StoreError> {
        let out = get_consistent(&self.client, &self.table, key(org_pk(org), PROFILE_SK)).await?;
        // Reserved but not open yet: nobody sees it.
        let Some(item) = out.as_ref().filter(|i| !i.contains_key("creating_by")) else {
            return Ok(None);
        };
        let r = Reader::new(item);
        let runtime = r.s("runtime")?;
        let mode = r.s("billing_mode")?;
        Ok(Some(Org {
            id: org.clone(),
            name: r.s("name")?.to_owned(),
            runtime: Runtime::parse(runtime).ok_or_else(|| r.corrupt(format!("runtime {runtime}")))?,
            billing_mode: BillingMode::parse(mode)
                .ok_or_else(|| r.corrupt(format!("billing mode {mode}")))?,
            // An unknown policy is the narrowest.
            purchase_policy: PurchasePolicy::parse(r.s("purchase_policy")?).unwrap_or_default(),
            members_see_billing: r.opt_bool("members_see_billing")?.unwrap_or(true),
            credits_per_usd: u32::try_from(r.u64("credits_per_usd")?)
                .map_err(|e| r.corrupt(e.to_string()))?,
            created_at: DateTime::parse_from_rfc3339(r.s("created_at")?)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| r.corrupt(e.to_string()))?,
            referred_by: r
                .opt_s("referred_by")?
                .map(OrgId::parse)
                .transpose()
                .map_err(|e| r.corrupt(e.to_string()))?,
            revision: if r.has("revision") { r.u64("revision")? } else { 0 },
        }))
    }

    pub async fn member(&self, org: &OrgId, member: &MemberId) -> Result<Option<Member>, StoreError> {
        let out = get_consistent(&self.client, &self.table, key(org_pk(org), member_sk(member))).await?;
        // A limit set before the membership leaves an item without a role: not a member.
        out.as_ref()
            .filter(|i| i.contains_key("role"))
            .map(member_from_item)
            .transpose()
    }

    /// The org and the caller's role in it; `None` for a non-member (or no such org).
    pub async fn membership(
        &self,
        org: &OrgId,
        member: &MemberId,
    ) -> Result<Option<(Org, Member)>, StoreError> {
        // Both reads at once: every dashboard request starts here.
        let (m, o) = tokio::try_join!(self.member(org, member), self.get(org))?;
        Ok(m.zip(o).map(|(m, o)| (o, m)))
    }

    /// `member`'s personal account and their membership of it (its one owner), opened as
    /// an org is created the first time they use it: on credits, owners only. Two first
    /// uses at once open it once.
    pub async fn personal(&self, member: &MemberId) -> Result<(Org, Member), StoreError> {
        let id = OrgId::personal(member);
        for _ in 0..3 {
            if let Some(found) = self.membership(&id, member).await? {
                return Ok(found);
            }
            let settings = WalletSettings {
                billing_mode: Some(BillingMode::Credits),
                ..Default::default()
            };
            match self
                .create(&Org::personal(member, Utc::now()), member, &settings)
                .await
            {
                // Two first uses at once: the one that lost its condition reads the
                // account the other opened.
                Ok(_) | Err(StoreError::Unavailable(_) | StoreError::Contention { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        // Opened by another request of theirs that has not finished: retry.
        Err(StoreError::Contention { attempts: 3 })
    }

    pub async fn members(&self, org: &OrgId) -> Result<Vec<Member>, StoreError> {
        query_prefix(&self.client, &self.table, org_pk(org), "MEMBER#")
            .await?
            .iter()
            .filter(|item| item.contains_key("role"))
            .map(member_from_item)
            .collect()
    }

    /// Switches the billing mode of `org` as it was read to `to` (already checked against
    /// the allowed switches), on its profile and its wallet together. `false` when its
    /// mode or revision moved meanwhile.
    pub async fn set_billing_mode(&self, org: &Org, to: BillingMode) -> Result<bool, StoreError> {
        let mut profile = revised(org);
        profile.set("billing_mode", s(to.as_str()));
        let mut wallet = UpdateExpr::default();
        wallet.set("billing_mode", s(to.as_str()));
        let sent = self
            .client
            .transact_write_items()
            .transact_items(profile.update(&self.table, key(org_pk(&org.id), PROFILE_SK))?)
            .transact_items(wallet.update(&self.table, key(org_pk(&org.id), WALLET_SK))?)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// Records the org's key for `provider`: its last four characters and secret name,
    /// never the key.
    pub async fn record_key(
        &self,
        org: &OrgId,
        provider: Provider,
        last4: &str,
        secret_name: &str,
        now: DateTime<Utc>,
    ) -> Result<KeyMeta, StoreError> {
        let mut meta = UpdateExpr::default();
        meta.set("type", s("provider_key"));
        meta.set("provider", s(provider.as_str()));
        meta.set("last4", s(last4));
        meta.set("secret_name", s(secret_name));
        meta.set_if_absent("created_at", timestamp(now));
        meta.set("updated_at", timestamp(now));
        self.client
            .transact_write_items()
            .transact_items(meta.update(&self.table, key(org_pk(org), key_sk(provider)))?)
            .send()
            .await
            .map_err(sdk_error)?;
        self.keys(org)
            .await?
            .into_iter()
            .find(|k| k.provider == provider)
            .ok_or_else(|| StoreError::Invalid("a key just recorded is missing".into()))
    }

    /// The org's keys, as shown: provider, last four, dates.
    pub async fn keys(&self, org: &OrgId) -> Result<Vec<KeyMeta>, StoreError> {
        query_prefix(&self.client, &self.table, org_pk(org), "KEY#")
            .await?
            .iter()
            .map(|item| {
                let r = Reader::new(item);
                let provider = r.s("provider")?;
                let created_at = items::parse_time(&r, "created_at")?;
                let updated_at = items::parse_time(&r, "updated_at")?;
                Ok(KeyMeta {
                    provider: Provider::parse(provider).ok_or_else(|| r.corrupt("unknown provider"))?,
                    last4: r.s("last4")?.to_owned(),
                    created_at,
                    rotated_at: (updated_at != created_at).then_some(updated_at),
                })
            })
            .collect()
    }

    /// Forgets the org's key for `provider`. The rules were checked against `org` as read: the org's revision
    /// moves on under the condition that it has not moved meanwhile. `false` when there was
    /// no such key, or the org changed: nothing is written.
    pub async fn forget_key(&self, org: &Org, provider: Provider) -> Result<bool, StoreError> {
        let before = self.keys(&org.id).await?;
        if !before.iter().any(|k| k.provider == provider) {
            return Ok(false);
        }
        let delete = Delete::builder()
            .table_name(&*self.table)
            .set_key(Some(key(org_pk(&org.id), key_sk(provider))))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(revised(org).update(&self.table, key(org_pk(&org.id), PROFILE_SK))?)
            .send()
            .await;
        committed(sent)
    }

    /// Adds a member or changes a role. The member's current role is part of the
    /// condition, and the owner count moves with it, so concurrent changes cannot leave
    /// an org without an owner. A role that may no longer manage auto-recharge takes the
    /// member's card with it, in the same transaction ([`card_owner_leaves`]).
    pub async fn set_role(
        &self,
        org: &OrgId,
        member: &MemberId,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<MemberChange, StoreError> {
        for _ in 0..MEMBER_TRIES {
            let (current, config) = tokio::try_join!(self.member(org, member), self.recharge_config(org))?;
            let mut x = UpdateExpr::default();
            x.set("type", s("member"));
            x.set("member", s(member.as_str()));
            x.set("role", s(role.as_str()));
            x.set("gsi1pk", s(format!("USER#{member}")));
            x.set("gsi1sk", s(org_pk(org)));
            match &current {
                Some(m) => {
                    x.condition("#role = :was");
                    x.value(":was", s(m.role.as_str()));
                }
                None => {
                    x.set("added_at", timestamp(now));
                    x.condition("attribute_not_exists(#role)");
                }
            }
            let mut tx = MemberTx::new(self.update(key(org_pk(org), member_sk(member)), x)?);
            let was_owner = current.as_ref().is_some_and(|m| m.role == Role::Owner);
            if was_owner != (role == Role::Owner) {
                tx.owner_count(self.owner_count(org, role == Role::Owner)?);
            }
            if current.is_some() && !recharge::CARD_OWNER_ROLES.contains(&role) {
                tx.card(card_owner_leaves(&self.table, org, member, config.as_ref(), now)?);
            }
            if let Some(done) = self.commit(tx).await? {
                return Ok(done);
            }
        }
        Err(StoreError::Contention {
            attempts: MEMBER_TRIES,
        })
    }

    /// Removes a member; their card leaves with them ([`card_owner_leaves`]).
    pub async fn remove(
        &self,
        org: &OrgId,
        member: &MemberId,
        now: DateTime<Utc>,
    ) -> Result<MemberChange, StoreError> {
        for _ in 0..MEMBER_TRIES {
            let (current, config) = tokio::try_join!(self.member(org, member), self.recharge_config(org))?;
            let Some(current) = current else {
                return Ok(MemberChange::NotAMember);
            };
            let delete = Delete::builder()
                .table_name(&*self.table)
                .set_key(Some(key(org_pk(org), member_sk(member))))
                .condition_expression("#role = :was")
                .expression_attribute_names("#role", "role")
                .expression_attribute_values(":was", s(current.role.as_str()))
                .build()
                .map_err(bad)?;
            let mut tx = MemberTx::new(TransactWriteItem::builder().delete(delete).build());
            if current.role == Role::Owner {
                tx.owner_count(self.owner_count(org, false)?);
            }
            tx.card(card_owner_leaves(&self.table, org, member, config.as_ref(), now)?);
            if let Some(done) = self.commit(tx).await? {
                return Ok(done);
            }
        }
        Err(StoreError::Contention {
            attempts: MEMBER_TRIES,
        })
    }

    async fn recharge_config(&self, org: &OrgId) -> Result<Option<RechargeConfig>, StoreError> {
        read_config(&self.client, &self.table, org).await
    }

    /// Records the member's Stripe customer unless one is recorded already, and answers
    /// the one that stands: two checkouts racing for a new member end up on one customer.
    pub async fn keep_stripe_customer(
        &self,
        org: &OrgId,
        member: &MemberId,
        customer: &str,
    ) -> Result<String, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(key(org_pk(org), member_sk(member))))
            .update_expression("SET stripe_customer = if_not_exists(stripe_customer, :c)")
            .condition_expression("attribute_exists(#role)")
            .expression_attribute_names("#role", "role")
            .expression_attribute_values(":c", s(customer))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk_error)?;
        let stored = out
            .attributes()
            .and_then(|a| a.get("stripe_customer"))
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_else(|| customer.to_owned());
        // The org remembers every customer that ever paid it, so its invoices stay listed
        // after their member leaves.
        let mut item = key(org_pk(org), format!("CUSTOMER#{stored}"));
        item.extend([
            ("type".to_owned(), s("customer")),
            ("customer".to_owned(), s(stored.as_str())),
            ("member".to_owned(), s(member.as_str())),
        ]);
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(stored)
    }

    /// Every Stripe customer that paid the org: those it remembers, and its members'.
    pub async fn customers(&self, org: &OrgId) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let mut customers: std::collections::BTreeSet<String> =
            query_prefix(&self.client, &self.table, org_pk(org), "CUSTOMER#")
                .await?
                .iter()
                .filter_map(|item| item.get("customer").and_then(|v| v.as_s().ok()).cloned())
                .collect();
        for m in self.members(org).await? {
            if let Some(c) = m.stripe_customer {
                customers.insert(c);
            }
        }
        Ok(customers)
    }

    fn owner_count(&self, org: &OrgId, up: bool) -> Result<TransactWriteItem, StoreError> {
        let mut x = UpdateExpr::default();
        if up {
            x.add("owners", n_u64(1));
        } else {
            x.add("owners", AttributeValue::N("-1".into()));
            x.condition("#owners > :one");
            x.value(":one", n_u64(1));
        }
        self.update(key(org_pk(org), PROFILE_SK), x)
    }

    fn update(&self, key: Item, x: UpdateExpr) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&*self.table)
            .set_key(Some(key))
            .update_expression(x.update_expression())
            .set_condition_expression(x.condition_expression())
            .set_expression_attribute_names(Some(x.names.clone()))
            .set_expression_attribute_values(x.values())
            .build()
            .map_err(bad)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// `None`: the member or their card changed meanwhile; read again and retry.
    async fn commit(&self, tx: MemberTx) -> Result<Option<MemberChange>, StoreError> {
        let MemberTx {
            items,
            owner_at,
            card_at,
        } = tx;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Some(MemberChange::Done)),
            Err(err) => {
                let Some(TransactWriteItemsError::TransactionCanceledException(e)) = err.as_service_error()
                else {
                    return Err(sdk_error(err));
                };
                let reasons = e.cancellation_reasons();
                let failed =
                    |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
                if owner_at.is_some_and(failed) {
                    Ok(Some(MemberChange::LastOwner))
                } else if failed(0) || card_at.is_some_and(failed) {
                    Ok(None)
                } else {
                    Err(sdk_error(err))
                }
            }
        }
    }
}

/// How often a membership change reads again when the member or their card moved under
/// it before it gives up (`503`, safe to retry).
const MEMBER_TRIES: u32 = 5;

/// A membership change's items: the member first, then the owner count and the card.
struct MemberTx {
    items: Vec<TransactWriteItem>,
    owner_at: Option<usize>,
    card_at: Option<usize>,
}

impl MemberTx {
    fn new(member: TransactWriteItem) -> MemberTx {
        MemberTx {
            items: vec![member],
            owner_at: None,
            card_at: None,
        }
    }

    fn owner_count(&mut self, item: TransactWriteItem) {
        self.owner_at = Some(self.items.len());
        self.items.push(item);
    }

    fn card(&mut self, items: Vec<TransactWriteItem>) {
        self.card_at = Some(self.items.len());
        self.items.extend(items);
    }
}

fn member_from_item(item: &Item) -> Result<Member, StoreError> {
    let r = Reader::new(item);
    let role = r.s("role")?;
    Ok(Member {
        id: MemberId::parse(r.s("member")?).map_err(|e| r.corrupt(e.to_string()))?,
        role: Role::parse(role).ok_or_else(|| r.corrupt(format!("role {role}")))?,
        monthly_limit: items::member_limit_from_item(item)?,
        stripe_customer: r.opt_s("stripe_customer")?.map(str::to_owned),
    })
}

impl agent_credits_domain::OrgDirectory for OrgStore {
    fn membership<'a>(
        &'a self,
        org: &'a OrgId,
        member: &'a MemberId,
    ) -> agent_credits_domain::ports::Pending<'a, Option<(agent_credits_domain::Org, Member)>> {
        Box::pin(OrgStore::membership(self, org, member))
    }
}
