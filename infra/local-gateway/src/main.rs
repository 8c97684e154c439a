//! `local-gateway serve` runs the local HTTP API; `local-gateway streams` runs the table
//! stream's event source mappings ([`local_gateway::streams`]); `local-gateway token SUB`
//! prints a dashboard token for the dev user SUB, signed by the local issuer.
//!
//! Settings come from the environment (`infra/local/up` writes them to `.local/env`):
//!
//! | variable | default | what |
//! |---|---|---|
//! | `API_PORT` | 3000 | where the API listens, on 127.0.0.1 |
//! | `WATCH_PORT` | 9000 | `cargo lambda watch`'s invoke port |
//! | `GATEWAY_STATE` | `.local/gateway` | the issuer's key |
//! | `TEMPLATE` | `infra/template.yaml` | the routes |
//! | `JWT_ISSUER` | `http://127.0.0.1:$API_PORT/` | `iss` |
//! | `JWT_AUDIENCE` | `agent-credits-dashboard` | `aud` (the template's default) |
//! | `LOCAL_RUNTIME_ACCESS_KEY_ID`, `LOCAL_RUNTIME_SECRET_ACCESS_KEY` | | the agent runtime's pair |
//! | `LOCAL_OPERATOR_ACCESS_KEY_ID`, `LOCAL_OPERATOR_SECRET_ACCESS_KEY` | | an operator's pair |
//! | `RUNTIME_ROLE_ARNS`, `OPERATOR_ROLE_ARNS` | | the roles those pairs act as (the first of each) |
//! | `AWS_REGION` | us-east-1 | the region signatures are scoped to |
//! | `DASHBOARD_ORIGINS` | | origins allowed by CORS, comma separated (the template's `DashboardOrigins`) |
//! | `DYNAMODB_ENDPOINT`, `TABLE_NAME` | | `streams`: the table whose stream is read |
//! | `STREAM_DUPLICATES` | | `streams`: `1` delivers every batch twice |

use std::path::PathBuf;
use std::process::ExitCode;

use local_gateway::{Config, jwt, routes, sigv4};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn port(name: &str, default: u16) -> Result<u16, String> {
    match var(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("{name}={v} is not a port")),
    }
}

fn issuer() -> Result<jwt::Issuer, String> {
    let api_port = port("API_PORT", 3000)?;
    let state = PathBuf::from(var("GATEWAY_STATE").unwrap_or_else(|| ".local/gateway".into()));
    let iss = var("JWT_ISSUER").unwrap_or_else(|| format!("http://127.0.0.1:{api_port}/"));
    let aud = var("JWT_AUDIENCE").unwrap_or_else(|| "agent-credits-dashboard".into());
    jwt::Issuer::open(&state, &iss, &aud).map_err(|e| e.to_string())
}

/// A credential pair from the environment, acting as the first role of `roles_var`.
fn credential(prefix: &str, roles_var: &str) -> Result<Option<sigv4::Credential>, String> {
    let id = var(&format!("LOCAL_{prefix}_ACCESS_KEY_ID"));
    let secret = var(&format!("LOCAL_{prefix}_SECRET_ACCESS_KEY"));
    let role = var(roles_var).and_then(|r| r.split(',').next().map(|s| s.trim().to_owned()));
    match (id, secret, role) {
        (Some(access_key_id), Some(secret_access_key), Some(role_arn)) => Ok(Some(sigv4::Credential {
            access_key_id,
            secret_access_key,
            role_arn,
        })),
        (None, None, _) => Ok(None),
        _ => Err(format!(
            "LOCAL_{prefix}_ACCESS_KEY_ID, LOCAL_{prefix}_SECRET_ACCESS_KEY and {roles_var} go together"
        )),
    }
}

async fn serve() -> Result<(), String> {
    let api_port = port("API_PORT", 3000)?;
    let watch_port = port("WATCH_PORT", 9000)?;
    let template = PathBuf::from(var("TEMPLATE").unwrap_or_else(|| "infra/template.yaml".into()));
    let routes = routes::from_template(&template).map_err(|e| e.to_string())?;
    let count = routes.len();
    let routes = routes::Table::new(routes).map_err(|e| e.to_string())?;
    let credentials: Vec<_> = [
        credential("RUNTIME", "RUNTIME_ROLE_ARNS")?,
        credential("OPERATOR", "OPERATOR_ROLE_ARNS")?,
    ]
    .into_iter()
    .flatten()
    .collect();
    let config = Config {
        routes,
        upstream: format!("http://127.0.0.1:{watch_port}"),
        issuer: issuer()?,
        credentials,
        region: var("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
        cors_origins: var("DASHBOARD_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", api_port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{api_port}: {e}"))?;
    println!(
        "local-gateway: {count} routes of {} on http://127.0.0.1:{api_port}, functions on 127.0.0.1:{watch_port}",
        template.display()
    );
    local_gateway::serve(listener, config)
        .await
        .map_err(|e| e.to_string())
}

/// The table's stream mappings (`local-gateway streams`), until the process ends.
async fn streams() -> Result<(), String> {
    let template = PathBuf::from(var("TEMPLATE").unwrap_or_else(|| "infra/template.yaml".into()));
    let mappings = local_gateway::streams::from_template(&template)?;
    let source = local_gateway::streams::Source {
        dynamodb: var("DYNAMODB_ENDPOINT").ok_or("DYNAMODB_ENDPOINT is required")?,
        table: var("TABLE_NAME").ok_or("TABLE_NAME is required")?,
        upstream: format!("http://127.0.0.1:{}", port("WATCH_PORT", 9000)?),
        duplicate: var("STREAM_DUPLICATES").is_some_and(|v| v == "1"),
        poll: std::time::Duration::from_millis(250),
    };
    for m in &mappings {
        println!(
            "local-gateway: stream of {} -> {} ({})",
            source.table, m.function, m.name
        );
    }
    local_gateway::streams::run_all(source, mappings, Default::default()).await
}

fn token(args: &[String]) -> Result<(), String> {
    let usage = "usage: local-gateway token SUB [--ttl SECONDS]";
    let sub = args.first().ok_or(usage)?;
    let ttl = match args.get(1).map(String::as_str) {
        None => 3600,
        Some("--ttl") => args.get(2).and_then(|s| s.parse::<i64>().ok()).ok_or(usage)?,
        Some(_) => return Err(usage.into()),
    };
    if sub.is_empty() || sub.starts_with('-') {
        return Err(usage.into());
    }
    let token = issuer()?
        .token(sub, chrono::Utc::now().timestamp(), ttl)
        .map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve().await,
        Some("token") => token(&args[1..]),
        Some("streams") => streams().await,
        _ => Err(
            "usage: local-gateway serve | local-gateway streams | local-gateway token SUB [--ttl SECONDS]"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local-gateway: {e}");
            ExitCode::from(2)
        }
    }
}
