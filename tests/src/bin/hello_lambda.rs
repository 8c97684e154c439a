//! The baseline of the cold-start benchmark (`tests/bench/cold-start`): the smallest
//! `lambda_runtime` function, as in its README (tracing set up, one handler answering a
//! constant). Each function's time to its first event is compared with this one's.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({ "hello": "world" }))
    }))
    .await
}
