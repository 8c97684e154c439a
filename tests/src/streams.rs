//! Reading a table's stream on dynoxide (its DynamoDB Streams API, in the JSON form Lambda
//! hands records to a function), for tests that deliver records themselves.

// Test support: a failure to read the stream is a failed test, with its reason.
#![allow(clippy::expect_used)]

use serde_json::{Value, json};

fn call(endpoint: &str, target: &str, body: &Value) -> Value {
    // dynoxide wants the headers of a signed request; it does not check the signature.
    let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=local/{}/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=0",
        &date[..8]
    );
    let mut response = ureq::post(endpoint)
        .header("x-amz-date", &date)
        .header("authorization", &authorization)
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.0")
        .send(body.to_string())
        .unwrap_or_else(|e| panic!("{target}: {e}"));
    let text = response.body_mut().read_to_string().expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{target}: {e}: {text}"))
}

/// Every record of `table`'s stream on `endpoint`, oldest first.
pub fn read_all(endpoint: &str, table: &str) -> Vec<Value> {
    let described = call(
        endpoint,
        "DynamoDB_20120810.DescribeTable",
        &json!({"TableName": table}),
    );
    let arn = described["Table"]["LatestStreamArn"]
        .as_str()
        .unwrap_or_else(|| panic!("{table} has no stream: {described}"))
        .to_owned();
    let stream = call(
        endpoint,
        "DynamoDBStreams_20120810.DescribeStream",
        &json!({"StreamArn": arn}),
    );
    let shard = stream["StreamDescription"]["Shards"][0]["ShardId"]
        .as_str()
        .expect("a shard")
        .to_owned();
    let it = call(
        endpoint,
        "DynamoDBStreams_20120810.GetShardIterator",
        &json!({"StreamArn": arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}),
    );
    let mut it = it["ShardIterator"].as_str().expect("iterator").to_owned();
    let mut records = vec![];
    loop {
        let got = call(
            endpoint,
            "DynamoDBStreams_20120810.GetRecords",
            &json!({"ShardIterator": it}),
        );
        let page = got["Records"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return records;
        }
        records.extend(page);
        it = got["NextShardIterator"]
            .as_str()
            .expect("next iterator")
            .to_owned();
    }
}
