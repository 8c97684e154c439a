//! Orgs, their runtime and billing choice, and who may do what in them.
//!
//! The permission matrix is built from references 002-004, which disagree; where they do,
//! the org chooses (DESIGN.md: support both as settings rather than pick one):
//!
//! | action | owner | admin | member |
//! |---|---|---|---|
//! | view balance, usage, history, notifications | yes | yes | when `members_see_billing` (default yes, ref 004; ref 003 says admin+) |
//! | purchase credits | yes | when `purchase_policy` is `owners_and_admins` (ref 002's variant) or `any_member` | when `any_member` (ref 004: with their own card; ref 003: owners only, the default) |
//! | change the org's policies and low-balance threshold | yes | no | no (ref 003) |
//! | manage auto-recharge | yes | yes (refs 002, 004) | no |
//! | change plan, set member limits, Stripe portal, invoices | yes | no | no (ref 003) |
//! | manage members and roles | yes | no | no |
//! | manage BYOK keys, runtime, billing mode | yes | yes | no |

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{MemberId, OrgId};
use crate::money::Usd;
use crate::settings::BillingMode;

/// The coding agent an org's agents run (reference 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    ClaudeCode,
    Codex,
    GeminiCli,
    OpenCode,
    Hermes,
}

/// Model providers whose keys an org may bring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Anthropic,
    OpenAi,
    Google,
    OpenRouter,
    /// OpenCode Zen, OpenCode's own hosted models (reference 000's provider column).
    OpenCode,
}

impl Runtime {
    pub const ALL: [Runtime; 5] = [
        Runtime::ClaudeCode,
        Runtime::Codex,
        Runtime::GeminiCli,
        Runtime::OpenCode,
        Runtime::Hermes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::ClaudeCode => "claude_code",
            Runtime::Codex => "codex",
            Runtime::GeminiCli => "gemini_cli",
            Runtime::OpenCode => "open_code",
            Runtime::Hermes => "hermes",
        }
    }

    pub fn parse(s: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The provider whose key this runtime's calls use: reference 000's provider column.
    /// OpenCode's is OpenCode (its Zen API key); Hermes reaches any model via OpenRouter.
    pub fn provider(self) -> Provider {
        match self {
            Runtime::ClaudeCode => Provider::Anthropic,
            Runtime::Codex => Provider::OpenAi,
            Runtime::GeminiCli => Provider::Google,
            Runtime::OpenCode => Provider::OpenCode,
            Runtime::Hermes => Provider::OpenRouter,
        }
    }

    /// The key-setup guide for this runtime that its terminal links to (reference 000):
    /// the deployment's `guide` with `{runtime}` filled in, else [`Runtime::key_page`].
    pub fn key_setup_guide(self, guide: Option<&str>) -> String {
        match guide {
            Some(g) => g.replace("{runtime}", self.as_str()),
            None => self.key_page().to_owned(),
        }
    }

    /// The providers whose key this runtime runs on, its own first. OpenCode also runs on
    /// an OpenRouter key: the rule before it followed the runtime table, so an org that
    /// brought one keeps running on it.
    pub fn key_providers(self) -> &'static [Provider] {
        match self {
            Runtime::ClaudeCode => &[Provider::Anthropic],
            Runtime::Codex => &[Provider::OpenAi],
            Runtime::GeminiCli => &[Provider::Google],
            Runtime::OpenCode => &[Provider::OpenCode, Provider::OpenRouter],
            Runtime::Hermes => &[Provider::OpenRouter],
        }
    }

    /// Whether an org with keys for `keys` has a key this runtime runs on.
    pub fn has_key(self, keys: &[Provider]) -> bool {
        self.key_providers().iter().any(|p| keys.contains(p))
    }

    /// Where this runtime's key is made: its provider's key page.
    pub fn key_page(self) -> &'static str {
        match self.provider() {
            Provider::Anthropic => "https://console.anthropic.com/settings/keys",
            Provider::OpenAi => "https://platform.openai.com/api-keys",
            Provider::Google => "https://aistudio.google.com/apikey",
            Provider::OpenRouter => "https://openrouter.ai/settings/keys",
            Provider::OpenCode => "https://opencode.ai/auth",
        }
    }

    /// Whether the runtime may run on the platform's key when the org has none of its own
    /// (reference 000: "Claude can use the platform key"); such calls bill the wallet.
    pub fn may_use_platform_key(self) -> bool {
        self == Runtime::ClaudeCode
    }

    /// The key a BYOK org on this runtime must bring: its provider's, unless it may run
    /// on the platform key.
    pub fn required_byok_provider(self) -> Option<Provider> {
        (!self.may_use_platform_key()).then(|| self.provider())
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::Anthropic,
        Provider::OpenAi,
        Provider::Google,
        Provider::OpenRouter,
        Provider::OpenCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenAi => "open_ai",
            Provider::Google => "google",
            Provider::OpenRouter => "open_router",
            Provider::OpenCode => "open_code",
        }
    }

    pub fn parse(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A provider name that is none of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider is one of anthropic, open_ai, google, open_router, open_code")]
pub struct UnknownProvider;

impl std::str::FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Provider, UnknownProvider> {
        Provider::parse(s).ok_or(UnknownProvider)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Owner, Role::Admin, Role::Member]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// Who may buy credits for the org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchasePolicy {
    /// Reference 003.
    #[default]
    OwnersOnly,
    /// Reference 002's variant: owners and admins, each with their own card.
    OwnersAndAdmins,
    /// Reference 004: any member, paying with their own card.
    AnyMember,
}

