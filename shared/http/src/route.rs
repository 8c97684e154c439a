//! Route tables. Each function declares its routes in one table: method, path (as the SAM
//! template writes it), who may call, and the handler. The router matches the path
//! (`matchit`), answers 404 and 405 the same way in every function, checks the caller
//! before anything else of the request is read, and hands the handler its caller and
//! typed path parameters. The permission matrix and the template checks read the same
//! tables (`routes()` of each function).

use std::future::Future;
use std::pin::Pin;

use agent_credits_domain::{Action, Member, MemberId, Org, OrgDirectory, OrgId, StoreError};
use lambda_http::http::{HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;

use crate::{ApiError, ErrorCode, IamCaller, IamRoles, Principal, dashboard_caller, iam_caller};

pub type Reply = Result<Response<Body>, ApiError>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Handler<S, W> = for<'a> fn(&'a S, Call<'a, W>) -> BoxFuture<'a, Reply>;

/// Who may call a route, as the template's authorizer and the function check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// IAM-signed, acting as the agent runtime's role.
    Runtime,
    /// IAM-signed, acting as an operator's role.
    Operator,
    /// A dashboard user (the JWT's subject), whatever org.
    User,
    /// A dashboard user who is a member of the path's `{org}` with a role that the org
    /// allows the action.
    Member(Action),
    /// A dashboard user, on their own personal account (`/v1/me/...`), opened on first use.
    Personal,
    /// Anyone: the handler verifies Stripe's signature over the raw body.
    Stripe,
}

impl Auth {
    /// The template's authorizer for the route: `AWS_IAM`, `DashboardJwt` or `NONE`.
    pub fn authorizer(self) -> &'static str {
        match self {
            Auth::Runtime | Auth::Operator => "AWS_IAM",
            Auth::User | Auth::Member(_) | Auth::Personal => "DashboardJwt",
            Auth::Stripe => "NONE",
        }
    }
}

/// A dashboard caller who is a member of the route's org.
#[derive(Debug, Clone)]
pub struct Membership {
    pub org: Org,
    /// The caller, as a member of `org`.
    pub member: Member,
}

/// What a function gives its router: the IAM roles its IAM routes admit, and the org
/// directory its member routes look callers up in.
pub trait Edge: Send + Sync {
    /// `None`: the function has no IAM routes, and nobody passes an IAM check.
    fn iam_roles(&self) -> Option<&IamRoles> {
        None
    }

    /// The org directory member routes look callers up in; `None`: the function has no
    /// member routes.
    fn directory(&self) -> Option<&dyn OrgDirectory> {
        None
    }
}

/// The org and the caller as its member; `None` when the caller is no member.
async fn membership<S: Edge>(
    svc: &S,
    org: &OrgId,
    me: &MemberId,
) -> Result<Option<(Org, Member)>, StoreError> {
    match svc.directory() {
        Some(directory) => directory.membership(org, me).await,
        // A member route in a function with no directory is a wiring mistake: 500.
        None => Err(StoreError::Rejected(
            "this function has no org directory".to_owned(),
        )),
    }
}

/// A request that reached its route, with the caller the route's auth established.
pub struct Call<'a, W> {
    pub req: &'a Request,
    /// Path parameters by name, percent-decoded (`None`: not UTF-8 once decoded; a
    /// malformed escape stays as it is, and no id accepts `%`).
    params: Vec<(String, Option<String>)>,
    pub who: W,
}

/// A path parameter's type: parsed from the decoded segment, refused with its own code.
pub trait PathParam: std::str::FromStr<Err: std::fmt::Display> {
    const INVALID: ErrorCode;

    /// Why a value that parses is still not taken in a path; `None`: it is.
    fn refused(&self) -> Option<&'static str> {
        None
    }
}

impl PathParam for OrgId {
    const INVALID: ErrorCode = ErrorCode::InvalidOrg;

