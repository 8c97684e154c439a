//! DynamoDB Streams as Lambda delivers them to a function (the event source mapping's
//! batch), read by the functions that consume the table's stream, and the answer that
//! names the records to deliver again (`ReportBatchItemFailures`).
//!
//! Images are kept in their wire form (`{"S": "..."}`, `{"N": "..."}`): the consumers read
//! a few string attributes of them, nothing more.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One batch of stream records.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamRecord {
    /// `INSERT`, `MODIFY` or `REMOVE`.
    #[serde(rename = "eventName")]
    pub event_name: String,
    pub dynamodb: Change,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Change {
    #[serde(rename = "Keys", default)]
    pub keys: Image,
    #[serde(rename = "NewImage", default)]
    pub new_image: Option<Image>,
    #[serde(rename = "OldImage", default)]
    pub old_image: Option<Image>,
    #[serde(rename = "SequenceNumber")]
    pub sequence_number: String,
}

/// An item in DynamoDB's JSON form.
pub type Image = HashMap<String, serde_json::Value>;

/// DynamoDB's JSON tag of a string attribute.
const STRING_TAG: &str = "S";

/// The string attribute `name` of an image, if it has one.
pub fn string<'a>(image: &'a Image, name: &str) -> Option<&'a str> {
    image.get(name)?.get(STRING_TAG)?.as_str()
}

impl StreamRecord {
    /// The item's partition and sort keys.
    pub fn key(&self) -> Option<(&str, &str)> {
        Some((
            string(&self.dynamodb.keys, "pk")?,
            string(&self.dynamodb.keys, "sk")?,
        ))
    }
}

/// What a stream consumer answers: the first record to deliver again, with every record
/// after it (Lambda retries from the lowest sequence number named); none when the whole
/// batch is done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub failures: Vec<ItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub id: String,
}

impl BatchResponse {
    /// Deliver again from `record` on.
    pub fn retry_from(record: &StreamRecord) -> BatchResponse {
        BatchResponse {
            failures: vec![ItemFailure {
                id: record.dynamodb.sequence_number.clone(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_record_reads_as_lambda_delivers_it() {
        let event: StreamEvent = serde_json::from_value(serde_json::json!({"Records": [{
            "eventID": "1", "eventName": "INSERT", "eventSource": "aws:dynamodb",
            "dynamodb": {
                "Keys": {"pk": {"S": "ORG#org_1"}, "sk": {"S": "NOTIF#x"}},
                "NewImage": {"pk": {"S": "ORG#org_1"}, "seq": {"N": "3"}},
                "SequenceNumber": "100000000000000000001", "SizeBytes": 10
            }
        }]}))
        .unwrap();
        let r = &event.records[0];
        assert_eq!(r.key(), Some(("ORG#org_1", "NOTIF#x")));
        assert_eq!(
            string(r.dynamodb.new_image.as_ref().unwrap(), "pk"),
            Some("ORG#org_1")
        );
        assert_eq!(string(r.dynamodb.new_image.as_ref().unwrap(), "seq"), None);
        assert_eq!(
            serde_json::to_value(BatchResponse::retry_from(r)).unwrap(),
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "100000000000000000001"}]})
        );
    }
}