impl PurchasePolicy {
    pub const ALL: [PurchasePolicy; 3] = [
        PurchasePolicy::OwnersOnly,
        PurchasePolicy::OwnersAndAdmins,
        PurchasePolicy::AnyMember,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PurchasePolicy::OwnersOnly => "owners_only",
            PurchasePolicy::OwnersAndAdmins => "owners_and_admins",
            PurchasePolicy::AnyMember => "any_member",
        }
    }

    pub fn parse(s: &str) -> Option<PurchasePolicy> {
        PurchasePolicy::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The least role that may buy.
    pub fn least_role(self) -> Role {
        match self {
            PurchasePolicy::OwnersOnly => Role::Owner,
            PurchasePolicy::OwnersAndAdmins => Role::Admin,
            PurchasePolicy::AnyMember => Role::Member,
        }
    }
}

/// What a caller wants to do in an org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See the org itself and its agents' runtimes: every member.
    ViewOrg,
    ViewBilling,
    Purchase,
    ManageAutoRecharge,
    ChangePlan,
    SetMemberLimits,
    ManageMembers,
    ManageKeys,
    ManageOrg,
    /// The org's policies and low-balance threshold: owners (reference 003's role table).
    ChangeSettings,
    /// Cash earned credits out: owners (they own the org's money).
    Withdraw,
    /// The org's invoices: owners (reference 003's role table).
    ViewInvoices,
    /// The Stripe customer portal: owners (reference 003's role table).
    OpenPortal,
}

/// A member of an org, with their role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    pub role: Role,
    pub monthly_limit: Option<Usd>,
    /// The member's own Stripe customer: payment methods are never shared between members
    /// (reference 004), and an owner's saved card is the one auto-recharge charges.
    pub stripe_customer: Option<String>,
}

/// An org as created: its runtime and billing choice, and its policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub runtime: Runtime,
    pub billing_mode: BillingMode,
    pub purchase_policy: PurchasePolicy,
    pub members_see_billing: bool,
    /// Credits shown per US dollar (reference 003: 200 credits = $1).
    pub credits_per_usd: u32,
    pub created_at: DateTime<Utc>,
    /// The org whose referral code (its id) this org was created with, recorded once at
    /// creation: it earns a referral when this org's first purchase is credited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referred_by: Option<OrgId>,
    /// Moves with each change the rules of a byok org's runtimes depend on (an agent's
    /// runtime, the billing mode); such changes are written on the condition that it has
    /// not moved since the org was read, so two of them cannot interleave. Not shown.
    #[serde(skip)]
    pub revision: u64,
}

pub const DEFAULT_CREDITS_PER_USD: u32 = 200;

/// Whose wallet a use is billed to (reference 003: "when you switch between personal and
/// org contexts, the billing source switches too"): the org's, or the member's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Context {
    #[default]
    Org,
    Personal,
}

impl Context {
    pub fn parse(s: &str) -> Option<Context> {
        match s {
            "org" => Some(Context::Org),
            "personal" => Some(Context::Personal),
            _ => None,
        }
    }

    /// The wallet a use in this context is billed to: `org`'s, or `member`'s personal
    /// account. `None`: a personal use that names no member, whose wallet is unknown.
    pub fn wallet(self, org: OrgId, member: Option<&MemberId>) -> Option<OrgId> {
        match self {
            Context::Org => Some(org),
            Context::Personal => member.map(OrgId::personal),
        }
    }
}

