//! The Stripe API under `/v1`: the calls the functions make, with Stripe's secret-key
//! check, form parameters, Idempotency-Key, `expand[]`, objects and error bodies.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use serde_json::{Value, json};

use crate::billing::{NewDraft, NewInvoiceItem, Proration, SubscriptionUpdate};
use crate::error::ApiError;
use crate::form::{self, Form};
use crate::objects::{
    IntentDetails, Invoice, InvoiceData, LineItem, PaymentMethod, SessionMode, SubscriptionStatus,
};
use crate::store::{NewCustomer, NewIntent, NewSession, Replay, Store};
use crate::webhooks::Origin;
use crate::{Shared, new_id};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/customers", post(create_customer).get(list_customers))
        .route("/v1/customers/{id}", get(retrieve_customer))
        .route(
            "/v1/customers/{id}/payment_methods",
            get(list_customer_payment_methods),
        )
        .route("/v1/payment_methods/{id}", get(retrieve_payment_method))
        .route("/v1/checkout/sessions", post(create_session))
        .route("/v1/checkout/sessions/{id}", get(retrieve_session))
        .route("/v1/payment_intents", post(create_intent).get(list_intents))
        .route("/v1/payment_intents/{id}", get(retrieve_intent))
        .route("/v1/refunds", post(create_refund).get(list_refunds))
        .route("/v1/prices/{id}", get(retrieve_price))
        .route("/v1/subscriptions", get(list_subscriptions))
        .route(
            "/v1/subscriptions/{id}",
            get(retrieve_subscription).post(update_subscription),
        )
        .route("/v1/invoices", post(create_invoice).get(list_invoices))
        .route("/v1/invoices/{id}", get(retrieve_invoice))
        .route("/v1/invoices/{id}/finalize", post(finalize_invoice))
        .route("/v1/invoices/{id}/pay", post(pay_invoice))
        .route("/v1/invoiceitems", post(create_invoice_item))
        .route("/v1/invoice_payments", get(list_invoice_payments))
        .route("/v1/billing_portal/sessions", post(create_portal_session))
        .route_layer(middleware::from_fn(require_secret_key))
}

/// Only test-mode secret keys: the simulator must never look like it accepts a live key.
async fn require_secret_key(request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match given.and_then(secret_key) {
        Some(key) if key.len() > "sk_test_".len() && key.starts_with("sk_test_") => next.run(request).await,
        Some(key) => {
            ApiError::unauthorized(format!("Invalid API Key provided: {}", redact(&key))).into_response()
        }
        None => ApiError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, \
             using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
                .to_string(),
        )
        .into_response(),
    }
}

/// The key from `Bearer <key>` (async-stripe) or Basic auth with the key as user name
/// (`curl -u sk_test_...:`, as in Stripe's documentation).
fn secret_key(authorization: &str) -> Option<String> {
    if let Some(key) = authorization.strip_prefix("Bearer ") {
        return Some(key.to_string());
    }
    let decoded = BASE64_STANDARD
        .decode(authorization.strip_prefix("Basic ")?)
        .ok()?;
    let user = String::from_utf8(decoded).ok()?;
    Some(user.split(':').next().unwrap_or_default().to_string())
}

fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 12))
}

struct Answer {
    status: u16,
    body: Value,
    /// The first request's id when this answer is a replay.
    original_request: Option<String>,
}

impl Answer {
    fn of(result: Result<Value, ApiError>) -> Self {
        match result {
            Ok(body) => Answer {
                status: 200,
                body,
                original_request: None,
            },
            Err(error) => Answer {
                status: error.status,
                body: error.body(),
                original_request: None,
            },
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body)).into_response();
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert("request-id", value);
        }
        if let Some(original) = self.original_request.and_then(|o| HeaderValue::from_str(&o).ok()) {
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            headers.insert("original-request", original);
        }
        response
    }
}