    /// A personal account is nobody's org: `/v1/orgs/{org}` never reaches one (nobody may
    /// add members to it, nor read it as an org), its owner included.
    fn refused(&self) -> Option<&'static str> {
        self.is_personal().then_some(
            "a personal account is reached under /v1/me (the dashboard) or with context personal (the runtime)",
        )
    }
}
impl PathParam for MemberId {
    const INVALID: ErrorCode = ErrorCode::InvalidMember;
}
impl PathParam for agent_credits_domain::AgentId {
    const INVALID: ErrorCode = ErrorCode::InvalidAgent;
}
impl PathParam for agent_credits_domain::HoldId {
    const INVALID: ErrorCode = ErrorCode::InvalidHold;
}
impl PathParam for agent_credits_domain::WithdrawalId {
    const INVALID: ErrorCode = ErrorCode::InvalidWithdrawal;
}
impl PathParam for agent_credits_domain::Provider {
    const INVALID: ErrorCode = ErrorCode::InvalidProvider;
}
impl PathParam for agent_credits_domain::Consumable {
    const INVALID: ErrorCode = ErrorCode::UnknownKind;
}
impl PathParam for agent_credits_domain::Feature {
    const INVALID: ErrorCode = ErrorCode::UnknownFeature;
}
impl PathParam for agent_credits_domain::ModelId {
    const INVALID: ErrorCode = ErrorCode::InvalidModel;
}

/// A value a request names outside its path (a query parameter, a field read as text) as
/// a `T`, refused as a path parameter of that type would be: a 400 with `T`'s code.
pub fn named<T: PathParam>(value: Option<&str>) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            v.parse()
                .map_err(|e: T::Err| ApiError::bad_request(T::INVALID, e.to_string()))
        })
        .transpose()
}

impl<'a, W> Call<'a, W> {
    fn with<V>(self, who: V) -> Call<'a, V> {
        Call {
            req: self.req,
            params: self.params,
            who,
        }
    }

    /// The path parameter `name` as a `T`; a value `T` refuses is a 400 with `T`'s code.
    pub fn param<T: PathParam>(&self, name: &str) -> Result<T, ApiError> {
        let raw = self
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
            .ok_or_else(|| ApiError::internal(&format!("route has no parameter {name}")))?;
        let refused = |why: String| ApiError::bad_request(T::INVALID, format!("{name}: {why}"));
        let value: T = raw
            .ok_or_else(|| refused("not UTF-8 once %-decoded".to_owned()))?
            .parse()
            .map_err(|e: T::Err| refused(e.to_string()))?;
        match value.refused() {
            Some(why) => Err(refused(why.to_owned())),
            None => Ok(value),
        }
    }

    /// The JSON body as a `T` (see [`crate::parse_json`]).
    pub fn body<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        crate::parse_json(self.req)
    }

    /// A query parameter's first value.
    pub fn query(&self, name: &str) -> Option<String> {
        crate::query_param(self.req, name)
    }
}

enum Handle<S> {
    Iam(Principal, Handler<S, IamCaller>),
    User(Handler<S, MemberId>),
    Member(Action, Handler<S, Membership>),
    Personal(Handler<S, Membership>),
    Open(Handler<S, ()>),
}

/// One route: method, path and who may call it, with its handler.
pub struct Route<S> {
    pub method: Method,
    pub path: &'static str,
    handle: Handle<S>,
}

impl<S> Route<S> {
    pub fn runtime(method: Method, path: &'static str, handler: Handler<S, IamCaller>) -> Route<S> {
        Route {
            method,
            path,
            handle: Handle::Iam(Principal::Runtime, handler),
        }
    }

    pub fn operator(method: Method, path: &'static str, handler: Handler<S, IamCaller>) -> Route<S> {
        Route {
            method,
            path,
            handle: Handle::Iam(Principal::Operator, handler),
        }
    }

    pub fn user(method: Method, path: &'static str, handler: Handler<S, MemberId>) -> Route<S> {
        Route {
            method,
            path,
            handle: Handle::User(handler),
        }
    }

    /// A route on `{org}` for its members whose role the org allows `action`.
    pub fn member(
        method: Method,
        path: &'static str,
        action: Action,
        handler: Handler<S, Membership>,
    ) -> Route<S> {
        Route {
            method,
            path,
            handle: Handle::Member(action, handler),
        }
    }

    /// A route on the caller's own personal account (`/v1/me/...`): theirs alone, where
    /// they are the one owner. One never opened is shown empty; a route that writes opens
    /// it ([`agent_credits_domain::OrgId::personal`]).
    pub fn personal(method: Method, path: &'static str, handler: Handler<S, Membership>) -> Route<S> {
        Route {
            method,
            path,
            handle: Handle::Personal(handler),
        }
    }

    pub fn stripe(method: Method, path: &'static str, handler: Handler<S, ()>) -> Route<S> {
        Route {
            method,
            path,
            handle: Handle::Open(handler),
        }
    }

    pub fn auth(&self) -> Auth {
        match self.handle {
            Handle::Iam(Principal::Runtime, _) => Auth::Runtime,
            Handle::Iam(Principal::Operator, _) => Auth::Operator,
            Handle::User(_) => Auth::User,
            Handle::Member(action, _) => Auth::Member(action),
            Handle::Personal(_) => Auth::Personal,
            Handle::Open(_) => Auth::Stripe,
        }
    }
}

