//! Who pays for a call, and whether the next one may run: the BYOK key rule and the
//! may-I-run verdict, in one place for may-i-run, the usage debits and the balance card.
//!
//! The key rule (reference 000):
//! - a credits org bills every call to its wallet;
//! - a byok org runs on its own key for the runtime's provider; without one, Claude Code
//!   runs on the platform key and bills the wallet ("Claude can use the platform key"),
//!   and any other runtime may not run (its key is required: [`missing_byok_key`]). Its
//!   wallet stays empty (nobody may buy for it), so at zero it is `no_key_configured`;
//! - a deferred org runs on its own key only when it is the key its runtime needs;
//!   otherwise on credits, and with neither it may not run (`no_key_configured`);
//! - a provider key pays for model calls only: every other consumable (email, SMS, ...)
//!   is paid from credits in every mode, so a byok or deferred org, whose wallet stays
//!   empty, may not use one (`credits_required`) until it switches to credits.

use serde::{Deserialize, Serialize};

use crate::account::{Provider, Runtime};
use crate::consumables::Consumable;
use crate::member::MemberMonth;
use crate::money::{MoneyError, Usd};
use crate::settings::BillingMode;
use crate::state::{PauseReason, WalletState};
use crate::wallet::Wallet;

/// Where a call's cost goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Billing {
    /// The org's wallet: the call is debited.
    Credits,
    /// The org's own provider key: the provider bills the org; the call is recorded,
    /// never debited.
    ProviderKey,
}

impl Billing {
    pub fn as_str(self) -> &'static str {
        match self {
            Billing::Credits => "credits",
            Billing::ProviderKey => "provider_key",
        }
    }
}

/// Who pays for a call of `runtime` in an org of `mode` that stored keys for `keys`:
/// `Err(no_key_configured)` when nobody may.
pub fn billing(mode: BillingMode, runtime: Runtime, keys: &[Provider]) -> Result<Billing, PauseReason> {
    let own_key = runtime.has_key(keys);
    match mode {
        BillingMode::Credits => Ok(Billing::Credits),
        BillingMode::Byok if own_key => Ok(Billing::ProviderKey),
        BillingMode::Byok if runtime.may_use_platform_key() => Ok(Billing::Credits),
        BillingMode::Byok => Err(PauseReason::NoKeyConfigured),
        BillingMode::Deferred if own_key => Ok(Billing::ProviderKey),
        BillingMode::Deferred => Ok(Billing::Credits),
    }
}

/// Who pays for a use of `consumable`: [`billing`] for a model call, credits for
/// anything else.
pub fn billing_for(
    consumable: Consumable,
    mode: BillingMode,
    runtime: Runtime,
    keys: &[Provider],
) -> Result<Billing, PauseReason> {
    if consumable.is_model_call() {
        billing(mode, runtime, keys)
    } else {
        Ok(Billing::Credits)
    }
}

/// Who pays for a call already made, by a runtime of an org of `mode` that has keys for
/// `keys` now: what the runtime says it ran on (the verdict it was given before the call),
/// else who would pay now. A credits org always pays from its wallet. A call said to have
/// run on the org's key is off the wallet only while the org has the key its runtime
/// needs: a runtime's word (or its stale verdict) never makes the platform's key free, and
/// a key deleted between the verdict and the report bills that call to the wallet. A call
/// that ran although nobody could pay (no key) ran on the platform and is billed. A use
/// that is not a model call is always billed: no provider key pays for it.
pub fn billing_of_call(
    consumable: Consumable,
    mode: BillingMode,
    runtime: Runtime,
    keys: &[Provider],
    said: Option<Billing>,
) -> Billing {
    let has_its_key = runtime.has_key(keys);
    match (mode, said) {
        _ if !consumable.is_model_call() => Billing::Credits,
        (BillingMode::Credits, _) => Billing::Credits,
        (_, Some(Billing::ProviderKey)) if has_its_key => Billing::ProviderKey,
        (_, Some(_)) => Billing::Credits,
        (_, None) => billing(mode, runtime, keys).unwrap_or(Billing::Credits),
    }
}

