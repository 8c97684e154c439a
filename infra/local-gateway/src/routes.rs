//! The HTTP API's routes, read from `infra/template.yaml`: every `HttpApi` event of every
//! `AWS::Serverless::Function`, with the function it invokes (its cargo-lambda binary) and
//! the authorizer API Gateway puts in front of it. There is no second list.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;

/// Who API Gateway lets through to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A SigV4-signed request (the HTTP API's default authorizer, `AWS_IAM`).
    Iam,
    /// A bearer JWT checked by the named authorizer (`DashboardJwt`).
    Jwt(String),
    /// Anyone (`Authorizer: NONE`): the function checks what it needs itself.
    Open,
}

/// One route: `METHOD /path/{param}` to a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    /// The path as the template writes it, e.g. `/v1/orgs/{org}`; with the method it is
    /// the event's `routeKey`.
    pub path: String,
    /// The function's binary, which is its name under `cargo lambda watch`.
    pub function: String,
    pub auth: Auth,
}

impl Route {
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The routes of the template at `path`.
pub fn from_template(path: &Path) -> Result<Vec<Route>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    from_yaml(&text)
}

/// The routes of a template's text, in the template's order.
pub fn from_yaml(text: &str) -> Result<Vec<Route>, Error> {
    let template: Value = serde_yaml::from_str(text)?;
    let default = default_auth(&template);
    let resources = template
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or("template: no Resources")?;
    let mut routes = Vec::new();
    for (name, resource) in resources {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap_or("?");
        let Some(events) = resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Value::as_mapping)
        else {
            continue;
        };
        for (_, event) in events {
            if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                continue;
            }
            let binary = resource
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("template: {name} has routes but no BuildProperties.Binary"))?;
            let props = event
                .get("Properties")
                .ok_or_else(|| format!("template: an HttpApi event of {name} has no Properties"))?;
            let text = |field: &str| {
                props
                    .get(field)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| format!("template: an HttpApi event of {name} has no {field}"))
            };
            let auth = match props
                .get("Auth")
                .and_then(|a| a.get("Authorizer"))
                .and_then(Value::as_str)
            {
                None => default.clone(),
                Some(authorizer) => auth_named(authorizer),
            };
            routes.push(Route {
                method: text("Method")?.to_uppercase(),
                path: text("Path")?,
                function: binary.to_owned(),
                auth,
            });
        }
    }
    Ok(routes)
}

fn auth_named(authorizer: &str) -> Auth {
    match authorizer {
        "AWS_IAM" => Auth::Iam,
        "NONE" => Auth::Open,
        other => Auth::Jwt(other.to_owned()),
    }
}

/// The HTTP API's `DefaultAuthorizer` (none: open).
fn default_auth(template: &Value) -> Auth {
    let api = template
        .get("Resources")
        .and_then(Value::as_mapping)
        .and_then(|r| {
            r.values()
                .find(|v| v.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::HttpApi"))
        });
    match api
        .and_then(|a| a.get("Properties"))
        .and_then(|p| p.get("Auth"))
        .and_then(|a| a.get("DefaultAuthorizer"))
        .and_then(Value::as_str)
    {
        Some(authorizer) => auth_named(authorizer),
        None => Auth::Open,
    }
}

/// What a request matched: the route and its path parameters, decoded.
#[derive(Debug)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub params: BTreeMap<String, String>,
}

/// Why no route took a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    NotFound,
}

/// The routes by method, matched as API Gateway matches them: the most specific path wins,
/// and `{name+}` takes the rest of the path.
pub struct Table {
    by_method: BTreeMap<String, matchit::Router<usize>>,
    routes: Vec<Route>,
}

