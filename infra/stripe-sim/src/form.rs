//! Stripe's request encoding: `application/x-www-form-urlencoded` with bracketed keys
//! (`metadata[org]=o1`, `line_items[0][price_data][unit_amount]=1000`, `expand[]=x`),
//! decoded into a JSON tree whose leaves are the strings Stripe received.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::ApiError;

pub(crate) type Metadata = BTreeMap<String, String>;

/// How an update request changes an object's metadata.
pub(crate) enum MetadataUpdate {
    Clear,
    /// Each key set to a value, or removed (`None`).
    Merge(Vec<(String, Option<String>)>),
}

impl MetadataUpdate {
    pub(crate) fn apply(self, metadata: &mut Metadata) {
        match self {
            MetadataUpdate::Clear => metadata.clear(),
            MetadataUpdate::Merge(changes) => {
                for (key, value) in changes {
                    match value {
                        Some(value) => metadata.insert(key, value),
                        None => metadata.remove(&key),
                    };
                }
            }
        }
    }
}

/// Decodes a form body or query string. Keys are percent-decoded before the brackets are
/// read, so `metadata%5Borg%5D` (what serde_qs sends with form encoding on) means the same.
pub(crate) fn decode(raw: &[u8]) -> Result<Value, ApiError> {
    let mut root = Map::new();
    for (key, value) in form_urlencoded::parse(raw) {
        // `=` alone: what serde_qs sends for an empty form; no parameter at all.
        if key.is_empty() && value.is_empty() {
            continue;
        }
        let path = split_key(&key)?;
        insert(&mut root, &path, value.into_owned(), &key)?;
    }
    Ok(into_arrays(Value::Object(root)))
}

/// Order-insensitive fingerprint of a request's parameters: async-stripe sends HashMap
/// entries (metadata) in random order, and Stripe compares parameters, not bytes.
pub(crate) fn fingerprint(raw: &[u8]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    pairs
}

fn split_key(key: &str) -> Result<Vec<String>, ApiError> {
    let malformed = || ApiError::invalid(key, format!("Invalid parameter name: {key}"));
    let (head, mut rest) = key.split_at(key.find('[').unwrap_or(key.len()));
    if head.is_empty() {
        return Err(malformed());
    }
    let mut path = vec![head.to_string()];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[').ok_or_else(malformed)?;
        let end = inner.find(']').ok_or_else(malformed)?;
        path.push(inner[..end].to_string());
        rest = &inner[end + 1..];
    }
    Ok(path)
}

fn insert(map: &mut Map<String, Value>, path: &[String], value: String, key: &str) -> Result<(), ApiError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(());
    };
    // `name[]` appends: the next free index.
    let name = if first.is_empty() {
        map.len().to_string()
    } else {
        first.clone()
    };
    if rest.is_empty() {
        if matches!(map.get(&name), Some(Value::Object(_))) {
            return Err(ApiError::invalid(
                key,
                format!("Invalid hash: {key} is both a value and an object"),
            ));
        }
        map.insert(name, Value::String(value));
        return Ok(());
    }
    match map.entry(name).or_insert_with(|| Value::Object(Map::new())) {
        Value::Object(child) => insert(child, rest, value, key),
        _ => Err(ApiError::invalid(
            key,
            format!("Invalid hash: {key} is both a value and an object"),
        )),
    }
}

/// Objects whose keys are all indexes become arrays, in index order.
fn into_arrays(value: Value) -> Value {
    let Value::Object(map) = value else {
        return value;
    };
    let indexed: Option<Vec<(usize, Value)>> = map
        .iter()
        .map(|(k, v)| k.parse::<usize>().ok().map(|i| (i, v.clone())))
        .collect();
    match indexed {
        Some(mut items) if !items.is_empty() => {
            items.sort_by_key(|(i, _)| *i);
            Value::Array(items.into_iter().map(|(_, v)| into_arrays(v)).collect())
        }
        _ => Value::Object(map.into_iter().map(|(k, v)| (k, into_arrays(v))).collect()),
    }
}

/// A view of decoded parameters that names each one as Stripe does in errors
/// (`line_items[0][quantity]`).
#[derive(Clone)]
pub(crate) struct Form<'a> {
    value: Option<&'a Value>,
    name: String,
}

impl<'a> Form<'a> {
    pub(crate) fn root(value: &'a Value) -> Self {
        Form {
            value: Some(value),
            name: String::new(),
        }
    }

    pub(crate) fn param(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{}[{key}]", self.name)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.value.and_then(|v| v.get(key))
    }

