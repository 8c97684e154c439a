//! Reading a function's settings: each function has one `Settings` (in its `lib.rs` or
//! `settings.rs`) implementing [`FromEnv`] on these readers. `main.rs` calls
//! `Settings::from_env()`; tests call `Settings::from_lookup` with their own values.

/// A function's settings, read once at start-up.
pub trait FromEnv: Sized {
    /// From `get` (a test's values); an error names the setting and what is wrong.
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String>;

    /// From the environment (empty variables count as unset).
    fn from_env() -> Result<Self, String> {
        Self::from_lookup(crate::env)
    }
}

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

/// Where the org's BYOK keys are kept in Secrets Manager, from `BYOK_SECRET_PREFIX`
/// (the template grants the functions that prefix only); the local stack's by default.
pub fn byok_prefix(set: Option<String>) -> String {
    set.filter(|p| !p.is_empty())
        .unwrap_or_else(|| "agent-credits/local/byok/".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_or_refused_by_name() {
        let get = |name: &str| match name {
            "set" => Some("60".to_owned()),
            "empty" => Some(String::new()),
            "words" => Some("a minute".to_owned()),
            _ => None,
        };
        assert_eq!(required(&get, "set"), Ok("60".to_owned()));
        assert_eq!(required(&get, "empty"), Err("empty is required".to_owned()));
        assert_eq!(seconds(&get, "set", 5, 1..=86_400), Ok(60));
        assert_eq!(seconds(&get, "unset", 5, 1..=86_400), Ok(5));
        assert!(seconds(&get, "set", 5, 1..=59).is_err());
        assert!(seconds(&get, "words", 5, 0..=60).unwrap_err().contains("words"));
        assert_eq!(byok_prefix(get("empty")), "agent-credits/local/byok/");
        assert_eq!(byok_prefix(Some("p/".into())), "p/");
    }
}
