//! What no emulator does: real DynamoDB cancels transactions on contention
//! (`TransactionConflict`) and throttles. Mocked at the SDK boundary with aws-smithy-mocks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agent_credits_domain::{
    Applied, Bucket, ChangeRequest, EntryKind, IdempotencyKey, OrgId, PositiveUsd, StoreError, SystemClock,
    Usd, Wallet, WalletStore,
};
use agent_credits_dynamo::items::wallet_item;
use agent_credits_dynamo::{DynamoWalletStore, RetryPolicy};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_get_items::TransactGetItemsOutput;
use aws_sdk_dynamodb::operation::transact_write_items::{TransactWriteItemsError, TransactWriteItemsOutput};
use aws_sdk_dynamodb::types::error::{ProvisionedThroughputExceededException, TransactionCanceledException};
use aws_sdk_dynamodb::types::{CancellationReason, ItemResponse};
use aws_smithy_mocks::{RuleMode, mock, mock_client};

fn org() -> OrgId {
    OrgId::parse("org_hot").unwrap()
}

fn a_wallet_with_ten_dollars() -> TransactGetItemsOutput {
    let mut w = Wallet::empty(org());
    w.buckets.purchased = Usd::parse("10").unwrap();
    w.lifetime_added = w.buckets.purchased;
    w.version = 3;
    TransactGetItemsOutput::builder()
        .responses(
            ItemResponse::builder()
                .set_item(Some(wallet_item(&w, chrono::Utc::now()).unwrap()))
                .build(),
        )
        .responses(ItemResponse::builder().build())
        .build()
}

fn conflict() -> TransactWriteItemsError {
    let reason = |code: &str| CancellationReason::builder().code(code).build();
    TransactWriteItemsError::TransactionCanceledException(
        TransactionCanceledException::builder()
            .message("Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict, None, None]")
            .cancellation_reasons(reason("TransactionConflict"))
            .cancellation_reasons(reason("None"))
            .cancellation_reasons(reason("None"))
            .build(),
    )
}

fn store(client: Client, max_attempts: u32) -> DynamoWalletStore {
    DynamoWalletStore::new(client, "credits", Arc::new(SystemClock)).with_retry(RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    })
}

fn debit() -> ChangeRequest {
    ChangeRequest::debit(
        org(),
        EntryKind::Usage,
        PositiveUsd::parse("0.07").unwrap(),
        IdempotencyKey::parse("usage:r1").unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_transaction_conflict_is_retried_with_a_fresh_read_and_then_commits() {
    let read = mock!(Client::transact_get_items).then_output(a_wallet_with_ten_dollars);
    let write = mock!(Client::transact_write_items)
        .sequence()
        .error(conflict)
        .times(2)
        .output(|| TransactWriteItemsOutput::builder().build())
        .build();
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&read, &write]);

    let outcome = store(client, 5).apply(debit()).await.unwrap();

    let Ok(Applied::Committed(entry)) = outcome else {
        panic!("expected a commit, got {outcome:?}")
    };
    assert_eq!(entry.seq, 4);
    assert_eq!(entry.balance_after, Usd::parse("9.93").unwrap());
    assert_eq!(write.num_calls(), 3, "two conflicts, then the commit");
    assert_eq!(read.num_calls(), 3, "every retry plans from a fresh read");
}

#[tokio::test]
async fn endless_conflicts_give_up_after_the_bounded_attempts_with_a_typed_error() {
    let read = mock!(Client::transact_get_items).then_output(a_wallet_with_ten_dollars);
    let write = mock!(Client::transact_write_items).then_error(conflict);
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&read, &write]);

    let err = store(client, 4).apply(debit()).await.unwrap_err();

    assert!(
        matches!(err, StoreError::Contention { attempts: 4 }),
        "got {err:?}"
    );
    assert_eq!(write.num_calls(), 4);
}

#[tokio::test]
async fn throttling_surfaces_as_unavailable_not_as_a_refusal() {
    let read = mock!(Client::transact_get_items).then_output(a_wallet_with_ten_dollars);
    let write = mock!(Client::transact_write_items).then_error(|| {
        TransactWriteItemsError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("slow down")
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&read, &write]);
    let credit = ChangeRequest::credit(
        org(),
        EntryKind::Purchase,
        Bucket::Purchased,
        PositiveUsd::parse("5").unwrap(),
        IdempotencyKey::parse("k").unwrap(),
    )
    .unwrap();

    let err = store(client, 4).apply(credit).await.unwrap_err();

    match err {
        StoreError::Unavailable(e) => assert!(e.to_string().contains("ProvisionedThroughputExceeded"), "{e}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// A refusal no retry cures (a wrong table, a role without access, a request the service
/// calls invalid) is `Rejected` (answered 500, for an operator); throttling stays
/// `Unavailable` (503, retry).
#[tokio::test]
async fn errors_a_retry_cannot_cure_are_rejected_and_throttling_stays_unavailable() {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::transact_get_items::TransactGetItemsError;
    let failing = |code: &'static str| {
        mock!(Client::transact_get_items).then_error(move || {
            TransactGetItemsError::generic(ErrorMetadata::builder().code(code).message("no").build())
        })
    };
    for (code, retryable) in [
        ("ValidationException", false),
        ("AccessDeniedException", false),
        ("ResourceNotFoundException", false),
        ("UnrecognizedClientException", false),
        ("ItemCollectionSizeLimitExceededException", false),
        ("ThrottlingException", true),
        ("RequestLimitExceeded", true),
        ("InternalServerError", true),
        ("ReplicatedWriteConflictException", true),
    ] {
        let read = failing(code);
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&read]);
        let err = store(client, 2).apply(debit()).await.unwrap_err();
        match (retryable, &err) {
            (true, StoreError::Unavailable(_)) | (false, StoreError::Rejected(_)) => {}
            _ => panic!("{code}: {err:?}"),
        }
        assert!(err.to_string().contains(code), "{err}");
    }
}
