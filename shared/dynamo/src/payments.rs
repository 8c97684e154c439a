//! What the webhooks need to remember about Stripe beyond the ledger:
//!
//! - `STRIPE#<payment intent>` / `PAYMENT`: which org a credited payment belongs to and what
//!   it credited. Written only after the credit committed, so finding it means the credit
//!   is there; refunds and disputes, which name only the charge's payment intent, find
//!   their org through it.
//! - `STRIPE#<event id>` / `EVENT`: a receipt per handled event (expiring after 30 days),
//!   so a redelivered event is answered without touching the wallet.

use agent_credits_domain::{
    BillingMode, ChangeRequest, EntryKind, IdempotencyKey, LedgerEntry, OrgId, Outcome, StoreError, Usd,
    WalletStore,
};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};

use crate::attr::{Reader, n_u64, n_usd, s};
use crate::items::{WALLET_SK, idem_from_item, idem_sk, key, org_pk, timestamp};
use crate::orgs::PROFILE_SK;
use crate::store::{DynamoWalletStore, get_consistent, sdk_error};
use crate::update::UpdateExpr;

/// A payment that credited an org's wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub payment_intent: String,
    pub org: OrgId,
    /// `purchase` or `auto_top_up`.
    pub kind: EntryKind,
    /// The credits it added (a package's bonus included).
    pub credits: Usd,
    /// What Stripe charged, in cents of USD.
    pub charged_cents: u64,
    /// The idempotency key of the credit.
    pub credit_key: String,
}

/// A paid invoice as the webhooks saw it: a plan's of one of our orgs (what it granted and
/// what it charged), or none of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRecord {
    pub invoice: String,
    /// `None`: the invoice is none of ours (not a plan subscription of an org of ours).
    pub grant: Option<InvoiceGrant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceGrant {
    pub org: OrgId,
    /// The base credits the invoice granted (an annual invoice: its first month's).
    pub credits: Usd,
    /// What it charged, in cents of USD.
    pub charged_cents: u64,
    /// An annual plan's: it also grants the months after its first, each as much.
    pub annual: bool,
}

/// How long an event receipt is kept: longer than Stripe retries a delivery (3 days).
pub const EVENT_RECEIPT_DAYS: i64 = 30;

fn payment_key(payment_intent: &str) -> crate::attr::Item {
    key(format!("STRIPE#{payment_intent}"), "PAYMENT")
}

fn event_key(event: &str) -> crate::attr::Item {
    key(format!("STRIPE#{event}"), "EVENT")
}

