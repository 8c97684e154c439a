//! The SAM template against the code: every function in the template has a binary and
//! every binary a function, every environment variable a function's code reads is set for
//! it in the template (or is one of the documented local-only overrides), and every route
//! has a sample event in `infra/events/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use agent_credits_http::{Auth, Router};

/// Read by the code, set only outside AWS: emulator endpoints and the keys a local run
/// passes directly (in AWS the keys come from `STRIPE_SECRET_ARN`).
const LOCAL_ONLY: [&str; 6] = [
    "DYNAMODB_ENDPOINT",
    "SECRETSMANAGER_ENDPOINT",
    "EVENTBRIDGE_ENDPOINT",
    "STRIPE_API_BASE",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
];

/// Read when an operator sets them; unset in the template on purpose (`shared/aws/src/tls.rs`).
const OPTIONAL: [&str; 1] = ["AWS_CA_BUNDLE"];

fn unset_by_design(name: &str) -> bool {
    LOCAL_ONLY.contains(&name) || OPTIONAL.contains(&name)
}

fn template() -> serde_yaml::Value {
    let text = std::fs::read_to_string(support::repo_root().join("infra/template.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn keys(v: &serde_yaml::Value) -> BTreeSet<String> {
    v.as_mapping()
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// binary → the variables the template sets for it (globals included).
fn functions() -> BTreeMap<String, BTreeSet<String>> {
    let t = template();
    let globals = keys(&t["Globals"]["Function"]["Environment"]["Variables"]);
    let mut out = BTreeMap::new();
    for (_, r) in t["Resources"].as_mapping().unwrap() {
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = r["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut env = globals.clone();
        env.extend(keys(&r["Properties"]["Environment"]["Variables"]));
        out.insert(binary, env);
    }
    out
}

/// The environment variables the Rust sources under `dir` name.
fn read_by(dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            names.extend(read_by(&path));
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for call in ["env(\"", "get(\"", "var(\"", "== \""] {
            for piece in text.split(call).skip(1) {
                let name: String = piece.chars().take_while(|c| *c != '"').collect();
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                {
                    names.insert(name);
                }
            }
        }
        // Names passed through helpers: any literal that looks like ONE_TWO.
        for piece in text.split('"').skip(1).step_by(2) {
            if piece.contains('_')
                && piece.len() > 3
                && piece
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                names.insert(piece.to_owned());
            }
        }
    }
    names
}

/// Each function crate's binary name (its package name) and directory.
fn binaries() -> BTreeMap<String, std::path::PathBuf> {
    let root = support::repo_root().join("functions");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("src/main.rs").exists() {
            continue;
        }
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|n| n.strip_suffix('"'))
            .unwrap()
            .to_owned();
        out.insert(name, dir);
    }
    out
}

#[test]
fn every_function_has_a_binary_and_every_binary_a_function() {
    let in_template: BTreeSet<String> = functions().into_keys().collect();
    let built: BTreeSet<String> = binaries().into_keys().collect();
    assert_eq!(in_template, built);
    assert_eq!(built.len(), 9, "{built:?}");
}

#[test]
fn every_variable_the_code_reads_is_set_in_the_template() {
    let functions = functions();
    for (binary, dir) in binaries() {
        let set = &functions[&binary];
        let missing: Vec<String> = read_by(&dir.join("src"))
            .into_iter()
            .filter(|n| !set.contains(n) && !unset_by_design(n))
            .collect();
        assert!(
            missing.is_empty(),
            "{binary} reads {missing:?}, which the template does not set"
        );
    }
    // What the shared AWS wiring reads is set for some function, or local only.
    let anywhere: BTreeSet<String> = functions.values().flatten().cloned().collect();
    let shared = read_by(&support::repo_root().join("shared/aws/src"));
    let missing: Vec<&String> = shared
        .iter()
        .filter(|n| !anywhere.contains(*n) && !unset_by_design(n))
        .collect();
    assert!(missing.is_empty(), "shared/aws reads {missing:?}, set nowhere");
    assert!(
        shared.contains("STRIPE_SECRET_ARN"),
        "the scan sees the shared wiring"
    );
}

/// Every HTTP route in the template, as API Gateway names it (`METHOD /path`).
fn routes() -> BTreeSet<String> {
    let t = template();
    let mut out = BTreeSet::new();
    for (_, r) in t["Resources"].as_mapping().unwrap() {
        let Some(events) = r["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, e) in events {
            if e["Type"].as_str() == Some("HttpApi") {
                let p = &e["Properties"];
                out.insert(format!(
                    "{} {}",
                    p["Method"].as_str().unwrap(),
                    p["Path"].as_str().unwrap()
                ));
            }
        }
    }
    out
}

#[test]
fn every_route_and_the_schedule_have_a_sample_event() {
    let mut samples = BTreeSet::new();
    let events = support::repo_root().join("infra/events");
    for dir in std::fs::read_dir(&events).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
            let event: serde_json::Value = serde_json::from_str(&text).unwrap();
            if let Some(route) = event["routeKey"].as_str() {
                samples.insert(route.to_owned());
            }
        }
    }
    let missing: Vec<_> = routes().difference(&samples).cloned().collect();
    assert!(
        missing.is_empty(),
        "routes without a sample event in infra/events: {missing:?}"
    );
    assert!(routes().len() >= 27);
    let tick: serde_json::Value = support::event("recharge/scheduled.json");
    assert_eq!(tick["detail-type"], "Scheduled Event");
}

