//! Typed identifiers. Each is parsed once at the edge; holding one means it is valid.
//!
//! The grammar is deliberately narrow (ASCII letters, digits, `_ - . :`, 1 to 128 chars,
//! 255 for idempotency keys): ids end up inside DynamoDB keys, log lines and URLs, and
//! `#` is the key separator of the table.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be 1 to {max} characters of A-Z a-z 0-9 {}", punctuation(.chars))]
pub struct IdError {
    pub what: &'static str,
    pub max: usize,
    /// The punctuation it may hold besides letters and digits.
    pub chars: &'static [u8],
}

fn punctuation(chars: &[u8]) -> String {
    chars
        .iter()
        .map(|c| char::from(*c).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn valid(s: &str, max: usize, extra: &[u8]) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// The punctuation most ids may hold.
const ID_PUNCTUATION: &[u8] = b"_-.:";

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        typed_id!($(#[$doc])* $name, $what, $max, ID_PUNCTUATION);
    };
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $extra:expr) => {
        typed_id!($(#[$doc])* $name, $what, $max, $extra, |_: &str| false);
    };
    // `$also`: another form the id may take besides the grammar.
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $extra:expr, $also:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                if valid(&s, $max, $extra) || $also(&s) {
                    Ok(Self(s))
                } else {
                    Err(IdError { what: $what, max: $max, chars: $extra })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// An organisation: the owner of one wallet. No `:`: an org id is part of its BYOK
    /// secrets' names, which Secrets Manager limits to letters, digits and `/_+=.@-`.
    /// A person's own account (references 002-004) is the one other form:
    /// [`OrgId::personal`], `@` then the member id with `+` for `:`, which no org can be.
    OrgId, "org id", 128, b"_-.", is_personal_form
);

/// `@<member id with + for :>`: injective, since no member id holds `+` or `@`.
fn is_personal_form(s: &str) -> bool {
    s.strip_prefix('@')
        .is_some_and(|m| valid(m, MemberId::MAX_LEN, b"_-.+"))
}

impl OrgId {
    /// The personal account of `member`: their own wallet, purchases, auto top-up and
    /// usage, apart from every org's (reference 003: "completely separate").
    pub fn personal(member: &MemberId) -> OrgId {
        OrgId(format!("@{}", member.as_str().replace(':', "+")))
    }

    pub fn is_personal(&self) -> bool {
        self.0.starts_with('@')
    }

    /// Whose personal account this is; `None` for an org.
    pub fn personal_owner(&self) -> Option<MemberId> {
        self.0.strip_prefix('@').map(|m| MemberId(m.replace('+', ":")))
    }
}
typed_id!(
    /// A member of an organisation (the identity provider's subject).
    MemberId, "member id", 128
);
typed_id!(
    /// The API key a call was made with (its id, never the key itself).
    ApiKeyId, "api key id", 128
);
typed_id!(
    /// The agent that made a call.
    AgentId, "agent id", 128
);
typed_id!(
    /// A hold: an estimate reserved before a model call, named by the runtime's request.
    HoldId, "hold id", 128
);
typed_id!(
    /// A withdrawal of earned credits, named by the owner's request.
    WithdrawalId, "withdrawal id", 128
);
typed_id!(
    /// Makes a change happen at most once: a usage request id, a Stripe event or object
    /// id, a recharge attempt id, each prefixed by its source.
    IdempotencyKey, "idempotency key", 255
);

impl IdempotencyKey {
    /// `prefix:id` from an id that is already valid: ids and prefixes share the grammar
    /// and stay within its length, so no check can fail.
    pub(crate) fn joined(prefix: &str, id: &str) -> IdempotencyKey {
        IdempotencyKey(format!("{prefix}:{id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_narrow_grammar_only() {
        assert!(OrgId::parse("org_123-abc.x").is_ok());
        assert!(
            OrgId::parse("org:1").is_err(),
            "Secrets Manager names hold no ':'"
        );
        assert!(MemberId::parse("auth0:123").is_ok());
        assert!(OrgId::parse("").is_err());
        assert!(OrgId::parse("a#b").is_err());
        assert!(OrgId::parse("a b").is_err());
        assert!(OrgId::parse("x".repeat(129)).is_err());
        assert!(IdempotencyKey::parse("k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("k".repeat(256)).is_err());
        assert!(serde_json::from_str::<MemberId>("\"m/1\"").is_err());
    }

    #[test]
    fn a_personal_account_is_no_org_and_names_its_owner() {
        for m in ["u_ana", "auth0:123", "a:b:c", &"m".repeat(128)] {
            let member = MemberId::parse(m).unwrap();
            let id = OrgId::personal(&member);
            assert!(id.is_personal());
            assert_eq!(OrgId::parse(id.as_str()), Ok(id.clone()), "read back as stored");
            assert_eq!(id.personal_owner(), Some(member));
        }
        assert_ne!(
            OrgId::personal(&MemberId::parse("a:b").unwrap()),
            OrgId::personal(&MemberId::parse("a.b").unwrap())
        );
        // No org is a personal account, and only that one form holds `@` or `+`.
        let org = OrgId::parse("org_1").unwrap();
        assert!(!org.is_personal() && org.personal_owner().is_none());
        for bad in [
            "a@b",
            "@",
            "@@a",
            "a+b",
            "@a:b",
            "@a b",
            &format!("@{}", "m".repeat(129)),
        ] {
            assert!(OrgId::parse(bad).is_err(), "{bad}");
        }
    }
}