impl DynamoWalletStore {
    /// Remembers a credited payment. Idempotent: the same payment always writes the same.
    pub async fn record_payment(&self, p: &PaymentRecord) -> Result<(), StoreError> {
        let mut item = payment_key(&p.payment_intent);
        item.extend([
            ("type".to_owned(), s("payment")),
            ("org".to_owned(), s(p.org.as_str())),
            ("kind".to_owned(), s(p.kind.as_str())),
            ("credits".to_owned(), n_usd(p.credits)),
            ("charged_cents".to_owned(), n_u64(p.charged_cents)),
            ("credit_key".to_owned(), s(p.credit_key.as_str())),
        ]);
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Credits a payment (`req`, keyed on it) and, once the credit is committed (now or
    /// before), remembers the payment for its refunds and disputes.
    pub async fn credit_payment(
        &self,
        req: ChangeRequest,
        record: &PaymentRecord,
    ) -> Result<Outcome, StoreError> {
        let outcome = self.apply(req).await?;
        if outcome.is_ok() {
            self.record_payment(record).await?;
        }
        Ok(outcome)
    }

    /// An org that paid for credits (a purchase, a plan) has chosen them: a byok or
    /// deferred org becomes a credits org (reference 000 allows both switches), on its
    /// profile (a new revision) and its wallet together, on the condition that both still
    /// say what they said. A credits org is left as it is; idempotent. The caller runs it
    /// after the credit committed, every time it handles the payment, so a crash between
    /// the two is mended when Stripe delivers the event again.
    pub async fn becomes_credits(&self, org: &OrgId) -> Result<(), StoreError> {
        let switch = |revised: bool| {
            let mut x = UpdateExpr::default();
            x.set("billing_mode", s(BillingMode::Credits.as_str()));
            if revised {
                x.add("revision", n_u64(1));
            }
            x.condition("#billing_mode IN (:byok, :deferred)");
            x.value(":byok", s(BillingMode::Byok.as_str()));
            x.value(":deferred", s(BillingMode::Deferred.as_str()));
            x
        };
        let sent = self
            .client()
            .transact_write_items()
            .transact_items(switch(true).update(self.table(), key(org_pk(org), PROFILE_SK))?)
            .transact_items(switch(false).update(self.table(), key(org_pk(org), WALLET_SK))?)
            .send()
            .await;
        if crate::orgs::committed(sent)? {
            tracing::info!(org = %org, "an org paid for credits: it is a credits org now");
        }
        Ok(())
    }

    /// The credited payment of this payment intent, if it has been credited.
    pub async fn payment(&self, payment_intent: &str) -> Result<Option<PaymentRecord>, StoreError> {
        let Some(item) = get_consistent(self.client(), self.table(), payment_key(payment_intent)).await?
        else {
            return Ok(None);
        };
        payment_from_item(payment_intent, &item).map(Some)
    }

    /// Remembers a paid invoice: whether it is a plan's of ours, and what it granted.
    pub async fn record_invoice(&self, r: &InvoiceRecord) -> Result<(), StoreError> {
        let mut item = key(format!("STRIPE#{}", r.invoice), "INVOICE");
        item.insert("type".to_owned(), s("invoice"));
        let Some(g) = &r.grant else {
            // "None of ours" never replaces a grant (nor anything else) recorded before.
            let put = self
                .client()
                .put_item()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            return match put {
                Ok(_) => Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Ok(())
                }
                Err(e) => Err(sdk_error(e)),
            };
        };
        // What it granted is set once: a replayed `invoice.paid` never changes it.
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(format!("STRIPE#{}", r.invoice), "INVOICE")))
            .update_expression(
                "SET #type = :type, org = :org, charged_cents = :cents, annual = :annual, \
                 credits = if_not_exists(credits, :credits)",
            )
            .expression_attribute_names("#type", "type")
            .expression_attribute_values(":type", s("invoice"))
            .expression_attribute_values(":annual", AttributeValue::Bool(g.annual))
            .expression_attribute_values(":org", s(g.org.as_str()))
            .expression_attribute_values(":cents", n_u64(g.charged_cents))
            .expression_attribute_values(":credits", n_usd(g.credits))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    pub async fn invoice(&self, invoice: &str) -> Result<Option<InvoiceRecord>, StoreError> {
        let Some(item) = get_consistent(
            self.client(),
            self.table(),
            key(format!("STRIPE#{invoice}"), "INVOICE"),
        )
        .await?
        else {
            return Ok(None);
        };
        let r = Reader::new(&item);
        let grant = match r.opt_s("org")? {
            Some(org) => Some(InvoiceGrant {
                org: OrgId::parse(org).map_err(|e| r.corrupt(e.to_string()))?,
                credits: r.usd("credits")?,
                charged_cents: r.u64("charged_cents")?,
                annual: r.opt_bool("annual")?.unwrap_or(false),
            }),
            None => None,
        };
        Ok(Some(InvoiceRecord {
            invoice: invoice.to_owned(),
            grant,
        }))
    }

    /// Remembers which PaymentIntent paid an invoice, both ways.
    pub async fn record_invoice_payment(
        &self,
        invoice: &str,
        payment_intent: &str,
    ) -> Result<(), StoreError> {
        let mut by_payment = key(format!("STRIPE#{payment_intent}"), "INVOICE_PAYMENT");
        by_payment.extend([
            ("type".to_owned(), s("invoice_payment")),
            ("invoice".to_owned(), s(invoice)),
        ]);
        self.put_item(by_payment).await?;
        let mut by_invoice = key(format!("STRIPE#{invoice}"), "PAID_BY");
        by_invoice.extend([
            ("type".to_owned(), s("invoice_payment")),
            ("payment_intent".to_owned(), s(payment_intent)),
        ]);
        self.put_item(by_invoice).await
    }

