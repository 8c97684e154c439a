//! `PUT /v1/rates/{model}` (operators): a model's token prices from a day on; and
//! `PUT /v1/unit-rates/{kind}`: the rate card of the other consumables.

use agent_credits_domain::{Consumable, ModelId, ModelRate, RatePerMillion, UnitPrice, UnitRate};
use agent_credits_http::{ApiError, ErrorCode, Reply, json_response};
use chrono::NaiveDate;
use lambda_http::http::StatusCode;
use serde::Deserialize;

use crate::handler::Usage;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateBody {
    effective_from: Day,
    input: RatePerMillion,
    output: RatePerMillion,
    #[serde(default)]
    cache_read: RatePerMillion,
    #[serde(default)]
    cache_write: RatePerMillion,
}

/// A calendar day written exactly `yyyy-mm-dd` (chrono alone reads `26-01-01` as the
/// year 26).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Day(NaiveDate);

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Day, D::Error> {
        let s = String::deserialize(d)?;
        agent_credits_domain::daily::parse_day(&s)
            .map(Day)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a date written yyyy-mm-dd")))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnitRateBody {
    effective_from: Day,
    unit_price: UnitPrice,
}

/// Rates are never set for a day gone: uses already billed at the old rate stay billed
/// at it, and a retried report of one answers its first price.
fn not_in_the_past(svc: &Usage, from: Day) -> Result<(), ApiError> {
    let today = svc.clock.now().date_naive();
    if from.0 < today {
        return Err(ApiError::bad_request(
            ErrorCode::RateInThePast,
            format!("effective_from must be today ({today}) or later"),
        ));
    }
    Ok(())
}

/// A model's prices from a date on.
pub(crate) async fn put_rate(svc: &Usage, model: ModelId, body: RateBody) -> Reply {
    not_in_the_past(svc, body.effective_from)?;
    let rate = ModelRate {
        model,
        effective_from: body.effective_from.0,
        input: body.input,
        output: body.output,
        cache_read: body.cache_read,
        cache_write: body.cache_write,
    };
    svc.rates.put(&rate).await?;
    Ok(json_response(StatusCode::OK, &rate))
}

/// A consumable's unit price from a date on. A model call has no unit price: its rates
/// are per model.
pub(crate) async fn put_unit_rate(svc: &Usage, kind: Consumable, body: UnitRateBody) -> Reply {
    if kind.is_model_call() {
        return Err(ApiError::bad_request(
            ErrorCode::UnknownKind,
            "model calls are priced per model: PUT /v1/rates/{model}",
        ));
    }
    not_in_the_past(svc, body.effective_from)?;
    let rate = UnitRate {
        kind,
        effective_from: body.effective_from.0,
        unit_price: body.unit_price,
    };
    svc.rates.put_unit(&rate).await?;
    Ok(json_response(StatusCode::OK, &rate))
}
