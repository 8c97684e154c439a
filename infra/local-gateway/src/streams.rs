//! The table's stream, locally: what Lambda's event source mappings do in AWS.
//!
//! Each `DynamoDB` event of a function in `infra/template.yaml` is one mapping: its own
//! iterator on the table's stream (dynoxide serves DynamoDB Streams), polled four times a
//! second as Lambda polls a shard, its records kept when they match the event's
//! `FilterCriteria`, then delivered in batches of its `BatchSize` to the function on
//! `cargo lambda watch`. A function error delivers the batch again, halved when the event
//! says `BisectBatchOnFunctionError`; a `batchItemFailures` answer delivers again from the
//! lowest sequence number it names. After `MaximumRetryAttempts`, the records go to the
//! dead-letter log (stderr and the `dead_letters` count), as they would to the event's
//! `OnFailure` destination.
//!
//! For tests, `duplicate` delivers every batch twice: stream consumers must be idempotent,
//! since Lambda may deliver a record more than once.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use serde_yaml::Value as Yaml;

/// One event source mapping of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// `<function logical id>.<event name>`.
    pub name: String,
    /// The binary, which is the function's name under `cargo lambda watch`.
    pub function: String,
    pub batch_size: usize,
    /// `LATEST` or `TRIM_HORIZON`.
    pub starting_position: String,
    /// The filter patterns (any one matching keeps a record); none keeps every record.
    pub filters: Vec<Value>,
    pub bisect: bool,
    pub max_retries: u32,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`: a `batchItemFailures` answer is
    /// read; without it, any answer is a success, as in AWS.
    pub report_failures: bool,
}

/// The stream mappings of the template at `path`.
pub fn from_template(path: &Path) -> Result<Vec<Mapping>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: Yaml = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let resources = doc
        .get("Resources")
        .and_then(Yaml::as_mapping)
        .ok_or("template: no Resources")?;
    let mut mappings = vec![];
    for (name, resource) in resources {
        if resource.get("Type").and_then(Yaml::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap_or("?");
        let Some(events) = resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Yaml::as_mapping)
        else {
            continue;
        };
        for (event_name, event) in events {
            if event.get("Type").and_then(Yaml::as_str) != Some("DynamoDB") {
                continue;
            }
            let event_name = event_name.as_str().unwrap_or("?");
            let function = resource
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Yaml::as_str)
                .ok_or_else(|| format!("template: {name} has a stream but no BuildProperties.Binary"))?;
            let props = event
                .get("Properties")
                .ok_or_else(|| format!("template: {name}.{event_name} has no Properties"))?;
            let number =
                |field: &str, default: u64| props.get(field).and_then(Yaml::as_u64).unwrap_or(default);
            let mut filters = vec![];
            if let Some(list) = props
                .get("FilterCriteria")
                .and_then(|f| f.get("Filters"))
                .and_then(Yaml::as_sequence)
            {
                for filter in list {
                    let pattern = filter
                        .get("Pattern")
                        .and_then(Yaml::as_str)
                        .ok_or_else(|| format!("template: a filter of {name}.{event_name} has no Pattern"))?;
                    let pattern: Value = serde_json::from_str(pattern)
                        .map_err(|e| format!("template: a filter of {name}.{event_name}: {e}"))?;
                    // Refused here, not at the first record: a pattern this cannot read.
                    matches(&pattern, &json!({}))?;
                    filters.push(pattern);
                }
            }
            mappings.push(Mapping {
                name: format!("{name}.{event_name}"),
                function: function.to_owned(),
                batch_size: usize::try_from(number("BatchSize", 100))
                    .unwrap_or(100)
                    .clamp(1, 1000),
                starting_position: props
                    .get("StartingPosition")
                    .and_then(Yaml::as_str)
                    .unwrap_or("LATEST")
                    .to_owned(),
                filters,
                bisect: props
                    .get("BisectBatchOnFunctionError")
                    .and_then(Yaml::as_bool)
                    .unwrap_or(false),
                max_retries: u32::try_from(number("MaximumRetryAttempts", 10)).unwrap_or(10),
                report_failures: props
                    .get("FunctionResponseTypes")
                    .and_then(Yaml::as_sequence)
                    .is_some_and(|t| t.iter().any(|v| v.as_str() == Some("ReportBatchItemFailures"))),
            });
        }
    }
    Ok(mappings)
}

/// Whether `record` matches the event filter `pattern`, for the rules the template uses:
/// objects match field by field; a list holds the values allowed (strings, numbers,
/// `{"prefix": ...}`). Anything else is refused, so a filter is never silently ignored.
pub fn matches(pattern: &Value, record: &Value) -> Result<bool, String> {
    let Value::Object(fields) = pattern else {
        return Err(format!("a filter pattern must be an object: {pattern}"));
    };
    let mut all = true;
    for (field, want) in fields {
        let got = record.get(field);
        let ok = match want {
            Value::Object(_) => matches(want, got.unwrap_or(&Value::Null))?,
            Value::Array(allowed) => {
                let mut any = false;
                for a in allowed {
                    any |= match a {
                        Value::String(_) | Value::Number(_) => got == Some(a),
                        Value::Object(rule) => match (rule.get("prefix"), rule.get("exists"), rule.len()) {
                            (Some(Value::String(p)), None, 1) => got
                                .and_then(Value::as_str)
                                .is_some_and(|g| g.starts_with(p.as_str())),
                            (None, Some(Value::Bool(exists)), 1) => {
                                got.is_some_and(|g| !g.is_null()) == *exists
                            }
                            _ => return Err(format!("filter rule not supported locally: {a}")),
                        },
                        _ => return Err(format!("filter value not supported locally: {a}")),
                    };
                }
                any
            }
            _ => return Err(format!("a filter field must be an object or a list: {want}")),
        };
        all &= ok;
    }
    Ok(all)
}

/// Where the stream is and where the functions are.
#[derive(Debug, Clone)]
pub struct Source {
    /// dynoxide, e.g. `http://127.0.0.1:8000`.
    pub dynamodb: String,
    pub table: String,
    /// `cargo lambda watch`, e.g. `http://127.0.0.1:9000`.
    pub upstream: String,
    /// Deliver every batch twice (tests of idempotent consumers).
    pub duplicate: bool,
    /// How often an idle shard is polled.
    pub poll: Duration,
}

