//! Bad amounts are refused with a typed error before anything is written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_domain::{
    ChangeRequest, EntryKind, IdempotencyKey, MoneyError, OrgId, PositiveUsd, SystemClock, WalletStore,
};
use agent_credits_dynamo::DynamoWalletStore;
use serde::Deserialize;
use support::dynoxide::Dynoxide;
use support::table::TableDefinition;

/// A debit as a client sends it: the amount is a JSON string, parsed by the domain type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DebitBody {
    org: OrgId,
    amount: PositiveUsd,
    request_id: IdempotencyKey,
}

/// What a handler does: parse, and only a parsed request reaches the store.
async fn submit(store: &DynamoWalletStore, body: &str) -> Result<(), String> {
    let body: DebitBody = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let req = ChangeRequest::debit(body.org, EntryKind::Usage, body.amount, body.request_id).unwrap();
    store
        .apply(req)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn each_bad_amount_has_its_own_typed_error() {
    let cases = [
        ("-1.00", MoneyError::Negative),
        ("0", MoneyError::Zero),
        ("0.00", MoneyError::Zero),
        ("NaN", MoneyError::NotADecimal),
        ("inf", MoneyError::NotADecimal),
        ("1e400", MoneyError::Exponent),
        ("0.0000001", MoneyError::TooManyDecimals),
        ("12.345.6", MoneyError::NotADecimal),
        ("", MoneyError::Empty),
    ];
    for (input, want) in cases {
        assert_eq!(PositiveUsd::parse(input), Err(want.clone()), "{input:?}");
    }
    assert_eq!(MoneyError::Negative.code(), "negative_amount");
    assert_eq!(MoneyError::TooManyDecimals.code(), "too_many_decimals");
}

#[tokio::test]
async fn bad_amounts_change_nothing_in_the_table() {
    let server = Dynoxide::start();
    let client = support::dynamodb_client(server.endpoint(), None);
    TableDefinition::from_repo()
        .unwrap()
        .create(&client, "credits")
        .await
        .unwrap();
    let store = DynamoWalletStore::new(client.clone(), "credits", Arc::new(SystemClock));
    let credit = ChangeRequest::credit(
        OrgId::parse("org_1").unwrap(),
        EntryKind::Purchase,
        agent_credits_domain::Bucket::Purchased,
        PositiveUsd::parse("10").unwrap(),
        IdempotencyKey::parse("seed").unwrap(),
    )
    .unwrap();
    store.apply(credit).await.unwrap().unwrap();
    let dump = || async {
        let out = client.scan().table_name("credits").send().await.unwrap();
        let mut items: Vec<String> = out
            .items()
            .iter()
            .map(|i| format!("{:?}", i.iter().collect::<std::collections::BTreeMap<_, _>>()))
            .collect();
        items.sort();
        items
    };
    let before = dump().await;

    let bad = [
        r#"{"org":"org_1","amount":"-1.00","request_id":"r1"}"#,
        r#"{"org":"org_1","amount":"0","request_id":"r2"}"#,
        r#"{"org":"org_1","amount":"NaN","request_id":"r3"}"#,
        r#"{"org":"org_1","amount":"1e400","request_id":"r4"}"#,
        r#"{"org":"org_1","amount":"0.0000001","request_id":"r5"}"#,
        r#"{"org":"org_1","amount":0.07,"request_id":"r6"}"#,
        r#"{"org":"org_1","amount":7,"request_id":"r7"}"#,
        r#"{"org":"org_1","amount":1e400,"request_id":"r8"}"#,
        r#"{"org":"org_1","amount":null,"request_id":"r9"}"#,
        r#"{"org":"org#1","amount":"1.00","request_id":"r10"}"#,
        r#"{"org":"org_1","amount":"1.00"}"#,
        r#"{"org":"org_1","amount":"1.00","request_id":"r11","extra":1}"#,
        r#"not json"#,
    ];
    for body in bad {
        let err = submit(&store, body).await.expect_err(body);
        assert!(!err.is_empty());
    }
    assert_eq!(dump().await, before, "no bad input wrote anything");

    // And a good one does write, so the comparison above can see a change.
    submit(&store, r#"{"org":"org_1","amount":"1.00","request_id":"r12"}"#)
        .await
        .unwrap();
    assert_ne!(dump().await, before);
}