/// Runs a POST under the store's lock, honouring Idempotency-Key as Stripe does: the same key
/// and parameters answer the stored status and body; other parameters are an
/// idempotency_error. Like Stripe, only requests that got past validation are stored
/// (successes and card errors), so a corrected retry with the same key can still run.
fn mutate<F>(sim: &Shared, headers: &HeaderMap, path: &str, body: &[u8], handler: F) -> Response
where
    F: FnOnce(&mut Store, &Form<'_>, &Origin) -> Result<Value, ApiError>,
{
    let request_id = new_id("req_", 14);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let tree = match form::decode(body) {
        Ok(tree) => tree,
        Err(error) => return Answer::of(Err(error)).into_response(&request_id),
    };
    let mut fingerprint = form::fingerprint(body);
    fingerprint.push((String::new(), path.to_string()));
    let mut store = sim.lock();
    if let Some(key) = &key
        && let Some(replay) = store.idempotency.get(key)
    {
        let answer = if replay.fingerprint == fingerprint {
            Answer {
                status: replay.status,
                body: replay.body.clone(),
                original_request: Some(replay.request_id.clone()),
            }
        } else {
            Answer::of(Err(ApiError::idempotency(format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. \
                 Try using a key other than '{key}' if you meant to execute a different request."
            ))))
        };
        return answer.into_response(&request_id);
    }
    let origin = Origin {
        request_id: Some(request_id.clone()),
        idempotency_key: key.clone(),
    };
    let form = Form::root(&tree);
    let result = handler(&mut store, &form, &origin).and_then(|object| expand(&store, object, &form));
    let answer = Answer::of(result);
    if let Some(key) = key
        && (answer.status == 200 || answer.status == 402)
    {
        let replay = Replay {
            fingerprint,
            status: answer.status,
            body: answer.body.clone(),
            request_id: request_id.clone(),
        };
        store.idempotency.insert(key, replay);
    }
    answer.into_response(&request_id)
}

fn read<F>(sim: &Shared, query: Option<String>, handler: F) -> Response
where
    F: FnOnce(&Store, &Form<'_>) -> Result<Value, ApiError>,
{
    let request_id = new_id("req_", 14);
    let result = form::decode(query.unwrap_or_default().as_bytes()).and_then(|tree| {
        let form = Form::root(&tree);
        let store = sim.lock();
        handler(&store, &form).and_then(|object| expand(&store, object, &form))
    });
    Answer::of(result).into_response(&request_id)
}

/// `expand[]=latest_charge`, `expand[]=payment_intent.payment_method`: ids replaced by the
/// objects, where the simulator keeps them.
fn expand(store: &Store, mut object: Value, form: &Form<'_>) -> Result<Value, ApiError> {
    for path in form.strings("expand")? {
        expand_path(store, &mut object, &path, &path)?;
    }
    Ok(object)
}

fn expand_path(store: &Store, object: &mut Value, path: &str, full: &str) -> Result<(), ApiError> {
    let cannot = || ApiError::invalid("expand", format!("This property cannot be expanded ({full})."));
    let (field, rest) = path.split_once('.').map_or((path, None), |(f, r)| (f, Some(r)));
    let slot = object.get_mut(field).ok_or_else(cannot)?;
    if let Some(id) = slot.as_str() {
        *slot = store.render(id).ok_or_else(cannot)?;
    }
    match (rest, &slot) {
        (_, Value::Null) | (None, _) => Ok(()),
        (Some(rest), Value::Object(_)) => expand_path(store, slot, rest, full),
        (Some(_), _) => Err(cannot()),
    }
}

fn list(data: Vec<Value>, has_more: bool, url: &str) -> Value {
    json!({"object": "list", "data": data, "has_more": has_more, "url": url})
}

fn limit(form: &Form<'_>) -> Result<usize, ApiError> {
    match form.int("limit")? {
        None => Ok(10),
        Some(n @ 1..=100) => Ok(n.unsigned_abs() as usize),
        Some(_) => Err(ApiError::invalid("limit", "Limit must be between 1 and 100.")),
    }
}

/// The page after `starting_after` (Stripe's cursor: the last id of the page before), at
/// most `limit` long, and whether more follow.
fn page<'a, T>(
    sorted: &'a [T],
    id: impl Fn(&T) -> &str,
    after: Option<&str>,
    limit: usize,
) -> (Vec<&'a T>, bool) {
    let from = match after {
        Some(after) => sorted
            .iter()
            .position(|item| id(item) == after)
            .map_or(sorted.len(), |p| p + 1),
        None => 0,
    };
    let rest = &sorted[from..];
    (rest.iter().take(limit).collect(), rest.len() > limit)
}