/// What the mappings did, for logs and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub delivered: AtomicUsize,
    pub retried: AtomicUsize,
    pub dead_letters: AtomicUsize,
}

/// A DynamoDB (Streams) JSON call to dynoxide, which wants the headers of a signed request
/// but does not check the signature.
async fn call(source: &Source, target: &str, body: &Value) -> Result<Value, String> {
    let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=local/{}/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=0",
        &date[..8]
    );
    crate::upstream::post_json(
        &source.dynamodb,
        "/",
        &[
            ("x-amz-target", target),
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-date", &date),
            ("authorization", &authorization),
        ],
        body,
    )
    .await
    .map_err(|e| format!("{target}: {e}"))
}

/// The first shard's iterator of the table's stream, at `position`.
async fn iterator(source: &Source, position: &str) -> Result<String, String> {
    let table = call(
        source,
        "DynamoDB_20120810.DescribeTable",
        &json!({"TableName": source.table}),
    )
    .await?;
    let arn = table["Table"]["LatestStreamArn"]
        .as_str()
        .ok_or_else(|| {
            format!(
                "table {} has no stream (made before the template had one? `rm -rf .local` and start again)",
                source.table
            )
        })?
        .to_owned();
    let stream = call(
        source,
        "DynamoDBStreams_20120810.DescribeStream",
        &json!({"StreamArn": arn}),
    )
    .await?;
    let shard = stream["StreamDescription"]["Shards"][0]["ShardId"]
        .as_str()
        .ok_or_else(|| format!("the stream of {} has no shard", source.table))?
        .to_owned();
    let it = call(
        source,
        "DynamoDBStreams_20120810.GetShardIterator",
        &json!({"StreamArn": arn, "ShardId": shard, "ShardIteratorType": position}),
    )
    .await?;
    it["ShardIterator"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no shard iterator".to_owned())
}

/// Runs one mapping from iterator `it` until the process ends: poll, filter, deliver.
async fn run(
    source: Arc<Source>,
    mapping: Mapping,
    mut it: String,
    counters: Arc<Counters>,
) -> Result<(), String> {
    loop {
        let got = match call(
            &source,
            "DynamoDBStreams_20120810.GetRecords",
            &json!({"ShardIterator": it, "Limit": mapping.batch_size}),
        )
        .await
        {
            Ok(got) => got,
            // dynoxide busy or restarting: the same iterator again, as Lambda retries a poll.
            Err(e) => {
                eprintln!("streams: {}: {e}; polling again", mapping.name);
                tokio::time::sleep(source.poll).await;
                continue;
            }
        };
        let records = got["Records"].as_array().cloned().unwrap_or_default();
        if let Some(next) = got["NextShardIterator"].as_str() {
            it = next.to_owned();
        }
        let mut kept = vec![];
        for r in records.iter() {
            let keep = mapping.filters.is_empty() || {
                let mut any = false;
                for f in &mapping.filters {
                    any |= matches(f, r)?;
                }
                any
            };
            if keep {
                kept.push(r.clone());
            }
        }
        if !kept.is_empty() {
            deliver(&source, &mapping, &counters, kept.clone()).await;
            if source.duplicate {
                deliver(&source, &mapping, &counters, kept).await;
            }
        }
        if records.is_empty() {
            tokio::time::sleep(source.poll).await;
        }
    }
}

/// Delivers `batch` as Lambda does: again on failure (from the first failed record, or
/// halved), at most `max_retries` times, then to the dead-letter log.
async fn deliver(source: &Source, mapping: &Mapping, counters: &Counters, batch: Vec<Value>) {
    let mut pending = vec![batch];
    let mut retries = 0u32;
    while let Some(batch) = pending.pop() {
        let event = json!({ "Records": batch });
        let answer = crate::upstream::invoke(&source.upstream, &mapping.function, &event).await;
        counters.delivered.fetch_add(batch.len(), Ordering::Relaxed);
        let again: Vec<Vec<Value>> = match answer {
            Ok(_) if !mapping.report_failures => vec![],
            Ok(answer) => {
                let failed = answer["batchItemFailures"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["itemIdentifier"].as_str())
                    .min()
                    .map(str::to_owned);
                match failed {
                    None => vec![],
                    Some(from) => vec![
                        batch
                            .iter()
                            .filter(|r| {
                                r["dynamodb"]["SequenceNumber"]
                                    .as_str()
                                    .is_some_and(|s| s >= from.as_str())
                            })
                            .cloned()
                            .collect(),
                    ],
                }
            }
            Err(e) => {
                eprintln!("streams: {} failed: {e}", mapping.name);
                if mapping.bisect && batch.len() > 1 {
                    let (a, b) = batch.split_at(batch.len() / 2);
                    // Popped last first: the older half goes first.
                    vec![b.to_vec(), a.to_vec()]
                } else {
                    vec![batch.clone()]
                }
            }
        };
        for b in again.into_iter().filter(|b| !b.is_empty()) {
            if retries >= mapping.max_retries {
                counters.dead_letters.fetch_add(b.len(), Ordering::Relaxed);
                let first = b[0]["dynamodb"]["SequenceNumber"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                eprintln!(
                    "streams: {}: {} records from {first} to the dead letters",
                    mapping.name,
                    b.len()
                );
                continue;
            }
            retries += 1;
            counters.retried.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100u64 << retries.min(4))).await;
            pending.push(b);
        }
    }
}

