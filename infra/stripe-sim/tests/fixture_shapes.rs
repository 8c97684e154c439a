//! The simulator's objects against Stripe's own example objects (Stripe's OpenAPI
//! fixtures, kept beside the repository in `../shared/fixtures/stripe/objects.json`): the
//! same top-level field names, and no nested field name Stripe's example lacks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::*;
use serde_json::Value;
use stripe_sim::{CompleteCheckout, InvoicePayment, StripeSim};

fn fixtures() -> Option<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/stripe/objects.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap()),
        Err(_) => {
            println!(
                "SKIPPED: Stripe's example objects are not at {} (../shared is absent)",
                path.display()
            );
            None
        }
    }
}

/// Where Stripe's examples say too little to compare: user data (metadata), objects whose
/// example is a stub (`{"type": ...}` for errors and next actions), an event's object (the
/// example event carries a plan; each object is checked against its own example), and the
/// line's `pricing.price_details`, which the example leaves out though Stripe's API
/// reference documents it (a plan grant reads the price from it).
const NOT_COMPARED: &[&str] = &[
    "metadata",
    "last_payment_error",
    "next_action",
    "data.object",
    "pricing.price_details",
];

fn compare(path: &str, ours: &Value, stripes: &Value, problems: &mut Vec<String>) {
    match (ours, stripes) {
        (Value::Object(ours), Value::Object(stripes)) => {
            for (key, value) in ours {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if NOT_COMPARED
                    .iter()
                    .any(|skip| child == *skip || child.ends_with(&format!(".{skip}")))
                {
                    continue;
                }
                match stripes.get(key) {
                    Some(theirs) => compare(&child, value, theirs, problems),
                    None => problems.push(format!("{child}: not in Stripe's example")),
                }
            }
        }
        (Value::Array(ours), Value::Array(stripes)) => {
            if let (Some(ours), Some(theirs)) = (ours.first(), stripes.first()) {
                compare(&format!("{path}[0]"), ours, theirs, problems);
            }
        }
        _ => {}
    }
}

fn check(kind: &str, ours: &Value, fixtures: &Value, problems: &mut Vec<String>) {
    let stripes = &fixtures["resources"][kind];
    assert!(stripes.is_object(), "no example for {kind}");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<BTreeSet<_>>();
    let (our_keys, their_keys) = (keys(ours), keys(stripes));
    for missing in their_keys.difference(&our_keys) {
        problems.push(format!(
            "{kind}.{missing}: in Stripe's example, not in the simulator's"
        ));
    }
    if let Some(object) = stripes.get("object") {
        assert_eq!(ours.get("object"), Some(object), "{kind}: object");
    }
    let mut nested = Vec::new();
    compare("", ours, stripes, &mut nested);
    problems.extend(nested.into_iter().map(|p| format!("{kind}.{p}")));
    println!(
        "{kind}: compared {} top-level fields with Stripe's example",
        our_keys.len()
    );
}

