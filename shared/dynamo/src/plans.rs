//! Plan subscriptions beyond the ledger:
//!
//! - `ORG#<org>` / `SUBSCRIPTION`: the org's plan subscription (its Stripe id, the
//!   customer it bills, when Stripe created it). Stripe's events about it may come in any
//!   order, so a record is only ever replaced by a subscription created later: the org's
//!   newest subscription stands. Its status, plan and period are asked of Stripe when
//!   needed, never kept here.
//! - `ORG#<org>` / `PLANGRANT#<invoice>#<month>`: an annual plan's monthly grants after the
//!   first, one marker per month (`gsi1pk = DUE#PLANGRANT`, `gsi1sk = <due>#<org>#...`),
//!   put before the year's invoice is recorded. The recharge function's tick grants each
//!   once it is due, as a renewal under `stripe:invoice:<invoice>:m<month>`, then retires
//!   the marker. The ledger is the truth: a month is granted exactly when its key is used.
//!   Money going back for the invoice (a refund, a lost dispute) ends the months to come
//!   with one entry under `stripe:invoice:<invoice>:ended`, which every month's grant
//!   yields to in its own transaction: a month commits before the end (and counts in what
//!   the invoice granted, which the take-back reads after the end) or never.

use agent_credits_domain::{ChangeRequest, EntryKind, OrgId, Refusal, StoreError, Usd, WalletStore, keys};
use chrono::{DateTime, Utc};

use crate::attr::{Item, Reader, n_u64, n_usd, s};
use crate::items::{hold_time, key, org_pk, parse_time, timestamp};
use crate::orgs::OrgStore;
use crate::store::{DynamoWalletStore, get_consistent, query_due, query_prefix, sdk_error};

const SUBSCRIPTION_SK: &str = "SUBSCRIPTION";
const PLAN_LOCK_SK: &str = "PLAN_LOCK";
/// `gsi1pk` of annual plans' monthly grants: the tick's one query, by date.
pub const GRANTS_DUE_PK: &str = "DUE#PLANGRANT";

/// The org's plan subscription as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub subscription: String,
    pub customer: String,
    pub created: DateTime<Utc>,
}

/// One month of an annual plan still to grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthlyGrant {
    pub org: OrgId,
    pub invoice: String,
    /// 1 to 11: the months after the invoice's own.
    pub month: u32,
    pub due: DateTime<Utc>,
    pub base: Usd,
    pub rollover_cap: Usd,
}

/// What one pass over due monthly grants did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GrantsMade {
    pub due: usize,
    pub granted: usize,
    pub errors: usize,
}

fn grant_sk(invoice: &str, month: u32) -> String {
    format!("PLANGRANT#{invoice}#{month:02}")
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

async fn read_subscription(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    org: &OrgId,
) -> Result<Option<SubscriptionRecord>, StoreError> {
    let Some(item) = get_consistent(client, table, key(org_pk(org), SUBSCRIPTION_SK)).await? else {
        return Ok(None);
    };
    let r = Reader::new(&item);
    Ok(Some(SubscriptionRecord {
        subscription: r.s("subscription")?.to_owned(),
        customer: r.s("customer")?.to_owned(),
        created: parse_time(&r, "created")?,
    }))
}

impl OrgStore {
    /// The org's newest plan subscription, if it ever had one.
    pub async fn subscription(&self, org: &OrgId) -> Result<Option<SubscriptionRecord>, StoreError> {
        read_subscription(&self.client, &self.table, org).await
    }

    /// Takes the org's plan lock until `until` (`ORG#<org>` / `PLAN_LOCK`): one plan change
    /// or subscription at a time, so two changes read at once never both apply to what
    /// they read. `None` while another holds it; a lock left by a crash lapses at `until`.
    /// The lock also remembers the subscription period its last change was made in.
    pub async fn lock_plan(
        &self,
        org: &OrgId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<PlanLock>, StoreError> {
        let token = format!(
            "{}-{}",
            now.timestamp_nanos_opt().unwrap_or_default(),
            std::process::id()
        );
        let update = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(key(org_pk(org), PLAN_LOCK_SK)))
            .update_expression("SET #type = :type, #until = :until, #token = :token")
            .condition_expression("attribute_not_exists(pk) OR #until < :now")
            .expression_attribute_names("#type", "type")
            .expression_attribute_names("#until", "until")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":type", s("plan_lock"))
            .expression_attribute_values(":until", timestamp(until))
            .expression_attribute_values(":token", s(token.as_str()))
            .expression_attribute_values(":now", timestamp(now))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match update {
            Ok(out) => {
                let changed_in = out
                    .attributes()
                    .and_then(|a| a.get("changed_in"))
                    .and_then(|v| v.as_s().ok())
                    .cloned();
                Ok(Some(PlanLock { token, changed_in }))
            }
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(None),
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// Gives the plan lock back (unless it lapsed and another took it), recording the
    /// period a change was made in when one was.
    pub async fn unlock_plan(
        &self,
        org: &OrgId,
        lock: &PlanLock,
        changed_in: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(key(org_pk(org), PLAN_LOCK_SK)))
            .condition_expression("#token = :token")
            .expression_attribute_names("#until", "until")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":token", s(lock.token.as_str()))
            .expression_attribute_values(":lapsed", timestamp(DateTime::<Utc>::UNIX_EPOCH));
        update = match changed_in {
            Some(period) => update
                .update_expression("SET #until = :lapsed, changed_in = :period")
                .expression_attribute_values(":period", s(period)),
            None => update.update_expression("SET #until = :lapsed"),
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(()),
            Err(e) => Err(sdk_error(e)),
        }
    }
}