/// The first runtime in use (the org's, its agents') whose key a byok org lacks: the
/// rule at creation, at a switch to byok, when an agent moves runtime, and when a key is
/// deleted (pass the keys as they would be after).
pub fn missing_byok_key(
    mode: BillingMode,
    runtimes: &[Runtime],
    keys: &[Provider],
) -> Option<(Runtime, Provider)> {
    if mode != BillingMode::Byok {
        return None;
    }
    runtimes
        .iter()
        .filter(|r| !r.has_key(keys))
        .find_map(|r| r.required_byok_provider().map(|p| (*r, p)))
}

/// May the next call run, and on what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub allowed: bool,
    pub reason: Option<PauseReason>,
    /// `None` when the call may not run at all.
    pub billed_to: Option<Billing>,
    pub available: Usd,
    /// At or below the low-balance threshold, for an org that runs on credits.
    pub low_balance: bool,
}

/// Why a use of `consumable` billed to an empty wallet may not run: a credits org tops up;
/// a byok or deferred org's wallet stays empty (it is never topped up), so a model call
/// needs its key and any other use needs the org to switch to credits.
pub fn reason_at_zero(mode: BillingMode, consumable: Consumable) -> PauseReason {
    match mode {
        BillingMode::Credits => PauseReason::CreditsExhausted,
        _ if consumable.is_model_call() => PauseReason::NoKeyConfigured,
        _ => PauseReason::CreditsRequired,
    }
}

