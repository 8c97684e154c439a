//! Stripe's official Python library (PyPI `stripe`, installed in the repo's `.venv` by
//! `infra/local/install`) both signs deliveries the handler must accept or refuse, and
//! verifies the simulator's signatures: the scheme is Stripe's, not only the project's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

/// Runs `script` with Stripe's library on `stdin`; `None` (and a plain SKIPPED) when the
/// virtualenv is missing, as on a machine that never ran the install step.
fn python(script: &str, args: &[&str], stdin: &str) -> Option<(bool, String)> {
    let python = support::repo_root().join(".venv/bin/python");
    if !python.exists() {
        eprintln!(
            "SKIPPED: {} is absent (bash infra/local/install makes it)",
            python.display()
        );
        return None;
    }
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("ModuleNotFoundError"), "{stderr}");
    Some((
        out.status.success(),
        String::from_utf8(out.stdout).unwrap().trim().to_owned(),
    ))
}

const SIGN: &str = "import sys, stripe\n\
    print(stripe.WebhookSignature.generate_signature_header(sys.stdin.read(), sys.argv[1], int(sys.argv[2])))";

const VERIFY: &str = "import sys, stripe\n\
    try:\n    stripe.WebhookSignature.verify_header(sys.stdin.read(), sys.argv[2], sys.argv[1], 300)\n\
    except stripe.SignatureVerificationError as e:\n    print(e); sys.exit(1)\nprint('verified')";

fn stripe_signed(body: &str, secret: &str, at: i64) -> Option<Value> {
    let (ok, header) = python(SIGN, &[secret, &at.to_string()], body)?;
    assert!(ok, "{header}");
    let mut e = support::event("webhooks/stripe-event.json");
    e["headers"]["stripe-signature"] = json!(header);
    e["body"] = json!(body);
    Some(e)
}

#[tokio::test]
async fn headers_made_by_stripes_python_library_verify_and_refuse_as_stripe_says() {
    let app = app().await;
    let session = session(&app, standard_metadata()).await;
    app.sim
        .complete_checkout(&session, CompleteCheckout::card("pm_card_visa"))
        .await
        .unwrap();
    let event = app
        .sim
        .events()
        .into_iter()
        .find(|e| e["type"] == "checkout.session.completed")
        .unwrap();
    let body = event.to_string();

    for (what, secret, at) in [
        ("another secret", "whsec_not_ours", now()),
        ("301 s old", SECRET, now() - 301),
    ] {
        let Some(delivery) = stripe_signed(&body, secret, at) else {
            return;
        };
        let (status, reply) = call(&app.svc, &delivery).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some("invalid_signature")),
            "{what}"
        );
    }
    assert_eq!(
        app.svc.store.wallet(&app.org).await.unwrap().version,
        0,
        "nothing written"
    );

    let Some(delivery) = stripe_signed(&body, SECRET, now()) else {
        return;
    };
    let (status, reply) = call(&app.svc, &delivery).await;
    assert_eq!(
        (status, reply["result"].as_str()),
        (200, Some("credited")),
        "{reply}"
    );
    assert_eq!(
        app.svc.store.wallet(&app.org).await.unwrap().balance().unwrap(),
        Usd::parse("100").unwrap()
    );
}

#[tokio::test]
async fn stripes_python_library_verifies_the_simulators_signatures() {
    let body = r#"{"id":"evt_1","object":"event","type":"ping"}"#;
    let header = signature_header(SECRET, now(), body).unwrap();
    let Some((ok, out)) = python(VERIFY, &[SECRET, &header], body) else {
        return;
    };
    assert!(ok, "{out}");
    assert_eq!(out, "verified");
    let (ok, out) = python(VERIFY, &["whsec_not_ours", &header], body).unwrap();
    assert!(!ok, "another secret must not verify: {out}");
}
