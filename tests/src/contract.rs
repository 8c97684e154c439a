//! The HTTP contract, held to the live answers: every answer a test receives from a
//! handler is checked against `infra/openapi.yaml` (the `jsonschema` crate, draft
//! 2020-12 as OpenAPI 3.1 uses). The operation is found by method and path, the response
//! by status; an answer whose status the operation does not document, or whose body its
//! schema refuses, fails the test that received it. A handler can no longer answer what
//! the document does not describe.
//!
//! Each answer checked is also written to `target/contract/` (one file per test process)
//! so that `tests/contract-coverage` can say which documented answers no test received.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{LazyLock, Mutex};

use serde_json::{Value, json};

struct Operation {
    method: String,
    path: String,
    segments: Vec<String>,
    op: Value,
}

struct Document {
    root: Value,
    operations: Vec<Operation>,
    validators: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

static DOCUMENT: LazyLock<Result<Document, String>> = LazyLock::new(load);

fn load() -> Result<Document, String> {
    let path = crate::repo_root().join("infra/openapi.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| format!("openapi.yaml: {e}"))?;
    let root = serde_json::to_value(yaml).map_err(|e| format!("openapi.yaml as JSON: {e}"))?;
    let mut operations = vec![];
    for (path, item) in root["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                operations.push(Operation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    segments: path.split('/').map(str::to_owned).collect(),
                    op: op.clone(),
                });
            }
        }
    }
    Ok(Document {
        root,
        operations,
        validators: Mutex::new(HashMap::new()),
    })
}

impl Document {
    /// The operation `method path` answers to: each `{param}` stands for one segment.
    fn operation(&self, method: &str, path: &str) -> Option<&Operation> {
        let segments: Vec<&str> = path.split('/').collect();
        let matches = |o: &Operation| {
            o.segments.len() == segments.len()
                && o.segments
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s)
        };
        // A literal segment wins over a parameter (`/history.csv` over `/{x}`).
        let literal = |o: &Operation| o.segments.iter().filter(|s| !s.starts_with('{')).count();
        self.operations
            .iter()
            .filter(|o| o.method == method && matches(o))
            .max_by_key(|o| literal(o))
    }

    /// `node`, or what its `$ref` names.
    fn resolved<'a>(&'a self, node: &'a Value) -> &'a Value {
        match node["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => self.root.pointer(pointer).unwrap_or(&Value::Null),
            None => node,
        }
    }

    fn validator(&self, key: &str, schema: &Value) -> Result<std::sync::Arc<jsonschema::Validator>, String> {
        let mut cache = self
            .validators
            .lock()
            .map_err(|_| "validator cache poisoned".to_owned())?;
        if let Some(v) = cache.get(key) {
            return Ok(v.clone());
        }
        // The schema inside a document that holds the components its `$ref`s name.
        let wrapped = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.root["components"],
            "allOf": [schema],
        });
        let validator = std::sync::Arc::new(
            jsonschema::draft202012::new(&wrapped)
                .map_err(|e| format!("{key}: the schema does not compile: {e}"))?,
        );
        cache.insert(key.to_owned(), validator.clone());
        Ok(validator)
    }
}

/// A path's `%XX` escapes stay as they are: a segment is matched as one, whatever it holds.
fn path_of(event: &Value) -> String {
    event["rawPath"]
        .as_str()
        .or_else(|| event["requestContext"]["http"]["path"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Checks one answer against the document: `Ok` names what it was checked as.
pub fn check(event: &Value, status: u16, content_type: Option<&str>, body: &str) -> Result<String, String> {
    let doc = DOCUMENT.as_ref().map_err(Clone::clone)?;
    let method = event["requestContext"]["http"]["method"]
        .as_str()
        .or_else(|| event["httpMethod"].as_str())
        .unwrap_or_default()
        .to_uppercase();
    let path = path_of(event);
    let Some(op) = doc.operation(&method, &path) else {
        // No documented operation (a test of unknown routes): the answer is still the
        // document's error object.
        if status == 404 || status == 405 {
            let schema = json!({ "$ref": "#/components/schemas/Error" });
            let body: Value = serde_json::from_str(body)
                .map_err(|e| format!("{method} {path}: {status}: not JSON: {e}"))?;
            let v = doc.validator("Error", &schema)?;
            return match v.iter_errors(&body).map(|e| e.to_string()).collect::<Vec<_>>() {
                errors if errors.is_empty() => Ok(format!("{method} (no route) {status}")),
                errors => Err(format!(
                    "{method} {path}: {status}: {}: {body}",
                    errors.join("; ")
                )),
            };
        }
        return Err(format!(
            "{method} {path}: no such operation in infra/openapi.yaml, yet it answered {status}"
        ));
    };
    let name = format!("{} {} {status}", op.method, op.path);
    let responses = &op.op["responses"];
    let response = match &responses[status.to_string().as_str()] {
        Value::Null => &responses["default"],
        r => r,
    };
    if response.is_null() {
        return Err(format!(
            "{name}: the document does not say this operation answers {status}: {body}"
        ));
    }
    let response = doc.resolved(response);
    let content = &response["content"];
    let Some(media) = content.as_object().and_then(|c| c.keys().next()) else {
        return Ok(name);
    };
    let answered = content_type.unwrap_or_default();
    if !answered.starts_with(media.as_str()) {
        return Err(format!(
            "{name}: answered {answered:?}, the document says {media}"
        ));
    }
    if media != "application/json" {
        return Ok(name);
    }
    let schema = &content[media]["schema"];
    let body: Value = serde_json::from_str(body).map_err(|e| format!("{name}: not JSON: {e}: {body}"))?;
    let validator = doc.validator(&name, schema)?;
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(name)
    } else {
        Err(format!(
            "{name}: the answer is not what the document describes: {}: {body}",
            errors.join("; ")
        ))
    }
}

/// Where this process notes the answers it checked.
static SEEN: LazyLock<Option<Mutex<std::fs::File>>> = LazyLock::new(|| {
    let dir = crate::repo_root().join("target/contract");
    std::fs::create_dir_all(&dir).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{}.txt", std::process::id())))
        .ok()?;
    Some(Mutex::new(file))
});

/// The handler's answer to `event` as `(status, JSON body, text)`, after checking it
/// against the document: an answer the document does not describe fails the test.
pub fn answered(event: &Value, response: lambda_http::Response<lambda_http::Body>) -> (u16, Value, String) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = String::from_utf8_lossy(response.body().as_ref()).into_owned();
    match check(event, status, content_type.as_deref(), &text) {
        Ok(name) => {
            if let Some(Ok(mut file)) = SEEN.as_ref().map(|f| f.lock()) {
                // Coverage only: a failed note fails nothing.
                let _ = writeln!(file, "{name}");
            }
        }
        Err(e) => panic!("{e}"),
    }
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body, text)
}

/// Sends `event` to `handle` (a function's handler) and checks the answer ([`answered`]).
pub async fn call<F>(event: &Value, handle: impl FnOnce(lambda_http::Request) -> F) -> (u16, Value)
where
    F: Future<Output = lambda_http::Response<lambda_http::Body>>,
{
    let (status, body, _) = answered(event, handle(crate::request(event)).await);
    (status, body)
}