/// The verdict for a use of `consumable` billed as `billing` (see [`billing_for`]), asked
/// by `member` (their month, when they were named). A call on the org's own key runs
/// whatever the wallet holds; one on credits needs credits, no pause but exhaustion, and
/// the member's room.
pub fn verdict(
    mode: BillingMode,
    consumable: Consumable,
    wallet: &Wallet,
    billing: Result<Billing, PauseReason>,
    member: Option<&MemberMonth>,
) -> Result<Verdict, MoneyError> {
    let available = wallet.available()?;
    let reason = match billing {
        Err(reason) => Some(reason),
        Ok(Billing::ProviderKey) => None,
        Ok(Billing::Credits) => match wallet.state {
            WalletState::Paused(r) if r != PauseReason::CreditsExhausted => Some(r),
            // A byok or deferred org's wallet stays empty (it is never topped up): without
            // its key it runs on credits only while it has some, then needs its key.
            _ if available.is_zero() => Some(reason_at_zero(mode, consumable)),
            _ => match member {
                Some(m) if m.limit_reached()? => Some(PauseReason::MemberLimitReached),
                _ => None,
            },
        },
    };
    Ok(Verdict {
        allowed: reason.is_none(),
        reason,
        billed_to: reason.is_none().then_some(billing.ok()).flatten(),
        available,
        low_balance: billing == Ok(Billing::Credits) && available <= wallet.settings.low_threshold(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OrgId;

    fn usd(s: &str) -> Usd {
        Usd::parse(s).unwrap()
    }

    fn wallet(purchased: &str) -> Wallet {
        let mut w = Wallet::empty(OrgId::parse("o").unwrap());
        w.buckets.purchased = usd(purchased);
        w
    }

    #[test]
    fn byok_claude_code_without_its_key_runs_on_the_platform_key_and_is_billed() {
        use BillingMode::*;
        use Runtime::*;
        assert_eq!(billing(Byok, ClaudeCode, &[]), Ok(Billing::Credits));
        assert_eq!(
            billing(Byok, ClaudeCode, &[Provider::Anthropic]),
            Ok(Billing::ProviderKey)
        );
        assert_eq!(
            billing(Byok, Codex, &[Provider::OpenAi]),
            Ok(Billing::ProviderKey)
        );
        assert_eq!(
            billing(Byok, Codex, &[Provider::Anthropic]),
            Err(PauseReason::NoKeyConfigured)
        );
        // Its wallet stays empty (never topped up): at zero it needs its key, where a
        // credits org would be told to top up.
        let v = verdict(
            Byok,
            Consumable::Llm,
            &wallet("0"),
            billing(Byok, ClaudeCode, &[]),
            None,
        )
        .unwrap();
        assert_eq!(v.reason, Some(PauseReason::NoKeyConfigured));
        let v = verdict(
            Credits,
            Consumable::Llm,
            &wallet("0"),
            billing(Credits, ClaudeCode, &[]),
            None,
        )
        .unwrap();
        assert_eq!(v.reason, Some(PauseReason::CreditsExhausted));
    }

    #[test]
    fn a_deferred_org_is_keyed_only_with_the_key_its_runtime_needs() {
        use BillingMode::Deferred;
        // An Anthropic key does not make a Codex org keyed.
        let b = billing(Deferred, Runtime::Codex, &[Provider::Anthropic]);
        assert_eq!(b, Ok(Billing::Credits));
        let v = verdict(Deferred, Consumable::Llm, &wallet("0"), b, None).unwrap();
        assert_eq!(v.reason, Some(PauseReason::NoKeyConfigured));
        let v = verdict(Deferred, Consumable::Llm, &wallet("5"), b, None).unwrap();
        assert!(v.allowed);
        assert_eq!(
            billing(Deferred, Runtime::Codex, &[Provider::OpenAi]),
            Ok(Billing::ProviderKey)
        );
    }

    #[test]
    fn a_member_at_their_limit_may_not_run_and_holds_count() {
        let month = MemberMonth {
            spent: usd("0.60"),
            held: usd("0.40"),
            limit: Some(usd("1.00")),
        };
        let v = verdict(
            BillingMode::Credits,
            Consumable::Llm,
            &wallet("50"),
            Ok(Billing::Credits),
            Some(&month),
        )
        .unwrap();
        assert_eq!(v.reason, Some(PauseReason::MemberLimitReached));
        let under = MemberMonth {
            held: usd("0.39"),
            ..month
        };
        assert!(
            verdict(
                BillingMode::Credits,
                Consumable::Llm,
                &wallet("50"),
                Ok(Billing::Credits),
                Some(&under)
            )
            .unwrap()
            .allowed
        );
    }

    #[test]
    fn a_call_is_billed_as_it_ran_and_never_free_without_a_key_it_could_have_run_on() {
        use BillingMode::{Byok, Deferred};
        let (wallet, own) = (Billing::Credits, Billing::ProviderKey);
        let anthropic = [Provider::Anthropic];
        // Ran on credits; the org added its key before the report: still billed.
        assert_eq!(
            billing_of_call(
                Consumable::Llm,
                Deferred,
                Runtime::ClaudeCode,
                &anthropic,
                Some(wallet)
            ),
            wallet
        );
        // Ran on its own key, which is still there: never debited.
        assert_eq!(
            billing_of_call(Consumable::Llm, Byok, Runtime::ClaudeCode, &anthropic, Some(own)),
            own
        );
        // Says it ran on a key the org does not have (none, or another provider's): the
        // platform's key paid, so the wallet does.
        assert_eq!(
            billing_of_call(Consumable::Llm, Deferred, Runtime::ClaudeCode, &[], Some(own)),
            wallet
        );
        assert_eq!(
            billing_of_call(Consumable::Llm, Byok, Runtime::Codex, &anthropic, Some(own)),
            wallet
        );
        // A credits org pays whatever the runtime says.
        assert_eq!(
            billing_of_call(
                Consumable::Llm,
                BillingMode::Credits,
                Runtime::ClaudeCode,
                &anthropic,
                Some(own)
            ),
            wallet
        );
        // Not said: who would pay now, and the platform when nobody could.
        assert_eq!(
            billing_of_call(Consumable::Llm, Byok, Runtime::Codex, &[], None),
            wallet
        );
        assert_eq!(
            billing_of_call(Consumable::Llm, Deferred, Runtime::ClaudeCode, &anthropic, None),
            own
        );

        // Every mode, runtime, set of keys and claim: a call is off the wallet only when
        // the org is not a credits org, has the key its runtime needs, and the runtime
        // did not say credits.
        let modes = [BillingMode::Credits, Byok, Deferred];
        let claims = [None, Some(wallet), Some(own)];
        for mode in modes {
            for runtime in Runtime::ALL {
                for mask in 0..(1u8 << Provider::ALL.len()) {
                    let keys: Vec<Provider> = Provider::ALL
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, p)| *p)
                        .collect();
                    for said in claims {
                        let free = billing_of_call(Consumable::Llm, mode, runtime, &keys, said) == own;
                        let may_be_free =
                            mode != BillingMode::Credits && runtime.has_key(&keys) && said != Some(wallet);
                        assert_eq!(free, may_be_free, "{mode:?} {runtime:?} {keys:?} {said:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_provider_key_pays_for_model_calls_only() {
        use BillingMode::*;
        let anthropic = [Provider::Anthropic];
        for kind in Consumable::ALL.into_iter().filter(|k| !k.is_model_call()) {
            for mode in [Credits, Byok, Deferred] {
                // Whatever the org's keys and whatever the runtime says.
                assert_eq!(
                    billing_for(kind, mode, Runtime::ClaudeCode, &anthropic),
                    Ok(Billing::Credits)
                );
                let said = Some(Billing::ProviderKey);
                assert_eq!(
                    billing_of_call(kind, mode, Runtime::ClaudeCode, &anthropic, said),
                    Billing::Credits,
                    "{kind} {mode:?}"
                );
            }
            // At zero a credits org tops up; a byok or deferred org (its wallet stays
            // empty) needs credits, not a key.
            let b = billing_for(kind, Byok, Runtime::ClaudeCode, &anthropic);
            let v = verdict(Byok, kind, &wallet("0"), b, None).unwrap();
            assert_eq!(v.reason, Some(PauseReason::CreditsRequired), "{kind}");
            let v = verdict(Credits, kind, &wallet("0"), b, None).unwrap();
            assert_eq!(v.reason, Some(PauseReason::CreditsExhausted), "{kind}");
            assert!(verdict(Credits, kind, &wallet("0.01"), b, None).unwrap().allowed);
        }
        // The model call of the same byok org runs on its key at zero.
        let b = billing_for(Consumable::Llm, Byok, Runtime::ClaudeCode, &anthropic);
        assert!(
            verdict(Byok, Consumable::Llm, &wallet("0"), b, None)
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn the_key_rule_for_byok_runtimes() {
        use Runtime::*;
        assert_eq!(
            missing_byok_key(BillingMode::Byok, &[ClaudeCode, Codex], &[Provider::Anthropic]),
            Some((Codex, Provider::OpenAi))
        );
        assert_eq!(missing_byok_key(BillingMode::Byok, &[ClaudeCode], &[]), None);
        // OpenCode runs on its own key, or on an OpenRouter key brought under the old rule.
        assert_eq!(
            missing_byok_key(BillingMode::Byok, &[OpenCode], &[Provider::Google]),
            Some((OpenCode, Provider::OpenCode))
        );
        assert_eq!(
            missing_byok_key(BillingMode::Byok, &[OpenCode], &[Provider::OpenRouter]),
            None
        );
        assert_eq!(
            billing(BillingMode::Byok, OpenCode, &[Provider::OpenRouter]),
            Ok(Billing::ProviderKey)
        );
        assert_eq!(missing_byok_key(BillingMode::Credits, &[Codex], &[]), None);
    }
}