fn text(form: &Form<'_>, key: &str) -> Result<Option<String>, ApiError> {
    Ok(form.text(key)?.map(str::to_string))
}

fn one_of(form: &Form<'_>, key: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    match form.text(key)? {
        Some(value) if !allowed.contains(&value) => Err(ApiError::invalid(
            &form.param(key),
            format!(
                "Invalid {}: must be one of {}",
                form.param(key),
                allowed.join(", ")
            ),
        )),
        value => Ok(value.map(str::to_string)),
    }
}

/// A PaymentIntent's own parameters, or a session's `payment_intent_data`.
fn intent_details(form: &Form<'_>) -> Result<IntentDetails, ApiError> {
    Ok(IntentDetails {
        metadata: form.metadata("metadata")?,
        description: text(form, "description")?,
        setup_future_usage: one_of(form, "setup_future_usage", &["on_session", "off_session"])?,
        receipt_email: text(form, "receipt_email")?,
    })
}

fn currency(form: &Form<'_>, key: &str) -> Result<Option<String>, ApiError> {
    match form.text(key)? {
        Some(c) if c.len() == 3 && c.chars().all(|ch| ch.is_ascii_alphabetic()) => {
            Ok(Some(c.to_ascii_lowercase()))
        }
        Some(c) => Err(ApiError::invalid(
            &form.param(key),
            format!("Invalid currency: {c}"),
        )),
        None => Ok(None),
    }
}

async fn create_customer(State(sim): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    mutate(&sim, &headers, "/v1/customers", &body, |store, form, _| {
        let new = NewCustomer {
            email: text(form, "email")?,
            name: text(form, "name")?,
            description: text(form, "description")?,
            phone: text(form, "phone")?,
            metadata: form.metadata("metadata")?,
        };
        Ok(store.create_customer(new).to_json())
    })
}

async fn list_customers(State(sim): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    read(&sim, query, |store, form| {
        let email = form.text("email")?;
        let limit = limit(form)?;
        let mut customers: Vec<_> = store
            .customers
            .values()
            .filter(|c| email.is_none() || c.email.as_deref() == email)
            .collect();
        customers.sort_by_key(|c| std::cmp::Reverse(c.seq));
        let has_more = customers.len() > limit;
        Ok(list(
            customers.iter().take(limit).map(|c| c.to_json()).collect(),
            has_more,
            "/v1/customers",
        ))
    })
}

async fn retrieve_customer(
    State(sim): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    read(&sim, query, |store, _| Ok(store.customer(&id, None)?.to_json()))
}

async fn list_customer_payment_methods(
    State(sim): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    read(&sim, query, |store, form| {
        store.customer(&id, None)?;
        let kind = form.text("type")?;
        let limit = limit(form)?;
        let mut methods: Vec<&PaymentMethod> = store
            .payment_methods
            .values()
            .filter(|pm| pm.customer.as_deref() == Some(id.as_str()) && kind.is_none_or(|k| k == pm.kind()))
            .collect();
        methods.sort_by_key(|pm| std::cmp::Reverse(pm.seq));
        let has_more = methods.len() > limit;
        let url = format!("/v1/customers/{id}/payment_methods");
        Ok(list(
            methods.iter().take(limit).map(|pm| pm.to_json()).collect(),
            has_more,
            &url,
        ))
    })
}