    /// The invoice a PaymentIntent paid, if it paid one.
    pub async fn invoice_of(&self, payment_intent: &str) -> Result<Option<String>, StoreError> {
        self.link(format!("STRIPE#{payment_intent}"), "INVOICE_PAYMENT", "invoice")
            .await
    }

    /// The PaymentIntent that paid an invoice, if one did.
    pub async fn paid_by(&self, invoice: &str) -> Result<Option<String>, StoreError> {
        self.link(format!("STRIPE#{invoice}"), "PAID_BY", "payment_intent")
            .await
    }

    /// The `attribute` of the link item `pk`/`sk` between a payment and an invoice.
    async fn link(&self, pk: String, sk: &str, attribute: &str) -> Result<Option<String>, StoreError> {
        let item = get_consistent(self.client(), self.table(), key(pk, sk)).await?;
        item.as_ref()
            .map(|i| Reader::new(i).s(attribute).map(str::to_owned))
            .transpose()
    }

    async fn put_item(&self, item: crate::attr::Item) -> Result<(), StoreError> {
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Whether a change was ever made under `key` in the org's wallet.
    pub async fn key_used(&self, org: &OrgId, key_: &IdempotencyKey) -> Result<bool, StoreError> {
        Ok(
            get_consistent(self.client(), self.table(), key(org_pk(org), idem_sk(key_)))
                .await?
                .is_some(),
        )
    }

    /// The entry committed under `key_`, if any (read only: nothing is applied).
    pub async fn entry_for_key(
        &self,
        org: &OrgId,
        key_: &IdempotencyKey,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        Ok(self.billed_under(org, key_).await?.map(|(entry, _)| entry))
    }

    /// The entry made under `key_` and what its request promised (its fingerprint).
    pub async fn billed_under(
        &self,
        org: &OrgId,
        key_: &IdempotencyKey,
    ) -> Result<Option<(LedgerEntry, String)>, StoreError> {
        let Some(item) = get_consistent(self.client(), self.table(), key(org_pk(org), idem_sk(key_))).await?
        else {
            return Ok(None);
        };
        let idem = idem_from_item(&item)?;
        let entry = self.entry_of(org, key_, &idem).await?;
        Ok(Some((entry, idem.fingerprint)))
    }

    /// Whether an event was handled before.
    pub async fn event_handled(&self, event: &str) -> Result<bool, StoreError> {
        Ok(get_consistent(self.client(), self.table(), event_key(event))
            .await?
            .is_some())
    }

    /// Records that an event was handled (after its writes are durable).
    pub async fn record_event(&self, event: &str, kind: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut item = event_key(event);
        let expires = now + Duration::days(EVENT_RECEIPT_DAYS);
        item.extend([
            ("type".to_owned(), s("stripe_event")),
            ("event_type".to_owned(), s(kind)),
            ("received_at".to_owned(), timestamp(now)),
            (
                "expires_at".to_owned(),
                n_u64(u64::try_from(expires.timestamp()).unwrap_or(0)),
            ),
        ]);
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}

/// A credited payment's record, read back.
pub(crate) fn payment_from_item(
    payment_intent: &str,
    item: &crate::attr::Item,
) -> Result<PaymentRecord, StoreError> {
    let r = Reader::new(item);
    let kind = r.s("kind")?;
    Ok(PaymentRecord {
        payment_intent: payment_intent.to_owned(),
        org: OrgId::parse(r.s("org")?).map_err(|e| r.corrupt(e.to_string()))?,
        kind: EntryKind::parse(kind).ok_or_else(|| r.corrupt(format!("unknown kind {kind}")))?,
        credits: r.usd("credits")?,
        charged_cents: r.u64("charged_cents")?,
        credit_key: r.s("credit_key")?.to_owned(),
    })
}
