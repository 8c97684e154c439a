//! Reading and writing item attributes. Money goes in as DynamoDB `N` written from the
//! normalized decimal and comes back through `Decimal::from_str_exact`, never through a
//! float.

use std::collections::HashMap;

use agent_credits_domain::{SignedUsd, StoreError, Usd};
use aws_sdk_dynamodb::types::AttributeValue;
use rust_decimal::Decimal;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n_dec(d: Decimal) -> AttributeValue {
    AttributeValue::N(d.normalize().to_string())
}

pub fn n_u64(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn n_usd(v: Usd) -> AttributeValue {
    n_dec(v.as_decimal())
}

pub fn n_signed(v: SignedUsd) -> AttributeValue {
    n_dec(v.as_decimal())
}

/// Reads one item's attributes, naming the item in every error.
pub struct Reader<'a> {
    item: &'a Item,
    key: String,
}

impl<'a> Reader<'a> {
    pub fn new(item: &'a Item) -> Reader<'a> {
        let part = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                .unwrap_or("?")
        };
        Reader {
            item,
            key: format!("{}/{}", part("pk"), part("sk")),
        }
    }

    pub fn corrupt(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            key: self.key.clone(),
            reason: reason.into(),
        }
    }

    pub fn opt_s(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(self.corrupt(format!("{name} is not a string"))),
        }
    }

    pub fn s(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_s(name)?
            .ok_or_else(|| self.corrupt(format!("{name} missing")))
    }

    pub fn decimal(&self, name: &str) -> Result<Decimal, StoreError> {
        match self.item.get(name) {
            Some(AttributeValue::N(v)) => Decimal::from_str_exact(v)
                .or_else(|_| Decimal::from_scientific(v))
                .map_err(|_| self.corrupt(format!("{name} is not a decimal: {v}"))),
            Some(_) => Err(self.corrupt(format!("{name} is not a number"))),
            None => Err(self.corrupt(format!("{name} missing"))),
        }
    }

    pub fn usd(&self, name: &str) -> Result<Usd, StoreError> {
        Usd::from_stored(self.decimal(name)?).map_err(|e| self.corrupt(format!("{name}: {e}")))
    }

    /// An amount that may be absent (a counter no change has moved yet).
    pub fn opt_usd(&self, name: &str) -> Result<Option<Usd>, StoreError> {
        if self.has(name) {
            self.usd(name).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn has(&self, name: &str) -> bool {
        !matches!(self.item.get(name), None | Some(AttributeValue::Null(_)))
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.corrupt(format!("{name} is not a boolean"))),
        }
    }

    pub fn signed(&self, name: &str) -> Result<SignedUsd, StoreError> {
        SignedUsd::from_stored(self.decimal(name)?).map_err(|e| self.corrupt(format!("{name}: {e}")))
    }

    pub fn u64(&self, name: &str) -> Result<u64, StoreError> {
        match self.item.get(name) {
            Some(AttributeValue::N(v)) => v
                .parse()
                .map_err(|_| self.corrupt(format!("{name} is not a whole number: {v}"))),
            Some(_) => Err(self.corrupt(format!("{name} is not a number"))),
            None => Err(self.corrupt(format!("{name} missing"))),
        }
    }

    pub fn map(&self, name: &str) -> Result<Option<&'a HashMap<String, AttributeValue>>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::M(m)) => Ok(Some(m)),
            Some(_) => Err(self.corrupt(format!("{name} is not a map"))),
        }
    }
}
