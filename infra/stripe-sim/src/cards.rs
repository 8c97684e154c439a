//! Stripe's test payment methods. Like Stripe, the simulator accepts these tokens wherever a
//! PaymentMethod id is expected and turns each use into a new `pm_...` that behaves as the
//! token says, on every later charge too.

/// What happens when a card is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeds,
    /// Declined by the issuer: `card_error`, code `card_declined`, with this decline code.
    Declines {
        decline_code: &'static str,
        message: &'static str,
    },
    /// 3-D Secure on every charge: `requires_action` on session, `authentication_required`
    /// off session (Stripe's 4000 0027 6000 3184).
    RequiresAuthentication,
}

#[derive(Debug, PartialEq, Eq)]
pub struct TestCard {
    pub token: &'static str,
    pub brand: &'static str,
    pub last4: &'static str,
    pub fingerprint: &'static str,
    pub outcome: Outcome,
}

pub const TEST_CARDS: &[TestCard] = &[
    TestCard {
        token: "pm_card_visa",
        brand: "visa",
        last4: "4242",
        fingerprint: "simVisa4242xxxxx",
        outcome: Outcome::Succeeds,
    },
    TestCard {
        token: "pm_card_mastercard",
        brand: "mastercard",
        last4: "4444",
        fingerprint: "simMc4444xxxxxxx",
        outcome: Outcome::Succeeds,
    },
    TestCard {
        token: "pm_card_chargeDeclined",
        brand: "visa",
        last4: "0002",
        fingerprint: "simVisa0002xxxxx",
        outcome: Outcome::Declines {
            decline_code: "generic_decline",
            message: "Your card was declined.",
        },
    },
    TestCard {
        token: "pm_card_chargeDeclinedInsufficientFunds",
        brand: "visa",
        last4: "9995",
        fingerprint: "simVisa9995xxxxx",
        outcome: Outcome::Declines {
            decline_code: "insufficient_funds",
            message: "Your card has insufficient funds.",
        },
    },
    TestCard {
        token: "pm_card_authenticationRequired",
        brand: "visa",
        last4: "3184",
        fingerprint: "simVisa3184xxxxx",
        outcome: Outcome::RequiresAuthentication,
    },
];

pub const AUTHENTICATION_REQUIRED_MESSAGE: &str =
    "Your card was declined. This transaction requires authentication.";

pub fn test_card(token: &str) -> Option<&'static TestCard> {
    TEST_CARDS.iter().find(|card| card.token == token)
}