    pub(crate) fn child(&self, key: &str) -> Form<'a> {
        Form {
            value: self.get(key),
            name: self.param(key),
        }
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A string parameter; Stripe reads an empty value as "not given".
    pub(crate) fn text(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(
                &self.param(key),
                format!("Invalid string: {}", self.param(key)),
            )),
        }
    }

    pub(crate) fn required_text(&self, key: &str) -> Result<&'a str, ApiError> {
        self.text(key)?.ok_or_else(|| ApiError::missing(&self.param(key)))
    }

    pub(crate) fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.text(key)?
            .map(|s| {
                s.parse::<i64>().map_err(|_| {
                    ApiError::invalid_code(
                        "parameter_invalid_integer",
                        &self.param(key),
                        format!("Invalid integer: {s}"),
                    )
                })
            })
            .transpose()
    }

    pub(crate) fn required_int(&self, key: &str) -> Result<i64, ApiError> {
        self.int(key)?.ok_or_else(|| ApiError::missing(&self.param(key)))
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.text(key)? {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid(
                &self.param(key),
                format!("Invalid boolean: {other}"),
            )),
        }
    }

    /// `metadata[k]=v` pairs; Stripe drops keys sent with an empty value.
    pub(crate) fn metadata(&self, key: &str) -> Result<Metadata, ApiError> {
        match self.get(key) {
            None => Ok(Metadata::new()),
            Some(Value::String(s)) if s.is_empty() => Ok(Metadata::new()),
            Some(Value::Object(map)) => map
                .iter()
                .filter(|(_, v)| v.as_str() != Some(""))
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(ApiError::invalid(
                        &format!("{}[{k}]", self.param(key)),
                        "Metadata values can only be strings.",
                    )),
                })
                .collect(),
            Some(_) => Err(ApiError::invalid(&self.param(key), "Invalid hash")),
        }
    }

    /// `metadata[k]=v` as an update, as Stripe merges it into an object's metadata: `None`
    /// when not sent; a key sent empty is removed, and `metadata=` (empty) clears them all.
    pub(crate) fn metadata_update(&self, key: &str) -> Result<Option<MetadataUpdate>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(Some(MetadataUpdate::Clear)),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) if s.is_empty() => Ok((k.clone(), None)),
                    Value::String(s) => Ok((k.clone(), Some(s.clone()))),
                    _ => Err(ApiError::invalid(
                        &format!("{}[{k}]", self.param(key)),
                        "Metadata values can only be strings.",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|changes| Some(MetadataUpdate::Merge(changes))),
            Some(_) => Err(ApiError::invalid(&self.param(key), "Invalid hash")),
        }
    }

    pub(crate) fn items(&self, key: &str) -> Result<Vec<Form<'a>>, ApiError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| Form {
                    value: Some(v),
                    name: format!("{}[{i}]", self.param(key)),
                })
                .collect()),
            Some(_) => Err(ApiError::invalid(
                &self.param(key),
                format!("Invalid array: {}", self.param(key)),
            )),
        }
    }

    pub(crate) fn strings(&self, key: &str) -> Result<Vec<String>, ApiError> {
        self.items(key)?
            .into_iter()
            .map(|item| match item.value {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(ApiError::invalid(
                    &item.name,
                    format!("Invalid string: {}", item.name),
                )),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn bracketed_keys_become_nested_objects_and_indexed_arrays() {
        let raw = b"line_items[1][quantity]=2&line_items[0][price_data][unit_amount]=1000\
            &line_items[0][quantity]=1&metadata[org]=o%201&success_url=http://x/s?sid={CHECKOUT_SESSION_ID}\
            &expand[]=latest_charge&expand[]=customer&name=A+B";
        let tree = decode(raw).unwrap();
        assert_eq!(
            tree,
            json!({
                "line_items": [
                    {"price_data": {"unit_amount": "1000"}, "quantity": "1"},
                    {"quantity": "2"}
                ],
                "metadata": {"org": "o 1"},
                "success_url": "http://x/s?sid={CHECKOUT_SESSION_ID}",
                "expand": ["latest_charge", "customer"],
                "name": "A B"
            })
        );
    }

    #[test]
    fn percent_encoded_brackets_and_values_decode_like_literal_ones() {
        let tree = decode(b"metadata%5Borg%5D=a%26b%3Dc%2B&email=a%40b.com").unwrap();
        assert_eq!(tree, json!({"metadata": {"org": "a&b=c+"}, "email": "a@b.com"}));
    }

    #[test]
    fn malformed_keys_and_conflicting_shapes_are_refused() {
        assert_eq!(decode(b"metadata[org=1").unwrap_err().status, 400);
        assert_eq!(decode(b"[x]=1").unwrap_err().status, 400);
        assert_eq!(decode(b"metadata[a]=1&metadata=2").unwrap_err().status, 400);
    }

    #[test]
    fn an_empty_form_as_serde_qs_sends_it_is_no_parameter() {
        assert_eq!(decode(b"=").unwrap(), json!({}));
        assert_eq!(decode(b"").unwrap(), json!({}));
        assert_eq!(decode(b"=x").unwrap_err().status, 400);
    }

    #[test]
    fn typed_reads_name_the_bracketed_param_in_errors() {
        let tree = decode(b"line_items[0][quantity]=two&confirm=yes").unwrap();
        let form = Form::root(&tree);
        let item = form.items("line_items").unwrap().remove(0);
        let err = item.int("quantity").unwrap_err();
        assert_eq!(err.param.as_deref(), Some("line_items[0][quantity]"));
        assert_eq!(err.message, "Invalid integer: two");
        assert_eq!(form.bool("confirm").unwrap_err().message, "Invalid boolean: yes");
        assert_eq!(
            form.required_text("amount").unwrap_err().code,
            Some("parameter_missing")
        );
    }

    #[test]
    fn fingerprint_ignores_parameter_order() {
        assert_eq!(
            fingerprint(b"metadata[a]=1&metadata[b]=2"),
            fingerprint(b"metadata[b]=2&metadata[a]=1")
        );
        assert_ne!(fingerprint(b"amount=1"), fingerprint(b"amount=2"));
    }
}
