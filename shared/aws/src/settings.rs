//! Reading a function's settings: each function has one `Settings::from_env` (in its
//! `lib.rs` or `settings.rs`) built on these, and a `Settings::from_lookup` that tests
//! call with their own values.

/// A required setting.
pub fn required(get: &impl Fn(&str) -> Option<String>, name: &str) -> Result<String, String> {
    get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{name} is required"))
}

/// A whole number of seconds within `range`, or `default` when unset.
pub fn seconds(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, String> {
    match get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(format!(
                "{name} must be a whole number of seconds from {} to {}",
                range.start(),
                range.end()
            )),
        },
    }
}

/// Where the org's BYOK keys are kept in Secrets Manager (`BYOK_SECRET_PREFIX`; the
/// template grants the functions that prefix only).
pub fn byok_prefix(get: &impl Fn(&str) -> Option<String>) -> String {
    get("BYOK_SECRET_PREFIX")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "agent-credits/local/byok/".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_or_refused_by_name() {
        let get = |name: &str| match name {
            "SET" => Some("60".to_owned()),
            "EMPTY" => Some(String::new()),
            "WORDS" => Some("a minute".to_owned()),
            _ => None,
        };
        assert_eq!(required(&get, "SET"), Ok("60".to_owned()));
        assert_eq!(required(&get, "EMPTY"), Err("EMPTY is required".to_owned()));
        assert_eq!(seconds(&get, "SET", 5, 1..=86_400), Ok(60));
        assert_eq!(seconds(&get, "UNSET", 5, 1..=86_400), Ok(5));
        assert!(seconds(&get, "SET", 5, 1..=59).is_err());
        assert!(seconds(&get, "WORDS", 5, 0..=60).unwrap_err().contains("WORDS"));
        assert_eq!(byok_prefix(&get), "agent-credits/local/byok/");
    }
}
