//! The usage function's settings, read once from the environment at start-up.

use agent_credits_aws::settings::{byok_prefix, required, seconds};
use agent_credits_domain::Markup;
use agent_credits_http::IamRoles;

#[derive(Debug, Clone)]
pub struct Settings {
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
    /// Where the orgs' BYOK keys are (`BYOK_SECRET_PREFIX`).
    pub byok_prefix: String,
    /// The per-runtime key-setup guide (`KEY_SETUP_GUIDE_URL`, `{runtime}` filled in);
    /// `None` (unset or empty): the runtime's provider's key page.
    pub key_setup_guide: Option<String>,
}

impl agent_credits_aws::settings::FromEnv for Settings {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let default_markup = match get("DEFAULT_MARKUP") {
            Some(m) => Markup::parse(&m).map_err(|e| format!("DEFAULT_MARKUP: {e}"))?,
            None => Markup::DEFAULT,
        };
        let hold_ttl_seconds = seconds(&get, "HOLD_TTL_SECONDS", 900, 1..=86_400)?;
        let max_hold_ttl_seconds =
            seconds(&get, "MAX_HOLD_TTL_SECONDS", 3600, 1..=86_400)?.max(hold_ttl_seconds);
        let iam = IamRoles::parse(
            get("RUNTIME_ROLE_ARNS").as_deref(),
            get("OPERATOR_ROLE_ARNS").as_deref(),
        )?;
        let key_setup_guide = get("KEY_SETUP_GUIDE_URL").filter(|g| !g.is_empty());
        if let Some(g) = &key_setup_guide
            && !(g.starts_with("https://") || g.starts_with("http://"))
        {
            return Err(format!("KEY_SETUP_GUIDE_URL: not an http(s) URL: {g}"));
        }
        Ok(Settings {
            key_setup_guide,
            table: required(&get, "TABLE_NAME")?,
            default_markup,
            hold_ttl_seconds,
            max_hold_ttl_seconds,
            iam,
            byok_prefix: byok_prefix(get("BYOK_SECRET_PREFIX")),
        })
    }
}