async fn retrieve_payment_method(
    State(sim): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    read(&sim, query, |store, _| Ok(store.payment_method(&id)?.to_json()))
}

async fn create_session(State(sim): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    mutate(
        &sim,
        &headers,
        "/v1/checkout/sessions",
        &body,
        |store, form, _| {
            let mode = match form.required_text("mode")? {
                "payment" => SessionMode::Payment,
                "subscription" => SessionMode::Subscription,
                _ => {
                    return Err(ApiError::invalid(
                        "mode",
                        "The Stripe simulator serves mode=payment and mode=subscription only.",
                    ));
                }
            };
            check_mode_params(form, mode)?;
            let items = form.items("line_items")?;
            if items.is_empty() {
                return Err(ApiError::missing("line_items"));
            }
            if mode == SessionMode::Subscription && items.len() > 1 {
                return Err(ApiError::invalid(
                    "line_items",
                    "The Stripe simulator's subscriptions have one item: send line_items[0] only.",
                ));
            }
            let mut session_currency = currency(form, "currency")?;
            let mut line_items = Vec::new();
            for item in &items {
                if let Some(line) = priced_item(store, item, mode, &mut session_currency)? {
                    line_items.push(line);
                    continue;
                }
                if mode == SessionMode::Subscription {
                    return Err(ApiError::missing(&item.param("price")));
                }
                if !item.has("price_data") {
                    return Err(ApiError::missing(&item.param("price_data")));
                }
                let price_data = item.child("price_data");
                let item_currency = currency(&price_data, "currency")?
                    .ok_or_else(|| ApiError::missing(&price_data.param("currency")))?;
                if session_currency.as_ref().is_some_and(|c| *c != item_currency) {
                    return Err(ApiError::invalid(
                        &price_data.param("currency"),
                        "Line items must all be in the session's currency.",
                    ));
                }
                session_currency = Some(item_currency);
                let unit_amount = price_data.required_int("unit_amount")?;
                if unit_amount < 0 {
                    return Err(ApiError::invalid(
                        &price_data.param("unit_amount"),
                        "Amount must be positive.",
                    ));
                }
                let name = match (
                    price_data.child("product_data").text("name")?,
                    price_data.text("product")?,
                ) {
                    (Some(name), _) | (None, Some(name)) => name.to_string(),
                    (None, None) => {
                        return Err(ApiError::missing(&price_data.child("product_data").param("name")));
                    }
                };
                let quantity = item.required_int("quantity")?;
                if quantity < 1 {
                    return Err(ApiError::invalid(
                        &item.param("quantity"),
                        "Quantity must be at least 1.",
                    ));
                }
                line_items.push(LineItem {
                    name,
                    unit_amount,
                    quantity,
                    price: None,
                });
            }
            let customer = text(form, "customer")?;
            let customer_email = text(form, "customer_email")?;
            if customer.is_some() && customer_email.is_some() {
                return Err(ApiError::invalid(
                    "customer_email",
                    "You may only specify one of these parameters: customer, customer_email.",
                ));
            }
            let mut payment_method_types = form.strings("payment_method_types")?;
            if payment_method_types.is_empty() {
                payment_method_types.push("card".to_string());
            }
            let creation = form.child("invoice_creation");
            let invoice_creation = match creation.bool("enabled")? {
                Some(true) => {
                    let data = creation.child("invoice_data");
                    Some(InvoiceData {
                        description: text(&data, "description")?,
                        metadata: data.metadata("metadata")?,
                    })
                }
                Some(false) => None,
                None if form.has("invoice_creation") => {
                    return Err(ApiError::missing("invoice_creation[enabled]"));
                }
                None => None,
            };
            let new = NewSession {
                mode,
                customer,
                customer_email,
                customer_creation: one_of(form, "customer_creation", &["always", "if_required"])?,
                client_reference_id: text(form, "client_reference_id")?,
                success_url: text(form, "success_url")?,
                cancel_url: text(form, "cancel_url")?,
                currency: session_currency.unwrap_or_else(|| "usd".to_string()),
                line_items,
                metadata: form.metadata("metadata")?,
                payment_method_types,
                intent_data: intent_details(&form.child("payment_intent_data"))?,
                subscription_metadata: form.child("subscription_data").metadata("metadata")?,
                invoice_creation,
                expires_at: form.int("expires_at")?,
            };
            Ok(store.create_session(new)?.to_json())
        },
    )
}

