//! The pages Stripe hosts for people: an invoice's page (`hosted_invoice_url`) and its
//! PDF (`invoice_pdf`, here a small text stand-in a browser shows), and the billing
//! portal a portal session's `url` opens.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::Shared;
use crate::control::escape;
use crate::objects::{Instrument, Invoice, InvoiceStatus};
use crate::store::{Store, cents};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/invoices/{id}", get(invoice_page))
        .route("/invoices/{id}/pdf", get(invoice_pdf))
        .route("/portal/{id}", get(portal_page))
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Html(escape(what))).into_response()
}

/// A finalized invoice (drafts have no hosted page, as in Stripe).
fn hosted<'a>(store: &'a Store, id: &str) -> Option<&'a Invoice> {
    store
        .invoices
        .get(id)
        .filter(|invoice| invoice.status != InvoiceStatus::Draft)
}

fn date(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0)
        .map_or_else(|| timestamp.to_string(), |t| t.format("%Y-%m-%d").to_string())
}

/// `$-12.34` for credits too.
fn money(amount: i64, currency: &str) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    format!("{sign}{} {}", cents(amount.abs()), currency.to_uppercase())
}

fn number(invoice: &Invoice) -> &str {
    invoice.number.as_deref().unwrap_or(&invoice.id)
}

async fn invoice_page(State(sim): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let store = sim.lock();
    let Some(invoice) = hosted(&store, &id) else {
        return not_found("No such invoice");
    };
    let email = store
        .customers
        .get(&invoice.customer)
        .and_then(|c| c.email.clone())
        .unwrap_or_default();
    let lines: String = invoice
        .lines
        .iter()
        .map(|line| {
            format!(
                "<tr><td>{}</td><td>{} – {}</td><td>{}</td></tr>",
                escape(&line.description),
                date(line.period_start),
                date(line.period_end),
                money(line.amount, &invoice.currency)
            )
        })
        .collect();
    let description = invoice
        .description
        .as_ref()
        .map(|d| format!("<p>{}</p>", escape(d)))
        .unwrap_or_default();
    let pdf = invoice
        .invoice_pdf
        .as_ref()
        .map(|url| format!(r#"<p><a href="{}">Download PDF</a></p>"#, escape(url)))
        .unwrap_or_default();
    let page = format!(
        r#"<!doctype html><meta charset="utf-8"><title>Invoice {number}</title>
<h1>Invoice {number}</h1><p>Status: <strong>{status}</strong></p><p>Billed to {email}, {created}</p>{description}
<table><tr><th>Description</th><th>Period</th><th>Amount</th></tr>{lines}</table>
<p>Total: {total}</p><p>Amount paid: {paid}</p><p>Amount remaining: {remaining}</p>{pdf}"#,
        number = escape(number(invoice)),
        status = invoice.status.as_str(),
        email = escape(&email),
        created = date(invoice.created),
        total = money(invoice.total(), &invoice.currency),
        paid = money(invoice.amount_paid, &invoice.currency),
        remaining = money(invoice.amount_remaining(), &invoice.currency),
    );
    Html(page).into_response()
}

/// A few lines of text standing in for the PDF, so a browser opens it in place.
async fn invoice_pdf(State(sim): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let store = sim.lock();
    let Some(invoice) = hosted(&store, &id) else {
        return not_found("No such invoice");
    };
    let mut text = format!(
        "Invoice {} (Stripe simulator: a stand-in for the PDF)\nStatus: {}\nDate: {}\n",
        number(invoice),
        invoice.status.as_str(),
        date(invoice.created)
    );
    for line in &invoice.lines {
        text.push_str(&format!(
            "{}: {}\n",
            line.description,
            money(line.amount, &invoice.currency)
        ));
    }
    text.push_str(&format!("Total: {}\n", money(invoice.total(), &invoice.currency)));
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

async fn portal_page(State(sim): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let store = sim.lock();
    let Some(session) = store.portal_sessions.get(&id) else {
        return not_found("No such billing portal session");
    };
    let customer = &session.customer;
    let mut methods: Vec<_> = store
        .payment_methods
        .values()
        .filter(|pm| pm.customer.as_deref() == Some(customer.as_str()))
        .collect();
    methods.sort_by_key(|pm| std::cmp::Reverse(pm.seq));
    let methods: String = methods
        .iter()
        .map(|pm| match pm.instrument {
            Instrument::Card(card) => {
                format!("<li>{} •••• {} (expires 12/2034)</li>", card.brand, card.last4)
            }
            Instrument::UsBankAccount => "<li>US bank account •••• 6789</li>".to_owned(),
        })
        .collect();
    let mut subscriptions: Vec<_> = store
        .subscriptions
        .values()
        .filter(|s| s.customer == *customer)
        .collect();
    subscriptions.sort_by_key(|s| std::cmp::Reverse(s.seq));
    let subscriptions: String = subscriptions
        .iter()
        .map(|s| {
            let plan = store
                .prices
                .get(&s.price)
                .map_or_else(|| s.price.clone(), |p| p.label().to_owned());
            let next = if s.cancel_at_period_end {
                format!("cancels on {}", date(s.current_period_end))
            } else {
                format!("renews on {}", date(s.current_period_end))
            };
            format!("<li>{} — {} ({next})</li>", escape(&plan), s.status.as_str())
        })
        .collect();
    let mut invoices: Vec<&Invoice> = store
        .invoices
        .values()
        .filter(|i| i.customer == *customer && i.status != InvoiceStatus::Draft)
        .collect();
    invoices.sort_by_key(|i| std::cmp::Reverse(i.seq));
    let invoices: String = invoices
        .iter()
        .map(|i| {
            let link = i.hosted_invoice_url.as_deref().unwrap_or("#");
            format!(
                r#"<li><a href="{}">{}</a> {} {} {}</li>"#,
                escape(link),
                escape(number(i)),
                date(i.created),
                money(i.total(), &i.currency),
                i.status.as_str()
            )
        })
        .collect();
    let back = session
        .return_url
        .as_ref()
        .map(|url| format!(r#"<p><a href="{}">Return</a></p>"#, escape(url)))
        .unwrap_or_default();
    let none = "<li>None</li>";
    let or_none = |items: String| if items.is_empty() { none.to_owned() } else { items };
    let page = format!(
        r#"<!doctype html><meta charset="utf-8"><title>Billing portal</title>
<h1>Billing portal</h1><p>Customer <code>{}</code></p>
<h2>Payment methods</h2><ul>{}</ul>
<h2>Subscriptions</h2><ul>{}</ul>
<h2>Invoices</h2><ul>{}</ul>{back}"#,
        escape(customer),
        or_none(methods),
        or_none(subscriptions),
        or_none(invoices),
    );
    Html(page).into_response()
}
