//! Settings, read once from the environment at start-up.

use agent_credits_domain::Markup;
use agent_credits_http::IamRoles;

#[derive(Debug, Clone)]
pub struct Config {
    /// The credits table (`TABLE_NAME`).
    pub table: String,
    /// Markup of orgs that set none (`DEFAULT_MARKUP`, default 1.5).
    pub default_markup: Markup,
    /// Lifetime of a hold when the runtime asks for none (`HOLD_TTL_SECONDS`, default 900).
    pub hold_ttl_seconds: i64,
    /// The longest hold a runtime may ask for (`MAX_HOLD_TTL_SECONDS`, default 3600).
    pub max_hold_ttl_seconds: i64,
    /// The IAM roles of the agent runtime and of operators (`RUNTIME_ROLE_ARNS`,
    /// `OPERATOR_ROLE_ARNS`); none set: every IAM route answers 403.
    pub iam: IamRoles,
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let table = get("TABLE_NAME")
            .filter(|t| !t.is_empty())
            .ok_or("TABLE_NAME is required")?;
        let default_markup = match get("DEFAULT_MARKUP") {
            Some(m) => Markup::parse(&m).map_err(|e| format!("DEFAULT_MARKUP: {e}"))?,
            None => Markup::DEFAULT,
        };
        let seconds = |name: &str, default: i64| -> Result<i64, String> {
            match get(name) {
                None => Ok(default),
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if (1..=86_400).contains(&n) => Ok(n),
                    _ => Err(format!(
                        "{name} must be a whole number of seconds from 1 to 86400"
                    )),
                },
            }
        };
        let hold_ttl_seconds = seconds("HOLD_TTL_SECONDS", 900)?;
        let max_hold_ttl_seconds = seconds("MAX_HOLD_TTL_SECONDS", 3600)?.max(hold_ttl_seconds);
        let iam = IamRoles::parse(
            get("RUNTIME_ROLE_ARNS").as_deref(),
            get("OPERATOR_ROLE_ARNS").as_deref(),
        )?;
        Ok(Config {
            table,
            default_markup,
            hold_ttl_seconds,
            max_hold_ttl_seconds,
            iam,
        })
    }
}