/// Starts every mapping, each on its own task, once each has its iterator: as a mapping
/// created in AWS, each sees every record written after `start` returns.
pub async fn start(
    source: Source,
    mappings: Vec<Mapping>,
    counters: Arc<Counters>,
) -> Result<tokio::task::JoinSet<Result<(), String>>, String> {
    let source = Arc::new(source);
    let mut opened = vec![];
    for m in mappings {
        let it = iterator(&source, &m.starting_position).await?;
        opened.push((m, it));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (m, it) in opened {
        tasks.spawn(run(source.clone(), m, it, counters.clone()));
    }
    Ok(tasks)
}

/// Every mapping, until one stops with an error.
pub async fn run_all(source: Source, mappings: Vec<Mapping>, counters: Arc<Counters>) -> Result<(), String> {
    let mut tasks = start(source, mappings, counters).await?;
    match tasks.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(e.to_string()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_templates_mappings_and_their_filters() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        let mappings = from_template(&root).unwrap();
        let notifier = mappings.iter().find(|m| m.function == "notifier").unwrap();
        assert!(notifier.bisect && notifier.report_failures);
        let insert = |sk: &str| json!({"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "ORG#o"}, "sk": {"S": sk}}}});
        assert!(matches(&notifier.filters[0], &insert("NOTIF#2026")).unwrap());
        assert!(!matches(&notifier.filters[0], &insert("WALLET")).unwrap());
        let mut modify = insert("NOTIF#2026");
        modify["eventName"] = json!("MODIFY");
        assert!(!matches(&notifier.filters[0], &modify).unwrap());

        let crossing = mappings.iter().find(|m| m.function == "recharge").unwrap();
        let wallet = |gsi1pk: Option<&str>| {
            let mut image = json!({"pk": {"S": "ORG#o"}});
            if let Some(v) = gsi1pk {
                image["gsi1pk"] = json!({"S": v});
            }
            json!({"eventName": "MODIFY", "dynamodb": {"Keys": {"pk": {"S": "ORG#o"}, "sk": {"S": "WALLET"}}, "NewImage": image}})
        };
        assert!(matches(&crossing.filters[0], &wallet(Some("DUE#RECHARGE"))).unwrap());
        assert!(!matches(&crossing.filters[0], &wallet(None)).unwrap());
        assert!(!matches(&crossing.filters[0], &wallet(Some("HOLDS#OPEN#1"))).unwrap());

        let earnings = mappings.iter().find(|m| m.function == "earnings").unwrap();
        let entry = |creator: Option<&str>| {
            let mut image = json!({"pk": {"S": "ORG#o"}, "sk": {"S": "TX#00000000000000000001"}});
            if let Some(c) = creator {
                image["creator"] = json!({"S": c});
            }
            json!({"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "ORG#o"}, "sk": {"S": "TX#00000000000000000001"}}, "NewImage": image}})
        };
        assert!(matches(&earnings.filters[0], &entry(Some("org_creator"))).unwrap());
        assert!(!matches(&earnings.filters[0], &entry(None)).unwrap());
    }

    #[test]
    fn a_rule_it_cannot_read_is_refused() {
        assert!(matches(&json!({"a": [{"anything-but": ["x"]}]}), &json!({})).is_err());
        assert!(matches(&json!({"a": "x"}), &json!({})).is_err());
    }
}