/// Parameters that belong to one mode only, refused in the other as Stripe refuses them.
fn check_mode_params(form: &Form<'_>, mode: SessionMode) -> Result<(), ApiError> {
    let (wrong, only) = match mode {
        SessionMode::Payment => (["subscription_data"].as_slice(), "subscription"),
        SessionMode::Subscription => (["payment_intent_data", "invoice_creation"].as_slice(), "payment"),
    };
    match wrong.iter().find(|param| form.has(param)) {
        Some(param) => Err(ApiError::invalid(
            param,
            format!("You can only pass `{param}` in `{only}` mode."),
        )),
        None => Ok(()),
    }
}

/// A line item naming a price (`line_items[i][price]`): a one-time price in payment mode, a
/// recurring one (quantity 1) in subscription mode. `None` when the item names no price.
fn priced_item(
    store: &Store,
    item: &Form<'_>,
    mode: SessionMode,
    session_currency: &mut Option<String>,
) -> Result<Option<LineItem>, ApiError> {
    let Some(price_id) = item.text("price")? else {
        return Ok(None);
    };
    let param = item.param("price");
    let price = store.price(price_id, Some(&param))?;
    match (mode, price.interval) {
        (SessionMode::Payment, Some(_)) => {
            return Err(ApiError::invalid(
                &param,
                "The price specified is set to `type=recurring` but this field only accepts prices with `type=one_time` in `payment` mode.",
            ));
        }
        (SessionMode::Subscription, None) => {
            return Err(ApiError::invalid(
                &param,
                "The price specified is set to `type=one_time`: `subscription` mode needs a recurring price.",
            ));
        }
        _ => {}
    }
    if session_currency.as_ref().is_some_and(|c| *c != price.currency) {
        return Err(ApiError::invalid(
            &param,
            "Line items must all be in the session's currency.",
        ));
    }
    *session_currency = Some(price.currency.clone());
    let quantity = item.required_int("quantity")?;
    if quantity < 1 || (mode == SessionMode::Subscription && quantity != 1) {
        return Err(ApiError::invalid(
            &item.param("quantity"),
            match mode {
                SessionMode::Payment => "Quantity must be at least 1.",
                SessionMode::Subscription => "The Stripe simulator's subscription items have quantity 1.",
            },
        ));
    }
    Ok(Some(LineItem {
        name: price.label().to_owned(),
        unit_amount: price.unit_amount,
        quantity,
        price: Some(price.id.clone()),
    }))
}

async fn retrieve_session(
    State(sim): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    read(&sim, query, |store, _| Ok(store.session(&id)?.to_json()))
}

async fn create_intent(State(sim): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    mutate(
        &sim,
        &headers,
        "/v1/payment_intents",
        &body,
        |store, form, origin| {
            if let Some(method) = form.text("capture_method")?
                && method != "automatic"
                && method != "automatic_async"
            {
                return Err(ApiError::invalid(
                    "capture_method",
                    "The Stripe simulator captures automatically only.",
                ));
            }
            let off_session = match form.text("off_session")? {
                None | Some("false") => false,
                Some("true" | "one_off" | "recurring") => true,
                Some(other) => {
                    return Err(ApiError::invalid(
                        "off_session",
                        format!("Invalid off_session: {other}"),
                    ));
                }
            };
            let new = NewIntent {
                amount: form.required_int("amount")?,
                currency: currency(form, "currency")?.ok_or_else(|| ApiError::missing("currency"))?,
                customer: text(form, "customer")?,
                payment_method: text(form, "payment_method")?,
                payment_method_types: form.strings("payment_method_types")?,
                confirm: form.bool("confirm")?.unwrap_or(false),
                off_session,
                details: intent_details(form)?,
            };
            let id = store.create_intent(new, origin)?;
            Ok(store.intent(&id)?.to_json())
        },
    )
}

