//! `PUT /v1/rates/{model}` (operators): a model's token prices from a day on.

use agent_credits_domain::{ModelId, ModelRate, RatePerMillion};
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

/// A model's prices from a date on. Never for a day gone: calls already billed at the
/// old rate stay billed at it, and a retried report of one answers its first price.
pub(crate) async fn put_rate(svc: &Usage, model: ModelId, body: RateBody) -> Reply {
    let today = svc.clock.now().date_naive();
    if body.effective_from.0 < today {
        return Err(ApiError::bad_request(
            ErrorCode::RateInThePast,
            format!("effective_from must be today ({today}) or later"),
        ));
    }
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
