//! The alerts bus on moto's EventBridge, with a queue subscribed to it by a rule, as a
//! platform team's rule would be: what reached the bus is what the queue received.

// Test support: a failure to set the bus up is a failed test, with its reason.
#![allow(clippy::expect_used)]

use std::sync::Mutex;

use serde_json::Value;

fn credentials() -> aws_sdk_sqs::config::Credentials {
    aws_sdk_sqs::config::Credentials::new("local", "local", None, None, "agent-credits-tests")
}

/// An EventBridge client for a local endpoint (moto), with dummy credentials.
pub fn events_client(endpoint: &str) -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::Config::builder()
            .behavior_version_latest()
            .endpoint_url(endpoint)
            .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
            .credentials_provider(credentials())
            .build(),
    )
}

pub struct Bus {
    pub name: String,
    pub events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
    queue: String,
    received: Mutex<Vec<Value>>,
}

impl Bus {
    /// Creates the bus `name` on `endpoint`, a queue, and a rule sending every event of
    /// source `agent-credits` to the queue.
    pub async fn create(endpoint: &str, name: &str) -> Bus {
        let events = events_client(endpoint);
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version_latest()
                .endpoint_url(endpoint)
                .region(aws_sdk_sqs::config::Region::new("us-east-1"))
                .credentials_provider(credentials())
                .build(),
        );
        events
            .create_event_bus()
            .name(name)
            .send()
            .await
            .expect("create the bus");
        let queue = sqs
            .create_queue()
            .queue_name(format!("{name}-alerts"))
            .send()
            .await
            .expect("create the queue")
            .queue_url
            .expect("queue url");
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
            .expect("queue arn");
        events
            .put_rule()
            .name("alerts-to-queue")
            .event_bus_name(name)
            .event_pattern(r#"{"source": ["agent-credits"]}"#)
            .send()
            .await
            .expect("the rule");
        events
            .put_targets()
            .rule("alerts-to-queue")
            .event_bus_name(name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("the rule's target");
        Bus {
            name: name.to_owned(),
            events,
            sqs,
            queue,
            received: Mutex::new(vec![]),
        }
    }

    /// Every event the queue received so far (EventBridge's envelope: `detail-type`,
    /// `source`, `detail`, ...), oldest first; waits up to `wait_seconds` for a first one
    /// when none came yet.
    pub async fn received(&self, wait_seconds: i32) -> Vec<Value> {
        let mut wait = if self.all().is_empty() { wait_seconds } else { 0 };
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue)
                .max_number_of_messages(10)
                .wait_time_seconds(wait)
                .send()
                .await
                .expect("receive");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return self.all();
            }
            wait = 0;
            for m in messages {
                let body: Value = serde_json::from_str(m.body().unwrap_or("null")).expect("an event");
                self.received.lock().expect("lock").push(body);
                if let Some(handle) = m.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete");
                }
            }
        }
    }

    /// The received events of `detail_type`.
    pub async fn of(&self, detail_type: &str, wait_seconds: i32) -> Vec<Value> {
        self.received(wait_seconds)
            .await
            .into_iter()
            .filter(|e| e["detail-type"] == detail_type)
            .collect()
    }

    fn all(&self) -> Vec<Value> {
        self.received.lock().expect("lock").clone()
    }
}