async fn retrieve_intent(
    State(sim): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    read(&sim, query, |store, _| Ok(store.intent(&id)?.to_json()))
}

async fn retrieve_invoice(
    State(sim): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    read(&sim, query, |store, _| {
        Ok(store.invoice_json(store.invoice(&id, None)?))
    })
}

/// `GET /v1/invoice_payments?invoice=in_...` or
/// `?payment[type]=payment_intent&payment[payment_intent]=pi_...`: which invoices a
/// payment paid (Stripe's only link from a PaymentIntent to its invoice since 2025-03-31).
async fn list_invoice_payments(State(sim): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    read(&sim, query, |store, form| {
        let limit = limit(form)?;
        let invoice = form.text("invoice")?;
        let payment = form.child("payment");
        let kind = payment.text("type")?;
        let intent = payment.text("payment_intent")?;
        if intent.is_some() && kind != Some("payment_intent") {
            return Err(ApiError::invalid(
                "payment[type]",
                "Filtering by payment[payment_intent] requires payment[type]=payment_intent.",
            ));
        }
        let found: Vec<Value> = store
            .invoice_payments
            .iter()
            .rev()
            .filter(|p| invoice.is_none_or(|i| p["invoice"] == i))
            .filter(|p| intent.is_none_or(|pi| p["payment"]["payment_intent"] == pi))
            .cloned()
            .collect();
        let has_more = found.len() > limit;
        Ok(list(
            found.into_iter().take(limit).collect(),
            has_more,
            "/v1/invoice_payments",
        ))
    })
}

/// `GET /v1/payment_intents?customer=cus_...&created[gte]=...&starting_after=pi_...`:
/// newest first, as Stripe lists them (by `created`, then id), a page at a time.
async fn list_intents(State(sim): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    read(&sim, query, |store, form| {
        let limit = limit(form)?;
        let customer = form.text("customer")?;
        let since = form.child("created").int("gte")?;
        let after = form.text("starting_after")?;
        let mut intents: Vec<_> = store
            .intents
            .values()
            .filter(|i| customer.is_none() || i.customer.as_deref() == customer)
            .filter(|i| since.is_none_or(|s| i.created >= s))
            .collect();
        intents.sort_by_key(|i| std::cmp::Reverse((i.created, i.id.clone())));
        // The page after `starting_after` (Stripe's cursor: the last id of the page before).
        let from = match after {
            Some(id) => intents
                .iter()
                .position(|i| i.id == id)
                .map_or(intents.len(), |p| p + 1),
            None => 0,
        };
        let rest = &intents[from..];
        Ok(list(
            rest.iter().take(limit).map(|i| i.to_json()).collect(),
            rest.len() > limit,
            "/v1/payment_intents",
        ))
    })
}

/// `GET /v1/refunds?charge=ch_...`: a charge's refunds, newest first (Stripe's charge
/// objects no longer carry them unless expanded).
async fn list_refunds(State(sim): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    read(&sim, query, |store, form| {
        let limit = limit(form)?;
        let charge_id = form.text("charge")?;
        let mut refunds: Vec<Value> = vec![];
        for charge in store.charges.values() {
            if charge_id.is_some_and(|id| id != charge.id) {
                continue;
            }
            refunds.extend(charge.refunds.iter().map(|r| charge.refund_json(r)));
        }
        refunds
            .sort_by_key(|r| std::cmp::Reverse((r["created"].as_i64(), r["id"].as_str().map(str::to_owned))));
        let has_more = refunds.len() > limit;
        refunds.truncate(limit);
        Ok(list(refunds, has_more, "/v1/refunds"))
    })
}

