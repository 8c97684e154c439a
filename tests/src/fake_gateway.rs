//! A payment gateway that answers what a test scripts and remembers what it was asked:
//! for the checkout and recharge functions' own rules, without Stripe's (the simulator's)
//! behaviour in the way. Their end-to-end tests keep the simulator.

use std::sync::Mutex;

use agent_credits_domain::payments::Pending;
use agent_credits_domain::{
    ChargeGateway, CheckoutGateway, CheckoutSession, GatewayError, Intent, IntentStatus, MemberId,
    NewCheckout, OffSessionCharge, OrgId, PaidInvoice, PaymentLookup, RefundSeen, Usd,
};
use chrono::{DateTime, Utc};

/// What the gateway was asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    Customer {
        org: OrgId,
        member: MemberId,
    },
    Checkout {
        org: OrgId,
        member: MemberId,
        customer: String,
        offer: String,
        price: Usd,
        credits: Usd,
        success_url: String,
    },
    NewestCard {
        customer: String,
    },
    Charge {
        attempt: String,
        customer: String,
        payment_method: String,
        amount: Usd,
    },
    PaymentIntent {
        id: String,
    },
    FindAttempt {
        customer: String,
        attempt: String,
    },
}

/// Answers: a fixed customer, session and card, and the charge's answer a test sets. A
/// failure set with [`FakeGateway::fail_with`] answers every call instead.
#[derive(Debug)]
pub struct FakeGateway {
    asked: Mutex<Vec<Asked>>,
    failure: Mutex<Option<GatewayError>>,
    card: Mutex<Option<String>>,
    charge: Mutex<Result<IntentStatus, GatewayError>>,
}

impl Default for FakeGateway {
    fn default() -> FakeGateway {
        FakeGateway {
            asked: Mutex::default(),
            failure: Mutex::default(),
            card: Mutex::new(Some("pm_fake_card".into())),
            charge: Mutex::new(Ok(IntentStatus::Succeeded)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeGateway {
    /// Every call answers `e` from now on (`None`: the calls answer again).
    pub fn fail_with(&self, e: Option<GatewayError>) {
        *lock(&self.failure) = e;
    }

    /// The customer's newest card (`None`: no card saved).
    pub fn set_card(&self, card: Option<&str>) {
        *lock(&self.card) = card.map(str::to_owned);
    }

    /// What a charge answers: a PaymentIntent in this status, or this error.
    pub fn charge_answers(&self, answer: Result<IntentStatus, GatewayError>) {
        *lock(&self.charge) = answer;
    }

    pub fn asked(&self) -> Vec<Asked> {
        lock(&self.asked).clone()
    }

    fn ask(&self, what: Asked) -> Result<(), GatewayError> {
        lock(&self.asked).push(what);
        match lock(&self.failure).clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn intent_of(attempt: &str, org: &OrgId, status: IntentStatus) -> Intent {
        Intent {
            id: format!("pi_fake_{attempt}"),
            status,
            org: Some(org.clone()),
            attempt: Some(attempt.to_owned()),
        }
    }
}

impl CheckoutGateway for FakeGateway {
    fn create_customer<'a>(
        &'a self,
        org: &'a OrgId,
        member: &'a MemberId,
        _email: Option<&'a str>,
    ) -> Pending<'a, String> {
        Box::pin(async move {
            self.ask(Asked::Customer {
                org: org.clone(),
                member: member.clone(),
            })?;
            Ok(format!("cus_fake_{member}"))
        })
    }

    fn create_checkout<'a>(&'a self, s: &'a NewCheckout<'a>) -> Pending<'a, CheckoutSession> {
        Box::pin(async move {
            self.ask(Asked::Checkout {
                org: s.org.clone(),
                member: s.member.clone(),
                customer: s.customer.to_owned(),
                offer: s.offer.kind.clone(),
                price: s.offer.price,
                credits: s.offer.credits,
                success_url: s.success_url.clone(),
            })?;
            let n = lock(&self.asked).len();
            Ok(CheckoutSession {
                id: format!("cs_fake_{n}"),
                url: Some(format!("https://checkout.example/cs_fake_{n}")),
            })
        })
    }

    fn newest_card<'a>(&'a self, customer: &'a str) -> Pending<'a, Option<String>> {
        Box::pin(async move {
            self.ask(Asked::NewestCard {
                customer: customer.to_owned(),
            })?;
            Ok(lock(&self.card).clone())
        })
    }
}

impl ChargeGateway for FakeGateway {
    fn charge<'a>(&'a self, c: &'a OffSessionCharge<'a>) -> Pending<'a, Intent> {
        Box::pin(async move {
            self.ask(Asked::Charge {
                attempt: c.attempt.to_owned(),
                customer: c.customer.to_owned(),
                payment_method: c.payment_method.to_owned(),
                amount: c.amount,
            })?;
            let status = lock(&self.charge).clone()?;
            Ok(FakeGateway::intent_of(c.attempt, c.org, status))
        })
    }

    fn payment_intent<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Intent>> {
        Box::pin(async move {
            self.ask(Asked::PaymentIntent { id: id.to_owned() })?;
            Ok(None)
        })
    }

    fn find_attempt<'a>(
        &'a self,
        customer: &'a str,
        attempt: &'a str,
        _since: DateTime<Utc>,
    ) -> Pending<'a, Option<Intent>> {
        Box::pin(async move {
            self.ask(Asked::FindAttempt {
                customer: customer.to_owned(),
                attempt: attempt.to_owned(),
            })?;
            Ok(None)
        })
    }
}

impl PaymentLookup for FakeGateway {
    fn payment_intent<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Intent>> {
        ChargeGateway::payment_intent(self, id)
    }

    fn refunds<'a>(&'a self, _charge: &'a str) -> Pending<'a, Vec<RefundSeen>> {
        Box::pin(async move { Ok(vec![]) })
    }

    fn invoices_paid_by<'a>(&'a self, _payment_intent: &'a str) -> Pending<'a, Vec<String>> {
        Box::pin(async move { Ok(vec![]) })
    }

    fn invoice<'a>(&'a self, _id: &'a str) -> Pending<'a, Option<PaidInvoice>> {
        Box::pin(async move { Ok(None) })
    }

    fn invoice_payment_made<'a>(
        &'a self,
        paid: &'a agent_credits_domain::PaymentMade<'a>,
    ) -> Pending<'a, String> {
        Box::pin(async move { Ok(format!("in_fake_{}", paid.payment_intent)) })
    }
}
