//! Bring-your-own-key (reference 000): an org's own provider key. The key lives only in
//! Secrets Manager; everything else sees its provider, its last four characters and its
//! dates. [`ProviderKey`] never prints or serializes its value.

use secrecy::{ExposeSecret, SecretString};

use crate::account::Provider;

/// A provider key that passed its provider's format check, kept as a [`SecretString`]
/// (zeroed when dropped).
#[derive(Clone)]
pub struct ProviderKey(SecretString);

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProviderKey(…{})", self.last4())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this is not a {provider} key: {expected}")]
pub struct KeyFormatError {
    pub provider: &'static str,
    pub expected: &'static str,
}

impl ProviderKey {
    /// Checks `key` against `provider`'s published format (prefix, length, characters).
    pub fn parse(provider: Provider, key: &str) -> Result<ProviderKey, KeyFormatError> {
        let (prefix, lengths, expected) = match provider {
            Provider::Anthropic => ("sk-ant-", 40..=300, "sk-ant-… , 40 to 300 characters"),
            Provider::OpenRouter => ("sk-or-", 30..=300, "sk-or-… , 30 to 300 characters"),
            Provider::OpenAi => ("sk-", 20..=300, "sk-… , 20 to 300 characters"),
            Provider::Google => ("AIza", 39..=39, "AIza… , 39 characters"),
            Provider::OpenCode => ("sk-", 20..=300, "sk-… , 20 to 300 characters"),
        };
        let charset = key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        // An Anthropic or OpenRouter key is not an OpenAI or OpenCode key, though it starts
        // with sk-.
        let foreign = matches!(provider, Provider::OpenAi | Provider::OpenCode)
            && (key.starts_with("sk-ant-") || key.starts_with("sk-or-"));
        if !key.starts_with(prefix) || !lengths.contains(&key.len()) || !charset || foreign {
            return Err(KeyFormatError {
                provider: provider.as_str(),
                expected,
            });
        }
        Ok(ProviderKey(SecretString::from(key)))
    }

    /// The key itself: only for Secrets Manager and the runtime's own fetch.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The last four characters, the only part ever shown (the key is ASCII).
    pub fn last4(&self) -> String {
        let key = self.expose();
        key[key.len().saturating_sub(4)..].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_per_provider_and_never_printed() {
        let openai = ProviderKey::parse(Provider::OpenAi, "sk-proj-abcdefghijklmnopqrstuvwxyz0123").unwrap();
        assert_eq!(openai.last4(), "0123");
        assert!(!format!("{openai:?}").contains("abcdefgh"));
        assert!(ProviderKey::parse(Provider::Anthropic, &format!("sk-ant-api03-{}", "x".repeat(40))).is_ok());
        assert!(ProviderKey::parse(Provider::Google, &format!("AIza{}", "B".repeat(35))).is_ok());
        assert!(ProviderKey::parse(Provider::OpenRouter, &format!("sk-or-v1-{}", "c".repeat(40))).is_ok());
        assert!(ProviderKey::parse(Provider::OpenCode, &format!("sk-{}", "d".repeat(60))).is_ok());
        for (provider, bad) in [
            (Provider::OpenAi, "sk-short"),
            (Provider::OpenAi, "sk-ant-api03-looks-like-anthropic-not-openai"),
            (Provider::OpenAi, "sk-proj-has spaces in it and more characters"),
            (Provider::Google, "AIzaTooShort"),
            (
                Provider::Anthropic,
                "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
            ),
            (Provider::OpenRouter, ""),
            (Provider::OpenCode, "sk-or-v1-an-openrouter-key-is-not-opencodes"),
        ] {
            assert!(ProviderKey::parse(provider, bad).is_err(), "{provider} {bad}");
        }
    }
}