impl Table {
    pub fn new(routes: Vec<Route>) -> Result<Table, Error> {
        let mut by_method: BTreeMap<String, matchit::Router<usize>> = BTreeMap::new();
        for (i, route) in routes.iter().enumerate() {
            by_method
                .entry(route.method.clone())
                .or_default()
                .insert(matchit_path(&route.path), i)
                .map_err(|e| format!("route {}: {e}", route.key()))?;
        }
        Ok(Table { by_method, routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route of `method raw_path` (percent-encoded, as sent).
    pub fn find(&self, method: &str, raw_path: &str) -> Result<Matched<'_>, Miss> {
        let router = self.by_method.get(method).ok_or(Miss::NotFound)?;
        let found = router.at(raw_path).map_err(|_| Miss::NotFound)?;
        let route = &self.routes[*found.value];
        let params = found
            .params
            .iter()
            .map(|(k, v)| {
                let value = percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned();
                (k.to_owned(), value)
            })
            .collect();
        Ok(Matched { route, params })
    }
}

/// `{proxy+}` (API Gateway's greedy parameter) is matchit's `{*proxy}`.
fn matchit_path(path: &str) -> String {
    path.split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
                Some(name) => format!("{{*{name}}}"),
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// The parameter names of a template path: `{org}` is `org`, `{proxy+}` is `proxy`.
pub fn param_names(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|segment| {
        segment
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .map(|s| s.trim_end_matches('+'))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const TEMPLATE: &str = r#"
Resources:
  HttpApi:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: AWS_IAM
  A:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: usage
    Properties:
      Events:
        Debit:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Path: /v1/orgs/{org}/usage
            Method: post
        Tick:
          Type: Schedule
  B:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: account
    Properties:
      Events:
        Get:
          Type: HttpApi
          Properties:
            Path: /v1/orgs/{org}
            Method: GET
            Auth:
              Authorizer: DashboardJwt
        Page:
          Type: HttpApi
          Properties:
            Path: /billing/{proxy+}
            Method: GET
            Auth:
              Authorizer: NONE
"#;

    #[test]
    fn routes_come_from_the_template_with_their_authorizers() {
        let routes = from_yaml(TEMPLATE).unwrap();
        let keys: Vec<_> = routes
            .iter()
            .map(|r| (r.key(), r.function.as_str(), r.auth.clone()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("POST /v1/orgs/{org}/usage".to_owned(), "usage", Auth::Iam),
                (
                    "GET /v1/orgs/{org}".to_owned(),
                    "account",
                    Auth::Jwt("DashboardJwt".to_owned())
                ),
                ("GET /billing/{proxy+}".to_owned(), "account", Auth::Open),
            ]
        );
    }

    #[test]
    fn paths_match_with_decoded_parameters_and_greedy_tails() {
        let table = Table::new(from_yaml(TEMPLATE).unwrap()).unwrap();
        let m = table.find("GET", "/v1/orgs/org%5Fdemo").unwrap();
        assert_eq!(m.route.path, "/v1/orgs/{org}");
        assert_eq!(m.params["org"], "org_demo");
        let m = table.find("GET", "/billing/app/billing.js").unwrap();
        assert_eq!(m.params["proxy"], "app/billing.js");
        assert_eq!(table.find("DELETE", "/v1/orgs/x").unwrap_err(), Miss::NotFound);
        assert_eq!(table.find("GET", "/v1/orgs/x/y").unwrap_err(), Miss::NotFound);
        assert_eq!(
            param_names("/v1/{org}/x/{proxy+}").collect::<Vec<_>>(),
            vec!["org", "proxy"]
        );
    }

    #[test]
    fn the_real_template_has_every_function_route() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        let routes = from_template(&path).unwrap();
        let table = Table::new(routes.clone()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let events = text.lines().filter(|l| l.trim() == "Type: HttpApi").count();
        assert_eq!(routes.len(), events);
        let hook = table.find("POST", "/v1/stripe/webhooks").unwrap();
        assert_eq!(
            (hook.route.function.as_str(), &hook.route.auth),
            ("webhooks", &Auth::Open)
        );
        let usage = table.find("POST", "/v1/orgs/o/usage").unwrap();
        assert_eq!(usage.route.auth, Auth::Iam);
        let balance = table.find("GET", "/v1/orgs/o/balance").unwrap();
        assert_eq!(balance.route.auth, Auth::Jwt("DashboardJwt".to_owned()));
    }
}
