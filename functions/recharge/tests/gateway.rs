//! The sweep's rules for each answer a payment gateway can give, with a fake gateway:
//! what is charged, who is told, what is suspended, and what is sent again. (The same
//! sweeps against the Stripe simulator are in `sweep.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_domain::recharge::Decline;
use agent_credits_domain::{
    GatewayError, IdempotencyKey, IntentStatus, MemberId, OrgId, PositiveUsd, RechargeSettings, SystemClock,
    Usd, WalletStore,
};
use agent_credits_dynamo::{Card, DynamoWalletStore, RechargeStore};
use recharge::{Recharge, SweepReport, sweep};
use support::dynoxide::Dynoxide;
use support::fake_gateway::{Asked, FakeGateway};

struct App {
    _db: Dynoxide,
    svc: Recharge,
    gateway: Arc<FakeGateway>,
    org: OrgId,
}

fn usd(s: &str) -> Usd {
    Usd::parse(s).unwrap()
}

/// An org with $15 left of $30, below its $20 threshold, its owner's card on file: due.
async fn due_org() -> App {
    let (db, client) = support::fresh_table("credits").await;
    let gateway = Arc::new(FakeGateway::default());
    let org = OrgId::parse("org_demo").unwrap();
    support::create_credits_org(&client, "credits", &org, "u_owner").await;
    let svc = Recharge {
        store: DynamoWalletStore::new(client.clone(), "credits", Arc::new(SystemClock)),
        recharges: RechargeStore::new(client, "credits"),
        payments: gateway.clone(),
        clock: Arc::new(SystemClock),
        resume_after: chrono::Duration::zero(),
    };
    svc.store
        .apply(support::purchase(&org, "30", "seed"))
        .await
        .unwrap()
        .unwrap();
    let settings = RechargeSettings::new(true, usd("20"), usd("100"), 3, usd("1000")).unwrap();
    let card = Card {
        customer: "cus_owner".into(),
        payment_method: "pm_owner".into(),
        owner: MemberId::parse("u_owner").unwrap(),
    };
    let saved = svc
        .recharges
        .configure(&org, &settings, Some(&card), &card.owner, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(saved, agent_credits_dynamo::Configured::Saved);
    let usage = agent_credits_domain::ChangeRequest::usage(
        org.clone(),
        PositiveUsd::parse("15").unwrap(),
        IdempotencyKey::parse("usage:1").unwrap(),
    );
    svc.store.apply(usage).await.unwrap().unwrap();
    App {
        _db: db,
        svc,
        gateway,
        org,
    }
}

/// What the wallet and the settings show after a sweep.
#[derive(Debug, PartialEq, Eq)]
struct After {
    balance: Usd,
    suspended: Option<String>,
    in_flight: bool,
    told_of_failure: usize,
}

async fn after(app: &App) -> After {
    let config = app.svc.recharges.config(&app.org).await.unwrap().unwrap();
    let notes = app.svc.store.notifications(&app.org, 100).await.unwrap();
    After {
        balance: app.svc.store.wallet(&app.org).await.unwrap().balance().unwrap(),
        suspended: config.suspended,
        in_flight: config.in_flight.is_some(),
        told_of_failure: notes
            .iter()
            .filter(|n| n.kind == "credit_purchase_failed")
            .count(),
    }
}

fn charges(app: &App) -> Vec<String> {
    app.gateway
        .asked()
        .into_iter()
        .filter_map(|a| match a {
            Asked::Charge {
                attempt,
                customer,
                payment_method,
                amount,
            } => {
                assert_eq!(
                    (customer.as_str(), payment_method.as_str()),
                    ("cus_owner", "pm_owner")
                );
                assert_eq!(amount, usd("100"));
                Some(attempt)
            }
            _ => None,
        })
        .collect()
}

/// A gateway answer, the count of the sweep's report it lands in, and what follows.
type Case = (
    Result<IntentStatus, GatewayError>,
    fn(&SweepReport) -> usize,
    After,
);

fn ours(code: &str, status: u16) -> GatewayError {
    GatewayError::Refused {
        code: code.into(),
        status,
        payment_intent: None,
    }
}

#[tokio::test]
async fn each_answer_of_the_gateway_charges_tells_and_suspends_as_the_rules_say() {
    let declined = |reason: &str| GatewayError::Declined {
        decline: Decline::of(Some(reason), None),
        payment_intent: Some("pi_declined".into()),
    };
    let not_ours = |balance: &str| After {
        balance: usd(balance),
        suspended: None,
        in_flight: true,
        told_of_failure: 0,
    };
    let card_failed = |reason: &str| After {
        balance: usd("15"),
        suspended: Some(reason.into()),
        in_flight: false,
        told_of_failure: 1,
    };
    let cases: Vec<Case> = vec![
        (
            Ok(IntentStatus::Succeeded),
            |r| r.charged,
            After {
                balance: usd("115"),
                suspended: None,
                in_flight: false,
                told_of_failure: 0,
            },
        ),
        (
            Err(declined("insufficient_funds")),
            |r| r.failed,
            card_failed("insufficient_funds"),
        ),
        (
            Ok(IntentStatus::RequiresAction),
            |r| r.failed,
            card_failed("authentication_required"),
        ),
        (
            Ok(IntentStatus::NotCharged(Some(Decline::of(
                None,
                Some("expired_card"),
            )))),
            |r| r.failed,
            card_failed("expired_card"),
        ),
        // Nothing charged and nobody's failure: the org stays due, nobody is told.
        (
            Ok(IntentStatus::NotCharged(None)),
            |r| r.abandoned,
            After {
                in_flight: false,
                ..not_ours("15")
            },
        ),
        // Not the card: nobody suspended or told; the attempt stays in flight.
        (Err(ours("api_key_expired", 401)), |r| r.pending, not_ours("15")),
        (Err(ours("rate_limit", 429)), |r| r.pending, not_ours("15")),
        (
            Err(GatewayError::Unreachable("timed out".into())),
            |r| r.pending,
            not_ours("15"),
        ),
        (
            Ok(IntentStatus::InProgress("processing".into())),
            |r| r.pending,
            not_ours("15"),
        ),
    ];
    for (answer, counted, expected) in cases {
        let app = due_org().await;
        app.gateway.charge_answers(answer.clone());
        let report = sweep(&app.svc).await.unwrap();
        assert_eq!((report.due, counted(&report)), (1, 1), "{answer:?}: {report:?}");
        assert_eq!(after(&app).await, expected, "{answer:?}");
        assert_eq!(charges(&app).len(), 1, "{answer:?}");
    }
}

#[tokio::test]
async fn an_attempt_that_failed_for_a_reason_of_ours_is_sent_again_as_it_was_and_credited_once() {
    let app = due_org().await;
    app.gateway.charge_answers(Err(ours("lock_timeout", 409)));
    assert_eq!(sweep(&app.svc).await.unwrap().pending, 1);
    app.gateway
        .charge_answers(Err(GatewayError::Unreachable("connection reset".into())));
    assert_eq!(sweep(&app.svc).await.unwrap().pending, 1);
    app.gateway.charge_answers(Ok(IntentStatus::Succeeded));
    assert_eq!(sweep(&app.svc).await.unwrap().charged, 1);
    let sent = charges(&app);
    assert_eq!(sent.len(), 3);
    assert!(
        sent.iter().all(|a| *a == sent[0]),
        "one attempt, sent three times: {sent:?}"
    );
    assert_eq!(after(&app).await.balance, usd("115"));
    // Topped up: nothing is due any more and nothing more is asked.
    assert_eq!(sweep(&app.svc).await.unwrap().due, 0);
    assert_eq!(charges(&app).len(), 3);
}

#[tokio::test]
async fn a_payment_intent_named_by_an_error_of_ours_is_recorded_on_the_attempt() {
    let app = due_org().await;
    app.gateway.charge_answers(Err(GatewayError::Refused {
        code: "api_error".into(),
        status: 500,
        payment_intent: Some("pi_made_before_the_error".into()),
    }));
    assert_eq!(sweep(&app.svc).await.unwrap().pending, 1);
    let attempt = charges(&app).remove(0);
    let recorded = app
        .svc
        .recharges
        .attempt(&app.org, &attempt)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        recorded.payment_intent.as_deref(),
        Some("pi_made_before_the_error")
    );
    assert_eq!(
        after(&app).await,
        After {
            balance: usd("15"),
            suspended: None,
            in_flight: true,
            told_of_failure: 0
        }
    );
}
