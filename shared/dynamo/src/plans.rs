//! Plan subscriptions beyond the ledger:
//!
//! - `ORG#<org>` / `SUBSCRIPTION`: the org's plan subscription (its Stripe id, the
//!   customer it bills, when Stripe created it). Stripe's events about it may come in any
//!   order, so a record is only ever replaced by a subscription created later: the org's
//!   newest subscription stands. Its status, plan and period are asked of Stripe when
//!   needed, never kept here.
//! - `ORG#<org>` / `PLANGRANT#<invoice>#<month>`: an annual plan's monthly grants after the
//!   first, one marker per month (`gsi1pk = DUE#PLANGRANT`, `gsi1sk = <due>#<org>#...`),
//!   put when the year's invoice is paid. The recharge function's tick grants each once
//!   it is due: it claims the marker (`pending` → `claimed`) and adds the month's base to
//!   what the invoice granted (`STRIPE#<invoice>` / `INVOICE`, `credits`) in one
//!   transaction, then renews the wallet under `stripe:invoice:<invoice>:m<month>`, then
//!   retires the marker. A claimed marker stays in the index until its grant is made, so
//!   a crash between the two is made good by the next tick; the key makes it once.
//!   A refund or lost dispute of the invoice ends the months not yet claimed (`ended`),
//!   so its take-back sees exactly what the invoice granted and will grant.

use agent_credits_domain::{ChangeRequest, OrgId, StoreError, Usd, WalletStore, keys};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use chrono::{DateTime, Utc};

use crate::attr::{Item, Reader, n_u64, n_usd, s};
use crate::items::{hold_time, key, org_pk, parse_time, timestamp};
use crate::orgs::OrgStore;
use crate::store::{DynamoWalletStore, get_consistent, sdk_error};

const SUBSCRIPTION_SK: &str = "SUBSCRIPTION";
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
    /// Claimed by a tick: counted in the invoice's credits, its grant maybe not made yet.
    pub claimed: bool,
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

    /// The monthly grants whose day has come, pending or claimed.
    pub async fn due_monthly_grants(&self) -> Result<Vec<MonthlyGrant>, StoreError> {
        let upto = format!("{}~", hold_time(self.now()));
        let mut due = vec![];
        let mut start = None;
        loop {
            let out = self
                .client()
                .query()
                .table_name(self.table())
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :p AND gsi1sk <= :upto")
                .expression_attribute_values(":p", s(GRANTS_DUE_PK))
                .expression_attribute_values(":upto", s(upto.as_str()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items() {
                match grant_from_item(item) {
                    Ok(g) => due.push(g),
                    // One unreadable marker must not hide the others.
                    Err(e) => tracing::error!(error = %e, "an unreadable plan grant marker"),
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(due),
            }
        }
    }

    /// Claims a pending month: the marker and the invoice's credits in one transaction.
    /// `false` when it is not pending any more (claimed or ended meanwhile).
    async fn claim_monthly_grant(&self, g: &MonthlyGrant) -> Result<bool, StoreError> {
        let marker = Update::builder()
            .table_name(self.table())
            .set_key(Some(key(org_pk(&g.org), grant_sk(&g.invoice, g.month))))
            .update_expression("SET #state = :claimed")
            .condition_expression("#state = :pending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":pending", s("pending"))
            .build()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let invoice = Update::builder()
            .table_name(self.table())
            .set_key(Some(key(format!("STRIPE#{}", g.invoice), "INVOICE")))
            .update_expression("ADD credits :base")
            .condition_expression("attribute_exists(org)")
            .expression_attribute_values(":base", n_usd(g.base))
            .build()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let tx = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(marker).build())
            .transact_items(TransactWriteItem::builder().update(invoice).build())
            .send()
            .await;
        match tx {
            Ok(_) => Ok(true),
            Err(e) => {
                let cancelled = e
                    .as_service_error()
                    .and_then(|e| match e {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
                        _ => None,
                    })
                    .is_some_and(|c| {
                        c.cancellation_reasons()
                            .iter()
                            .any(|r| r.code() == Some("ConditionalCheckFailed"))
                    });
                if cancelled { Ok(false) } else { Err(sdk_error(e)) }
            }
        }
    }

    /// Makes one due month's grant: claimed (unless claimed already), granted under its
    /// own key, then retired from the index. `true` when this call granted it.
    pub async fn make_monthly_grant(&self, g: &MonthlyGrant) -> Result<bool, StoreError> {
        if !g.claimed && !self.claim_monthly_grant(g).await? {
            return Ok(false);
        }
        let key_ = keys::invoice_month(&g.invoice, g.month)
            .map_err(|e| StoreError::Invalid(format!("plan grant key: {e}")))?;
        let req = ChangeRequest::renew_plan(g.org.clone(), g.base, g.rollover_cap, key_);
        let granted = match self.apply(req).await? {
            Ok(applied) => !applied.replayed(),
            Err(refusal) => {
                return Err(StoreError::Invalid(format!(
                    "a monthly plan grant of {} came back {refusal:?}",
                    g.org
                )));
            }
        };
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(org_pk(&g.org), grant_sk(&g.invoice, g.month))))
            .update_expression("SET #state = :granted REMOVE gsi1pk, gsi1sk")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":granted", s("granted"))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(granted)
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

    /// Ends the invoice's months not yet claimed (its payment went back): they will never
    /// be granted. Claimed ones stand (their credits are counted in the invoice's).
    pub async fn end_monthly_grants(&self, org: &OrgId, invoice: &str) -> Result<usize, StoreError> {
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(org_pk(org)))
            .expression_attribute_values(":prefix", s(format!("PLANGRANT#{invoice}#")))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let mut ended = 0;
        for item in out.items() {
            let Some(AttributeValue::S(sk)) = item.get("sk") else {
                continue;
            };
            let update = self
                .client()
                .update_item()
                .table_name(self.table())
                .set_key(Some(key(org_pk(org), sk.as_str())))
                .update_expression("SET #state = :ended REMOVE gsi1pk, gsi1sk")
                .condition_expression("#state = :pending")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":ended", s("ended"))
                .expression_attribute_values(":pending", s("pending"))
                .send()
                .await;
            match update {
                Ok(_) => ended += 1,
                Err(e) if e.as_service_error().is_some_and(is_condition_failure) => {}
                Err(e) => return Err(sdk_error(e)),
            }
        }
        Ok(ended)
    }

    /// An org's monthly grant markers (tests and the simulator).
    pub async fn monthly_grants(&self, org: &OrgId) -> Result<Vec<(MonthlyGrant, String)>, StoreError> {
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(org_pk(org)))
            .expression_attribute_values(":prefix", s("PLANGRANT#"))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        out.items()
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
        claimed: r.s("state")? == "claimed",
    })
}