/// The org's plan lock, held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLock {
    token: String,
    /// The subscription period (`<subscription>#<period end>`) the last change was made in.
    pub changed_in: Option<String>,
}

impl DynamoWalletStore {
    pub async fn subscription(&self, org: &OrgId) -> Result<Option<SubscriptionRecord>, StoreError> {
        read_subscription(self.client(), self.table(), org).await
    }

    /// Records the org's subscription unless one created later is recorded: `true` when
    /// this one stands.
    pub async fn record_subscription(
        &self,
        org: &OrgId,
        sub: &SubscriptionRecord,
    ) -> Result<bool, StoreError> {
        let mut item = key(org_pk(org), SUBSCRIPTION_SK);
        item.extend([
            ("type".to_owned(), s("subscription")),
            ("subscription".to_owned(), s(sub.subscription.as_str())),
            ("customer".to_owned(), s(sub.customer.as_str())),
            ("created".to_owned(), timestamp(sub.created)),
        ]);
        let put = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR created <= :c")
            .expression_attribute_values(":c", timestamp(sub.created))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// Puts the markers of an annual invoice's monthly grants after its first (each once:
    /// a marker already there, granted or ended, is left as it is).
    pub async fn schedule_monthly_grants(&self, grants: &[MonthlyGrant]) -> Result<(), StoreError> {
        for g in grants {
            let mut item = key(org_pk(&g.org), grant_sk(&g.invoice, g.month));
            item.extend([
                ("type".to_owned(), s("plan_grant")),
                ("org".to_owned(), s(g.org.as_str())),
                ("invoice".to_owned(), s(g.invoice.as_str())),
                ("month".to_owned(), n_u64(u64::from(g.month))),
                ("due".to_owned(), timestamp(g.due)),
                ("base".to_owned(), n_usd(g.base)),
                ("rollover_cap".to_owned(), n_usd(g.rollover_cap)),
                ("state".to_owned(), s("pending")),
                ("gsi1pk".to_owned(), s(GRANTS_DUE_PK)),
                (
                    "gsi1sk".to_owned(),
                    s(format!(
                        "{}#{}#{}#{:02}",
                        hold_time(g.due),
                        g.org,
                        g.invoice,
                        g.month
                    )),
                ),
            ]);
            let put = self
                .client()
                .put_item()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match put {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(is_condition_failure) => {}
                Err(e) => return Err(sdk_error(e)),
            }
        }
        Ok(())
    }

    /// The monthly grants whose day has come (pending).
    pub async fn due_monthly_grants(&self) -> Result<Vec<MonthlyGrant>, StoreError> {
        let upto = format!("{}~", hold_time(self.now()));
        let mut due = vec![];
        for item in query_due(self.client(), self.table(), GRANTS_DUE_PK, &upto).await? {
            match grant_from_item(&item) {
                Ok(g) => due.push(g),
                // One unreadable marker must not hide the others.
                Err(e) => tracing::error!(error = %e, "an unreadable plan grant marker"),
            }
        }
        Ok(due)
    }

    /// Makes one due month's grant, unless the invoice's months were ended, then retires
    /// its marker. `true` when this call granted it.
    pub async fn make_monthly_grant(&self, g: &MonthlyGrant) -> Result<bool, StoreError> {
        let bad = |e: agent_credits_domain::IdError| StoreError::Invalid(format!("plan grant key: {e}"));
        let month = keys::invoice_month(&g.invoice, g.month).map_err(bad)?;
        let ended = keys::invoice_months_ended(&g.invoice).map_err(bad)?;
        let req = ChangeRequest::renew_plan(g.org.clone(), g.base, g.rollover_cap, month).unless(ended);
        let (granted, state) = match self.apply(req).await? {
            Ok(applied) => (!applied.replayed(), "granted"),
            Err(Refusal::Superseded) => (false, "ended"),
            Err(refusal) => {
                return Err(StoreError::Invalid(format!(
                    "a monthly plan grant of {} came back {refusal:?}",
                    g.org
                )));
            }
        };
        self.retire_month(&g.org, &g.invoice, g.month, state).await?;
        Ok(granted)
    }

    async fn retire_month(
        &self,
        org: &OrgId,
        invoice: &str,
        month: u32,
        state: &str,
    ) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(org_pk(org), grant_sk(invoice, month))))
            .update_expression("SET #state = :state REMOVE gsi1pk, gsi1sk")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// The tick: every due month, granted once each.
    pub async fn sweep_monthly_grants(&self) -> Result<GrantsMade, StoreError> {
        let due = self.due_monthly_grants().await?;
        let mut done = GrantsMade {
            due: due.len(),
            ..GrantsMade::default()
        };
        for g in &due {
            match self.make_monthly_grant(g).await {
                Ok(true) => done.granted += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(org = %g.org, invoice = g.invoice, error = %e, "a monthly plan grant failed; retried next tick");
                    done.errors += 1;
                }
            }
        }
        Ok(done)
    }

    /// Ends the annual invoice's months to come (its payment went back), once: a month
    /// granted before stays, none is granted after. Answers how many months after the
    /// first it granted, which no later grant changes.
    pub async fn end_monthly_grants(
        &self,
        org: &OrgId,
        invoice: &str,
        external: agent_credits_domain::ExternalRefs,
    ) -> Result<u32, StoreError> {
        let bad = |e: agent_credits_domain::IdError| StoreError::Invalid(format!("plan grant key: {e}"));
        let ended = keys::invoice_months_ended(invoice).map_err(bad)?;
        let note = ChangeRequest::note(org.clone(), EntryKind::PlanGrant, ended).with_external(external);
        if let Err(refusal) = self.apply(note).await? {
            return Err(StoreError::Invalid(format!(
                "ending {invoice}'s months came back {refusal:?}"
            )));
        }
        // The ledger says which months were granted; the markers of the others retire.
        let mut granted = 0;
        for month in 1..12 {
            let key_ = keys::invoice_month(invoice, month).map_err(bad)?;
            if self.key_used(org, &key_).await? {
                granted += 1;
                continue;
            }
            let retired = self
                .client()
                .update_item()
                .table_name(self.table())
                .set_key(Some(key(org_pk(org), grant_sk(invoice, month))))
                .update_expression("SET #state = :ended REMOVE gsi1pk, gsi1sk")
                .condition_expression("#state = :pending")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":ended", s("ended"))
                .expression_attribute_values(":pending", s("pending"))
                .send()
                .await;
            match retired {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(is_condition_failure) => {}
                Err(e) => return Err(sdk_error(e)),
            }
        }
        Ok(granted)
    }

    /// An org's monthly grant markers (tests and the simulator).
    pub async fn monthly_grants(&self, org: &OrgId) -> Result<Vec<(MonthlyGrant, String)>, StoreError> {
        query_prefix(self.client(), self.table(), org_pk(org), "PLANGRANT#")
            .await?
            .iter()
            .map(|item| {
                let state = Reader::new(item).s("state")?.to_owned();
                Ok((grant_from_item(item)?, state))
            })
            .collect()
    }
}

fn grant_from_item(item: &Item) -> Result<MonthlyGrant, StoreError> {
    let r = Reader::new(item);
    let month = u32::try_from(r.u64("month")?).map_err(|e| r.corrupt(e.to_string()))?;
    Ok(MonthlyGrant {
        org: OrgId::parse(r.s("org")?).map_err(|e| r.corrupt(e.to_string()))?,
        invoice: r.s("invoice")?.to_owned(),
        month,
        due: parse_time(&r, "due")?,
        base: r.usd("base")?,
        rollover_cap: r.usd("rollover_cap")?,
    })
}