async fn create_refund(State(sim): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    mutate(&sim, &headers, "/v1/refunds", &body, |store, form, origin| {
        store.refund(
            form.text("charge")?,
            form.text("payment_intent")?,
            form.int("amount")?,
            one_of(
                form,
                "reason",
                &["duplicate", "fraudulent", "requested_by_customer"],
            )?,
            form.metadata("metadata")?,
            origin,
        )
    })
}

async fn retrieve_price(
    State(sim): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    read(&sim, query, |store, _| Ok(store.price(&id, None)?.to_json()))
}

async fn retrieve_subscription(
    State(sim): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    read(&sim, query, |store, _| {
        Ok(store.subscription_json(store.subscription(&id)?))
    })
}

/// `GET /v1/subscriptions?customer=cus_...&status=...`: newest first; without `status`,
/// every subscription that is not canceled (as Stripe lists them).
async fn list_subscriptions(State(sim): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    read(&sim, query, |store, form| {
        let limit = limit(form)?;
        let customer = form.text("customer")?;
        let status = one_of(
            form,
            "status",
            &[
                "active",
                "all",
                "canceled",
                "ended",
                "incomplete",
                "incomplete_expired",
                "past_due",
                "paused",
                "trialing",
                "unpaid",
            ],
        )?;
        let wanted = |s: SubscriptionStatus| match status.as_deref() {
            None => s != SubscriptionStatus::Canceled,
            Some("all") => true,
            Some("ended") => s == SubscriptionStatus::Canceled,
            Some(status) => s.as_str() == status,
        };
        let mut found: Vec<_> = store
            .subscriptions
            .values()
            .filter(|s| customer.is_none_or(|c| s.customer == c) && wanted(s.status))
            .collect();
        found.sort_by_key(|s| std::cmp::Reverse((s.created, s.seq)));
        let (data, has_more) = page(&found, |s| &s.id, form.text("starting_after")?, limit);
        Ok(list(
            data.iter().map(|s| store.subscription_json(s)).collect(),
            has_more,
            "/v1/subscriptions",
        ))
    })
}

/// `POST /v1/subscriptions/{id}`: `items[0][id]` with `items[0][price]` and
/// `proration_behavior`, `cancel_at_period_end`, `metadata`.
async fn update_subscription(
    State(sim): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1/subscriptions/{id}");
    mutate(&sim, &headers, &path, &body, |store, form, origin| {
        let items = form.items("items")?;
        if items.len() > 1 {
            return Err(ApiError::invalid(
                "items",
                "The Stripe simulator's subscriptions have one item: send items[0] only.",
            ));
        }
        let item = match items.first() {
            None => None,
            Some(item) => {
                if let Some(quantity) = item.int("quantity")?
                    && quantity != 1
                {
                    return Err(ApiError::invalid(
                        &item.param("quantity"),
                        "The Stripe simulator's subscription items have quantity 1.",
                    ));
                }
                match (item.text("id")?, item.text("price")?) {
                    (Some(item_id), Some(price)) => Some((item_id.to_owned(), price.to_owned())),
                    (None, Some(_)) => return Err(ApiError::missing(&item.param("id"))),
                    (_, None) => None,
                }
            }
        };
        let proration = match one_of(
            form,
            "proration_behavior",
            &["always_invoice", "create_prorations", "none"],
        )?
        .as_deref()
        {
            Some("always_invoice") => Proration::AlwaysInvoice,
            Some("none") => Proration::None,
            _ => Proration::CreateProrations,
        };
        let update = SubscriptionUpdate {
            item,
            proration,
            cancel_at_period_end: form.bool("cancel_at_period_end")?,
            metadata: form.metadata_update("metadata")?,
        };
        store.update_subscription(&id, update, origin)
    })
}