impl Org {
    /// `member`'s own account (references 002-004): a wallet on credits that only they
    /// see and pay for, as its one owner, apart from every org's.
    pub fn personal(member: &MemberId, now: DateTime<Utc>) -> Org {
        Org {
            id: OrgId::personal(member),
            name: "Personal".to_owned(),
            runtime: Runtime::ClaudeCode,
            billing_mode: BillingMode::Credits,
            purchase_policy: PurchasePolicy::OwnersOnly,
            members_see_billing: false,
            credits_per_usd: DEFAULT_CREDITS_PER_USD,
            created_at: now,
            referred_by: None,
            revision: 0,
        }
    }

    /// The permission matrix above.
    pub fn allows(&self, role: Role, action: Action) -> bool {
        match action {
            Action::ViewOrg => true,
            Action::ViewBilling => role >= Role::Admin || self.members_see_billing,
            Action::Purchase => role >= self.purchase_policy.least_role(),
            Action::ManageAutoRecharge | Action::ManageKeys | Action::ManageOrg => role >= Role::Admin,
            Action::ChangePlan
            | Action::SetMemberLimits
            | Action::ManageMembers
            | Action::ChangeSettings
            | Action::Withdraw
            | Action::ViewInvoices
            | Action::OpenPortal => role == Role::Owner,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an org cannot switch from {from} to {to}")]
pub struct SwitchRefused {
    pub from: &'static str,
    pub to: &'static str,
}

/// Billing-mode switches after creation (reference 000): BYOK → credits, deferred →
/// BYOK or credits. Nothing goes back to deferred, and credits stay credits, so money
/// already in a wallet is never stranded.
pub fn switch_billing_mode(from: BillingMode, to: BillingMode) -> Result<BillingMode, SwitchRefused> {
    match (from, to) {
        (a, b) if a == b => Ok(b),
        (BillingMode::Byok, BillingMode::Credits)
        | (BillingMode::Deferred, BillingMode::Byok | BillingMode::Credits) => Ok(to),
        _ => Err(SwitchRefused {
            from: from.as_str(),
            to: to.as_str(),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A credits org on Claude Code with the defaults, for the domain's tests.
    pub(crate) fn org() -> Org {
        Org {
            id: OrgId::parse("o").unwrap(),
            name: "Acme".into(),
            runtime: Runtime::ClaudeCode,
            billing_mode: BillingMode::Credits,
            purchase_policy: PurchasePolicy::OwnersOnly,
            members_see_billing: true,
            credits_per_usd: DEFAULT_CREDITS_PER_USD,
            created_at: Utc::now(),
            referred_by: None,
            revision: 0,
        }
    }

    #[test]
    fn the_matrix_follows_the_references_and_the_org_policies() {
        let mut o = org();
        assert!(o.allows(Role::Owner, Action::Purchase));
        assert!(!o.allows(Role::Admin, Action::Purchase));
        assert!(!o.allows(Role::Member, Action::Purchase));
        o.purchase_policy = PurchasePolicy::OwnersAndAdmins;
        assert!(o.allows(Role::Admin, Action::Purchase));
        assert!(!o.allows(Role::Member, Action::Purchase));
        o.purchase_policy = PurchasePolicy::AnyMember;
        assert!(o.allows(Role::Member, Action::Purchase));
        assert!(!o.allows(Role::Admin, Action::ChangeSettings));
        assert!(o.allows(Role::Owner, Action::ChangeSettings));
        assert!(o.allows(Role::Member, Action::ViewBilling));
        o.members_see_billing = false;
        assert!(!o.allows(Role::Member, Action::ViewBilling));
        assert!(o.allows(Role::Admin, Action::ViewBilling));
        assert!(o.allows(Role::Admin, Action::ManageAutoRecharge));
        assert!(!o.allows(Role::Admin, Action::SetMemberLimits));
        assert!(!o.allows(Role::Admin, Action::ManageMembers));
    }

    #[test]
    fn billing_mode_switches_follow_reference_000() {
        use BillingMode::*;
        assert_eq!(switch_billing_mode(Byok, Credits), Ok(Credits));
        assert_eq!(switch_billing_mode(Deferred, Byok), Ok(Byok));
        assert_eq!(switch_billing_mode(Deferred, Credits), Ok(Credits));
        assert!(switch_billing_mode(Credits, Byok).is_err());
        assert!(switch_billing_mode(Byok, Deferred).is_err());
        assert_eq!(Runtime::Codex.required_byok_provider(), Some(Provider::OpenAi));
        assert_eq!(Runtime::ClaudeCode.required_byok_provider(), None);
    }
}
