//! Bad amounts are refused with a typed error. (That no handler writes on bad input is
//! `tests/tests/bad_input_routes.rs`, over every documented route.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent_credits_domain::{MoneyError, PositiveUsd};

#[test]
fn each_bad_amount_has_its_own_typed_error() {
    let cases = [
        ("-1.00", MoneyError::Negative),
        ("0", MoneyError::Zero),
        ("0.00", MoneyError::Zero),
        ("NaN", MoneyError::NotADecimal),
        ("inf", MoneyError::NotADecimal),
        ("1e400", MoneyError::Exponent),
        ("0.0000001", MoneyError::TooManyDecimals),
        ("12.345.6", MoneyError::NotADecimal),
        ("", MoneyError::Empty),
    ];
    for (input, want) in cases {
        assert_eq!(PositiveUsd::parse(input), Err(want.clone()), "{input:?}");
    }
}