/// A function's router, built from its table on first use (a table the matcher refuses
/// answers every request 500, and each function's tests build it).
pub type Table<S> = std::sync::LazyLock<Result<Router<S>, String>>;

/// The answer of `table`'s router to `req`.
pub async fn answer<S: Edge>(table: &Table<S>, svc: &S, req: Request) -> Response<Body> {
    match table.as_ref() {
        // On the heap: a route's future holds several reads at once, and a debug build's
        // stack frames for it are large.
        Ok(router) => Box::pin(router.handle(svc, &req)).await,
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// A function's routes, matched by path and then by method.
pub struct Router<S> {
    paths: matchit::Router<Vec<usize>>,
    routes: Vec<Route<S>>,
}

impl<S: Edge> Router<S> {
    /// The table as a router. A path the matcher refuses, or two routes with the same
    /// method and path, is a mistake in the table: an error naming it.
    pub fn new(routes: Vec<Route<S>>) -> Result<Router<S>, String> {
        let mut by_path: Vec<(&'static str, Vec<usize>)> = vec![];
        for (i, route) in routes.iter().enumerate() {
            match by_path.iter_mut().find(|(p, _)| *p == route.path) {
                Some((_, list)) if list.iter().any(|j| routes[*j].method == route.method) => {
                    return Err(format!("{} {} twice", route.method, route.path));
                }
                Some((_, list)) => list.push(i),
                None => by_path.push((route.path, vec![i])),
            }
        }
        let mut paths = matchit::Router::new();
        for (path, list) in by_path {
            paths.insert(path, list).map_err(|e| format!("{path}: {e}"))?;
        }
        Ok(Router { paths, routes })
    }

    /// The table, for the checks that read it.
    pub fn routes(&self) -> &[Route<S>] {
        &self.routes
    }

    /// The answer to `req`: its route's, or the error any step refused it with.
    pub async fn handle(&self, svc: &S, req: &Request) -> Response<Body> {
        match self.dispatch(svc, req).await {
            Ok(response) => response,
            Err((error, allow)) => {
                let mut response = error.into_response();
                if let Some(allow) = allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
                    response.headers_mut().insert("allow", allow);
                }
                response
            }
        }
    }

    async fn dispatch(&self, svc: &S, req: &Request) -> Result<Response<Body>, (ApiError, Option<String>)> {
        let path = match req.raw_http_path() {
            "" => req.uri().path().to_owned(),
            p => p.to_owned(),
        };
        let not_found = || ApiError::not_found(ErrorCode::RouteNotFound, "no such route");
        let found = self.paths.at(&path).map_err(|_| (not_found(), None))?;
        let Some(route) = found
            .value
            .iter()
            .map(|i| &self.routes[*i])
            .find(|r| r.method == req.method())
        else {
            let allow: Vec<&str> = found
                .value
                .iter()
                .map(|i| self.routes[*i].method.as_str())
                .collect();
            let error = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                format!("this path answers {}", allow.join(", ")),
            );
            return Err((error, Some(allow.join(", "))));
        };
        let params: Vec<(String, Option<String>)> = found
            .params
            .iter()
            .map(|(name, raw)| {
                let decoded = percent_encoding::percent_decode_str(raw)
                    .decode_utf8()
                    .ok()
                    .map(|s| s.into_owned());
                (name.to_owned(), decoded)
            })
            .collect();
        let call = Call { req, params, who: () };
        let answer = match &route.handle {
            Handle::Iam(principal, handler) => {
                let caller = iam_caller(req).map_err(|e| (e, None))?;
                tracing::info!(caller = %caller.arn, method = %req.method(), %path, "IAM request");
                let roles = svc.iam_roles().ok_or_else(|| {
                    (
                        ApiError::forbidden(format!("this route is for the {} role", principal.as_str())),
                        None,
                    )
                })?;
                roles.require(&caller, *principal).map_err(|e| (e, None))?;
                handler(svc, call.with(caller)).await
            }
            Handle::User(handler) => {
                let me = dashboard_caller(req).map_err(|e| (e, None))?;
                handler(svc, call.with(me)).await
            }
            Handle::Member(action, handler) => {
                let me = dashboard_caller(req).map_err(|e| (e, None))?;
                let org: OrgId = call.param("org").map_err(|e| (e, None))?;
                // A non-member learns nothing, not even whether the org exists.
                let Some((org, member)) = membership(svc, &org, &me).await.map_err(|e| (e.into(), None))?
                else {
                    return Err((ApiError::forbidden("not a member of this org"), None));
                };
                if !org.allows(member.role, *action) {
                    return Err((
                        ApiError::forbidden(format!("a {} may not do this here", member.role.as_str())),
                        None,
                    ));
                }
                handler(svc, call.with(Membership { org, member })).await
            }
            Handle::Personal(handler) => {
                let me = dashboard_caller(req).map_err(|e| (e, None))?;
                let id = OrgId::personal(&me);
                // Read, never written here: one not opened yet is shown as it will open
                // (empty), and the routes that write open it once the request is good.
                let (org, member) = membership(svc, &id, &me)
                    .await
                    .map_err(|e| (e.into(), None))?
                    .unwrap_or_else(|| {
                        let member = Member {
                            id: me.clone(),
                            role: agent_credits_domain::Role::Owner,
                            monthly_limit: None,
                            stripe_customer: None,
                        };
                        (Org::personal(&me, chrono::Utc::now()), member)
                    });
                handler(svc, call.with(Membership { org, member })).await
            }
            Handle::Open(handler) => handler(svc, call).await,
        };
        answer.map_err(|e| (e, None))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    struct Svc;
    impl Edge for Svc {}

    fn echo<'a>(_: &'a Svc, call: Call<'a, ()>) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let org: OrgId = call.param("org")?;
            let model: agent_credits_domain::ModelId = call.param("model")?;
            Ok(crate::json_response(
                StatusCode::OK,
                &(org.as_str(), model.as_str()),
            ))
        })
    }

    fn request(method: &str, path: &str) -> Request {
        let mut req = Request::new(Body::Empty);
        *req.method_mut() = method.parse().unwrap();
        *req.uri_mut() = path.parse().unwrap();
        req
    }

    async fn answer(
        router: &Router<Svc>,
        method: &str,
        path: &str,
    ) -> (u16, serde_json::Value, Option<String>) {
        let response = router.handle(&Svc, &request(method, path)).await;
        let allow = response
            .headers()
            .get("allow")
            .map(|a| a.to_str().unwrap().to_owned());
        let body = serde_json::from_slice(response.body().as_ref()).unwrap();
        (response.status().as_u16(), body, allow)
    }

    #[tokio::test]
    async fn paths_match_with_decoded_typed_parameters_and_misses_answer_alike() {
        let router = Router::new(vec![
            Route::stripe(Method::PUT, "/v1/orgs/{org}/rates/{model}", echo),
            Route::stripe(Method::GET, "/v1/orgs/{org}/rates/{model}", echo),
        ])
        .unwrap();
        let (status, body, _) = answer(
            &router,
            "PUT",
            "/v1/orgs/org_1/rates/openrouter%2Fanthropic%2Fclaude",
        )
        .await;
        assert_eq!(
            (status, body),
            (200, serde_json::json!(["org_1", "openrouter/anthropic/claude"]))
        );
        let (status, body, _) = answer(&router, "GET", "/v1/orgs/org%231/rates/m").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_org"))
        );
        let (status, body, _) = answer(&router, "GET", "/v1/orgs/org_1/rates/%FF").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_model"))
        );
        let (status, body, allow) = answer(&router, "DELETE", "/v1/orgs/org_1/rates/m").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (405, Some("method_not_allowed"))
        );
        assert_eq!(allow.as_deref(), Some("PUT, GET"));
        for missing in [
            "/v1/orgs/org_1/rates",
            "/v1/orgs/org_1/rates/m/x",
            "/",
            "/v1//orgs/org_1/rates/m",
        ] {
            let (status, body, _) = answer(&router, "GET", missing).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (404, Some("route_not_found")),
                "{missing}"
            );
        }
    }

    #[test]
    fn a_route_twice_is_refused() {
        let twice = Router::new(vec![
            Route::stripe(Method::GET, "/v1/x/{a}", echo),
            Route::stripe(Method::GET, "/v1/x/{a}", echo),
        ]);
        assert!(twice.is_err());
    }

    #[tokio::test]
    async fn an_iam_route_refuses_before_the_handler_runs() {
        fn never<'a>(_: &'a Svc, _: Call<'a, IamCaller>) -> BoxFuture<'a, Reply> {
            Box::pin(async { Err(ApiError::internal(&"the handler ran")) })
        }
        let router = Router::new(vec![Route::runtime(Method::POST, "/v1/x", never)]).unwrap();
        let (status, body, _) = answer(&router, "POST", "/v1/x").await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")));
    }
}
