//! Builds update expressions whose arithmetic the database checks: a field that goes down
//! is written `x = x - :x` under `x >= :x`, so no write can take it below zero whatever
//! the caller computed.

use std::collections::HashMap;

use agent_credits_domain::SignedUsd;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::attr::{n_dec, n_usd};

#[derive(Default)]
pub(crate) struct UpdateExpr {
    sets: Vec<String>,
    adds: Vec<String>,
    removes: Vec<String>,
    pub(crate) conditions: Vec<String>,
    pub(crate) names: HashMap<String, String>,
    pub(crate) values: HashMap<String, AttributeValue>,
}

impl UpdateExpr {
    fn name(&mut self, field: &str) -> String {
        let name = format!("#{field}");
        self.names.insert(name.clone(), field.to_owned());
        name
    }

    pub(crate) fn delta(&mut self, field: &str, d: SignedUsd) {
        if d.is_zero() {
            return;
        }
        let (name, value) = (self.name(field), format!(":{field}"));
        if d.is_negative() {
            self.sets.push(format!("{name} = {name} - {value}"));
            self.conditions.push(format!("{name} >= {value}"));
        } else {
            self.sets
                .push(format!("{name} = if_not_exists({name}, :zero) + {value}"));
            self.values
                .insert(":zero".to_owned(), n_dec(rust_decimal::Decimal::ZERO));
        }
        self.values.insert(value, n_usd(d.magnitude()));
    }

    pub(crate) fn add(&mut self, field: &str, v: AttributeValue) {
        let (name, value) = (self.name(field), format!(":{field}"));
        self.adds.push(format!("{name} {value}"));
        self.values.insert(value, v);
    }

    pub(crate) fn set(&mut self, field: &str, v: AttributeValue) {
        let (name, value) = (self.name(field), format!(":{field}"));
        self.sets.push(format!("{name} = {value}"));
        self.values.insert(value, v);
    }

    /// Sets the field only where it has no value yet.
    pub(crate) fn set_if_absent(&mut self, field: &str, v: AttributeValue) {
        let (name, value) = (self.name(field), format!(":{field}"));
        self.sets.push(format!("{name} = if_not_exists({name}, {value})"));
        self.values.insert(value, v);
    }

    pub(crate) fn remove(&mut self, field: &str) {
        let name = self.name(field);
        self.removes.push(name);
    }

    /// A condition over `#field` names set, added or removed above, and `:values` given
    /// with [`UpdateExpr::value`].
    pub(crate) fn condition(&mut self, c: &str) {
        self.conditions.push(c.to_owned());
    }

    /// Names `#field` for a condition on a field the update does not touch.
    pub(crate) fn name_only(&mut self, field: &str) {
        self.name(field);
    }

    pub(crate) fn value(&mut self, name: &str, v: AttributeValue) {
        self.values.insert(name.to_owned(), v);
    }

    pub(crate) fn update_expression(&self) -> String {
        let mut parts = vec![];
        if !self.sets.is_empty() {
            parts.push(format!("SET {}", self.sets.join(", ")));
        }
        if !self.adds.is_empty() {
            parts.push(format!("ADD {}", self.adds.join(", ")));
        }
        if !self.removes.is_empty() {
            parts.push(format!("REMOVE {}", self.removes.join(", ")));
        }
        parts.join(" ")
    }

    pub(crate) fn condition_expression(&self) -> Option<String> {
        (!self.conditions.is_empty()).then(|| self.conditions.join(" AND "))
    }

    pub(crate) fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}
