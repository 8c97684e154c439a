//! Model rates: `RATE#<model>` / `FROM#<yyyy-mm-dd>`, USD per million tokens; the rate
//! card of the other consumables: `UNITRATE#<kind>` / `FROM#<yyyy-mm-dd>`, USD per unit.
//! The rate in force on a day is the one with the latest start on or before it: one
//! Query.

use agent_credits_domain::{Consumable, ModelId, ModelRate, RatePerMillion, StoreError, UnitPrice, UnitRate};
use aws_sdk_dynamodb::Client;
use chrono::NaiveDate;

use crate::attr::{Reader, n_dec, s};
use crate::items::key;
use crate::store::sdk_error;

#[derive(Clone)]
pub struct RateStore {
    client: Client,
    table: std::sync::Arc<str>,
}

fn rate_pk(model: &ModelId) -> String {
    format!("RATE#{model}")
}

fn unit_pk(kind: Consumable) -> String {
    format!("UNITRATE#{kind}")
}

fn from_sk(day: NaiveDate) -> String {
    format!("FROM#{}", day.format("%Y-%m-%d"))
}

impl RateStore {
    pub fn new(client: Client, table: impl Into<std::sync::Arc<str>>) -> RateStore {
        RateStore {
            client,
            table: table.into(),
        }
    }

    /// Adds (or corrects) the rate that takes effect on `rate.effective_from`.
    pub async fn put(&self, rate: &ModelRate) -> Result<(), StoreError> {
        let mut item = Self::dated(rate_pk(&rate.model), rate.effective_from, "rate");
        item.extend([
            ("model".to_owned(), s(rate.model.as_str())),
            ("input".to_owned(), n_dec(rate.input.as_decimal())),
            ("output".to_owned(), n_dec(rate.output.as_decimal())),
            ("cache_read".to_owned(), n_dec(rate.cache_read.as_decimal())),
            ("cache_write".to_owned(), n_dec(rate.cache_write.as_decimal())),
        ]);
        self.put_item(item).await
    }

    async fn put_item(&self, item: crate::attr::Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    fn dated(pk: String, from: NaiveDate, kind: &str) -> crate::attr::Item {
        let mut item = key(pk, from_sk(from));
        item.extend([
            ("type".to_owned(), s(kind)),
            (
                "effective_from".to_owned(),
                s(from.format("%Y-%m-%d").to_string()),
            ),
        ]);
        item
    }

    /// The latest item under `pk` that starts on or before `day`.
    async fn in_force(&self, pk: String, day: NaiveDate) -> Result<Option<crate::attr::Item>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :day")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":first", s("FROM#"))
            .expression_attribute_values(":day", s(from_sk(day)))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.items().first().cloned())
    }

    /// Adds (or corrects) a consumable's unit price from `rate.effective_from` on.
    pub async fn put_unit(&self, rate: &UnitRate) -> Result<(), StoreError> {
        let mut item = Self::dated(unit_pk(rate.kind), rate.effective_from, "unit_rate");
        item.extend([
            ("consumable".to_owned(), s(rate.kind.as_str())),
            ("unit_price".to_owned(), n_dec(rate.unit_price.as_decimal())),
        ]);
        self.put_item(item).await
    }

    /// The unit price of `kind` in force on `day`; `None` when the card has none then.
    pub async fn unit_on(&self, kind: Consumable, day: NaiveDate) -> Result<Option<UnitRate>, StoreError> {
        let Some(item) = self.in_force(unit_pk(kind), day).await? else {
            return Ok(None);
        };
        let r = Reader::new(&item);
        let from = r.s("effective_from")?;
        Ok(Some(UnitRate {
            kind,
            effective_from: NaiveDate::parse_from_str(from, "%Y-%m-%d")
                .map_err(|e| r.corrupt(e.to_string()))?,
            unit_price: UnitPrice::from_decimal(r.decimal("unit_price")?)
                .map_err(|e| r.corrupt(e.to_string()))?,
        }))
    }

    /// The rate of `model` in force on `day`; `None` for a model with no rate then.
    pub async fn on(&self, model: &ModelId, day: NaiveDate) -> Result<Option<ModelRate>, StoreError> {
        let Some(item) = self.in_force(rate_pk(model), day).await? else {
            return Ok(None);
        };
        let r = Reader::new(&item);
        let rate = |name: &str| -> Result<RatePerMillion, StoreError> {
            RatePerMillion::from_decimal(r.decimal(name)?).map_err(|e| r.corrupt(e.to_string()))
        };
        let from = r.s("effective_from")?;
        Ok(Some(ModelRate {
            model: model.clone(),
            effective_from: NaiveDate::parse_from_str(from, "%Y-%m-%d")
                .map_err(|e| r.corrupt(e.to_string()))?,
            input: rate("input")?,
            output: rate("output")?,
            cache_read: rate("cache_read")?,
            cache_write: rate("cache_write")?,
        }))
    }
}