/// `POST /v1/invoices`: a draft, to which `POST /v1/invoiceitems` adds lines.
async fn create_invoice(State(sim): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    mutate(&sim, &headers, "/v1/invoices", &body, |store, form, _| {
        let collection_method = one_of(
            form,
            "collection_method",
            &["charge_automatically", "send_invoice"],
        )?
        .unwrap_or_else(|| "charge_automatically".to_owned());
        let due_date = match (form.int("due_date")?, form.int("days_until_due")?) {
            (Some(date), _) => Some(date),
            (None, Some(days)) => Some(crate::now() + days * 86_400),
            (None, None) => None,
        };
        if collection_method == "send_invoice" && due_date.is_none() {
            return Err(ApiError::invalid(
                "days_until_due",
                "Invoices with `collection_method=send_invoice` need `days_until_due` or `due_date`.",
            ));
        }
        let new = NewDraft {
            customer: form.required_text("customer")?.to_owned(),
            currency: currency(form, "currency")?.unwrap_or_else(|| "usd".to_owned()),
            auto_advance: form.bool("auto_advance")?.unwrap_or(false),
            collection_method,
            due_date,
            description: text(form, "description")?,
            metadata: form.metadata("metadata")?,
            include_pending: one_of(form, "pending_invoice_items_behavior", &["exclude", "include"])?
                .as_deref()
                == Some("include"),
        };
        store.create_invoice(new)
    })
}

/// `GET /v1/invoices?customer=&subscription=&status=&limit=&starting_after=`: newest first.
async fn list_invoices(State(sim): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    read(&sim, query, |store, form| {
        let limit = limit(form)?;
        let customer = form.text("customer")?;
        let subscription = form.text("subscription")?;
        let status = one_of(
            form,
            "status",
            &["draft", "open", "paid", "uncollectible", "void"],
        )?;
        let mut found: Vec<&Invoice> = store
            .invoices
            .values()
            .filter(|i| customer.is_none_or(|c| i.customer == c))
            .filter(|i| subscription.is_none_or(|s| i.subscription_id() == Some(s)))
            .filter(|i| status.as_deref().is_none_or(|s| i.status.as_str() == s))
            .collect();
        found.sort_by_key(|i| std::cmp::Reverse((i.created, i.seq)));
        let (data, has_more) = page(&found, |i| &i.id, form.text("starting_after")?, limit);
        Ok(list(
            data.iter().map(|i| store.invoice_json(i)).collect(),
            has_more,
            "/v1/invoices",
        ))
    })
}

async fn finalize_invoice(
    State(sim): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1/invoices/{id}/finalize");
    mutate(&sim, &headers, &path, &body, |store, form, origin| {
        form.bool("auto_advance")?;
        store.finalize_invoice(&id, origin)
    })
}

/// `POST /v1/invoices/{id}/pay`: `paid_out_of_band=true` records a payment made elsewhere;
/// otherwise the customer's card (or `payment_method`) is charged.
async fn pay_invoice(
    State(sim): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1/invoices/{id}/pay");
    mutate(&sim, &headers, &path, &body, |store, form, origin| {
        let out_of_band = form.bool("paid_out_of_band")?.unwrap_or(false);
        let payment_method = form.text("payment_method")?;
        store.pay_invoice_now(&id, out_of_band, payment_method, origin)
    })
}

async fn create_invoice_item(State(sim): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    mutate(&sim, &headers, "/v1/invoiceitems", &body, |store, form, _| {
        let new = NewInvoiceItem {
            customer: form.required_text("customer")?.to_owned(),
            invoice: text(form, "invoice")?,
            amount: form.required_int("amount")?,
            currency: currency(form, "currency")?,
            description: text(form, "description")?,
            metadata: form.metadata("metadata")?,
        };
        store.create_invoice_item(new)
    })
}

async fn create_portal_session(State(sim): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    mutate(
        &sim,
        &headers,
        "/v1/billing_portal/sessions",
        &body,
        |store, form, _| {
            let customer = form.required_text("customer")?;
            store.create_portal_session(customer, text(form, "return_url")?)
        },
    )
}