/// Each IAM route of the document is granted by the managed policy of its `x-iam-role`,
/// and by no other.
#[test]
fn each_iam_route_is_granted_by_its_roles_policy_only() {
    let t = template();
    let granted = |policy: &str| -> Vec<String> {
        let statements = t["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{policy} has no statements"));
        statements
            .iter()
            .flat_map(|s| s["Resource"].as_sequence().cloned().unwrap_or_default())
            .filter_map(|r| {
                // `!Sub arn:...:${HttpApi}/*/METHOD/path` → `METHOD/path`.
                let text = match &r {
                    serde_yaml::Value::Tagged(tagged) => tagged.value.as_str().map(str::to_owned),
                    other => other.as_str().map(str::to_owned),
                }?;
                text.split_once("${HttpApi}/*/")
                    .map(|(_, route)| route.to_owned())
            })
            .collect()
    };
    let runtime = granted("AgentRuntimePolicy");
    let operator = granted("OperatorPolicy");
    let mut seen = 0;
    for op in support_operations() {
        let Some(role) = op.1.as_deref() else { continue };
        seen += 1;
        let mut route = format!("{}{}", op.0, op.2);
        // Path parameters are one segment each: `*` in the policy.
        while let Some(start) = route.find('{') {
            let end = route[start..].find('}').map(|e| start + e).unwrap();
            route.replace_range(start..=end, "*");
        }
        let (mine, other) = match role {
            "runtime" => (&runtime, &operator),
            "operator" => (&operator, &runtime),
            r => panic!("unknown x-iam-role {r}"),
        };
        assert!(
            mine.contains(&route),
            "{route} is not granted to the {role} role: {mine:?}"
        );
        assert!(!other.contains(&route), "{route} is granted to another role too");
    }
    assert_eq!(
        seen,
        runtime.len() + operator.len(),
        "each policy grants documented routes only"
    );
}

/// (METHOD/, x-iam-role, path) of every operation of `infra/openapi.yaml`.
fn support_operations() -> Vec<(String, Option<String>, String)> {
    let text = std::fs::read_to_string(support::repo_root().join("infra/openapi.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut out = vec![];
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for (method, op) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if !["get", "put", "post", "delete", "patch"].contains(&method) {
                continue;
            }
            out.push((
                format!("{}/", method.to_uppercase()),
                op["x-iam-role"].as_str().map(str::to_owned),
                path.as_str().unwrap().trim_start_matches('/').to_owned(),
            ));
        }
    }
    out
}

/// Each function's route table is exactly its HttpApi events in the template, with the
/// template's authorizer, and the document gives each route the same security (IAM
/// routes: the role the table names). The template and the document are the tables'.
#[test]
fn each_functions_route_table_is_its_template_routes_and_the_documents() {
    // Each table makes a router: no path the matcher refuses, no route twice.
    assert!(Router::new(usage::routes()).is_ok());
    assert!(Router::new(account::routes()).is_ok());
    assert!(Router::new(checkout::routes()).is_ok());
    assert!(Router::new(webhooks::routes()).is_ok());
    let mut tables = BTreeMap::<&str, Vec<(String, String, Auth)>>::new();
    for (tag, method, path, auth) in common::route_table() {
        tables
            .entry(tag)
            .or_default()
            .push((method, path.to_owned(), auth));
    }
    let t = template();
    let default = t["Resources"]["HttpApi"]["Properties"]["Auth"]["DefaultAuthorizer"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut in_template = BTreeMap::<String, BTreeSet<(String, String, String)>>::new();
    for (_, r) in t["Resources"].as_mapping().unwrap() {
        let Some(events) = r["Properties"]["Events"].as_mapping() else {
            continue;
        };
        let binary = r["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_default();
        for (_, e) in events {
            if e["Type"].as_str() == Some("HttpApi") {
                let p = &e["Properties"];
                let authorizer = p["Auth"]["Authorizer"]
                    .as_str()
                    .map_or(default.clone(), str::to_owned);
                in_template.entry(binary.to_owned()).or_default().insert((
                    p["Method"].as_str().unwrap().to_owned(),
                    p["Path"].as_str().unwrap().to_owned(),
                    authorizer,
                ));
            }
        }
    }
    let doc = support::repo_root().join("infra/openapi.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(doc).unwrap()).unwrap();
    let mut binaries: Vec<&String> = in_template.keys().collect();
    binaries.sort();
    // The billing page's routes answer HTML and are not in the document (README).
    assert_eq!(
        binaries,
        ["account", "billing-page", "checkout", "usage", "webhooks"]
    );
    for (function, routes) in &tables {
        let declared: BTreeSet<(String, String, String)> = routes
            .iter()
            .map(|(m, p, a)| (m.clone(), p.clone(), a.authorizer().to_owned()))
            .collect();
        assert_eq!(
            declared, in_template[*function],
            "{function}: the route table and the template differ"
        );
        for (method, path, auth) in routes {
            let op = &doc["paths"][path.as_str()][method.to_lowercase().as_str()];
            assert!(op.is_mapping(), "{method} {path} is not in the document");
            // An operation without its own `security` has the document's.
            let security = match &op["security"] {
                serde_yaml::Value::Null => &doc["security"],
                own => own,
            };
            let security = serde_json::to_string(&serde_json::to_value(security).unwrap()).unwrap();
            let (role, want) = match auth {
                Auth::Runtime => (Some("runtime"), "[{\"iam\":[]}]"),
                Auth::Operator => (Some("operator"), "[{\"iam\":[]}]"),
                Auth::User | Auth::Member(_) | Auth::Personal => (None, "[{\"dashboardJwt\":[]}]"),
                Auth::Stripe => (None, "[]"),
            };
            assert_eq!(op["x-iam-role"].as_str(), role, "{method} {path}: x-iam-role");
            assert_eq!(security, want, "{method} {path}: security");
        }
    }
}