#[tokio::test]
async fn every_object_served_has_the_field_names_of_stripes_examples() {
    let Some(fixtures) = fixtures() else {
        return;
    };
    let (sim, _receiver) = sim_with_receiver().await;
    let base = sim.base_url().to_string();
    let get = |path: String| {
        let url = format!("{base}{path}");
        async move {
            let (status, _, body) = http("GET", &url, &[KEY], "").await;
            assert_eq!(status, 200, "{url}: {body}");
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    let client = stripe(&sim);
    let mut problems = Vec::new();

    let customer = create_customer(&client, "org_1").await;
    check(
        "customer",
        &get(format!("v1/customers/{}", customer.id)).await,
        &fixtures,
        &mut problems,
    );

    let session = create_checkout(&client, &customer.id, "org_1", 3000).await;
    check(
        "checkout.session",
        &get(format!("v1/checkout/sessions/{}", session.id)).await,
        &fixtures,
        &mut problems,
    );
    let paid = sim
        .complete_checkout(&session.id, CompleteCheckout::default())
        .await
        .unwrap();
    check("checkout.session", &paid.object, &fixtures, &mut problems);

    let pi_id = paid.object["payment_intent"].as_str().unwrap();
    let intent = get(format!("v1/payment_intents/{pi_id}")).await;
    check("payment_intent", &intent, &fixtures, &mut problems);
    let pm = intent["payment_method"].as_str().unwrap();
    check(
        "payment_method",
        &get(format!("v1/payment_methods/{pm}")).await,
        &fixtures,
        &mut problems,
    );

    let charge = intent["latest_charge"].as_str().unwrap();
    let refunded = sim.refund_charge(charge, Some(1000)).await.unwrap();
    check("refund", &refunded.object, &fixtures, &mut problems);
    let charge_event = sim.events().last().unwrap().clone();
    check("event", &charge_event, &fixtures, &mut problems);
    check(
        "charge",
        &charge_event["data"]["object"],
        &fixtures,
        &mut problems,
    );

    let disputed = sim.dispute_charge(charge, "fraudulent").await.unwrap();
    check("dispute", &disputed.object, &fixtures, &mut problems);

    let invoice = sim
        .pay_invoice(InvoicePayment {
            customer: customer.id.to_string(),
            amount: 2000,
            ..Default::default()
        })
        .await
        .unwrap();
    check("invoice", &invoice.object, &fixtures, &mut problems);

    // a subscription bought at Checkout, its invoices (first, proration, renewal), a
    // one-off invoice, and the subscription-mode session
    sim.add_price("price_team", 5000, Some("month")).unwrap();
    sim.add_price("price_pro", 9000, Some("month")).unwrap();
    let (_, sub, outcome) = subscribe(&sim, "org_2", "price_team", "pm_card_visa").await;
    check("checkout.session", &outcome.object, &fixtures, &mut problems);
    let subscription = get(format!("v1/subscriptions/{sub}")).await;
    check("subscription", &subscription, &fixtures, &mut problems);
    let item = subscription["items"]["data"][0]["id"].as_str().unwrap();
    let (status, upgraded) = post_v1(
        &sim,
        &format!("v1/subscriptions/{sub}"),
        &format!("items[0][id]={item}&items[0][price]=price_pro&proration_behavior=always_invoice"),
    )
    .await;
    assert_eq!(status, 200, "{upgraded}");
    check("subscription", &upgraded, &fixtures, &mut problems);
    sim.renew_subscription(&sub).await.unwrap();
    let invoices = get(format!("v1/invoices?subscription={sub}")).await;
    for invoice in invoices["data"].as_array().unwrap() {
        check("invoice", invoice, &fixtures, &mut problems);
    }
    let (_, draft) = post_v1(
        &sim,
        "v1/invoices",
        &format!("customer={}&description=Top-up", customer.id),
    )
    .await;
    let draft_id = draft["id"].as_str().unwrap();
    post_v1(
        &sim,
        "v1/invoiceitems",
        &format!("customer={}&invoice={draft_id}&amount=2500", customer.id),
    )
    .await;
    check(
        "invoice",
        &get(format!("v1/invoices/{draft_id}")).await,
        &fixtures,
        &mut problems,
    );

    // a failed payment's intent and charge too
    let declined = post_declined(&sim).await;
    check(
        "payment_intent",
        &declined["error"]["payment_intent"],
        &fixtures,
        &mut problems,
    );
    let failed_charge = declined["error"]["charge"].as_str().unwrap();
    let failed_intent = declined["error"]["payment_intent"]["id"].as_str().unwrap();
    let failed = get(format!(
        "v1/payment_intents/{failed_intent}?expand[]=latest_charge"
    ))
    .await;
    assert_eq!(failed["latest_charge"]["id"], failed_charge);
    check("charge", &failed["latest_charge"], &fixtures, &mut problems);

    assert!(
        problems.is_empty(),
        "field names differ from Stripe's examples:\n{}",
        problems.join("\n")
    );
}

async fn post_declined(sim: &StripeSim) -> Value {
    let (status, _, body) = http(
        "POST",
        &format!("{}v1/payment_intents", sim.base_url()),
        &[KEY, FORM],
        "amount=1000&currency=usd&payment_method=pm_card_chargeDeclined&confirm=true&off_session=true",
    )
    .await;
    assert_eq!(status, 402);
    serde_json::from_str(&body).unwrap()
}
