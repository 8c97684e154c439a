//! Exact US dollars.
//!
//! Precision: amounts carry at most [`SCALE`] (6) decimal places, a millionth of a dollar.
//! Input with more decimals is rejected, never silently rounded.
//!
//! Rounding rule, the only one in the system: a charge is computed exactly (cost × markup,
//! tokens × rate) and rounded once, half away from zero, to [`SCALE`] places by
//! [`Usd::round_charge`]. Sums and differences of amounts are exact and need no rounding.
//!
//! On the wire amounts are JSON strings ("12.50"); JSON numbers are refused because a
//! float has already lost exactness by the time it reaches us.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decimal places an amount may carry.
pub const SCALE: u32 = 6;

/// The largest single amount accepted from outside: one billion dollars. Keeps every sum a
/// wallet can reach far inside both `Decimal` and DynamoDB's 38-digit numbers.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount is empty")]
    Empty,
    #[error("amount must be a decimal string such as \"12.50\"")]
    NotADecimal,
    #[error("amount must be written without an exponent")]
    Exponent,
    #[error("amount has more than {SCALE} decimal places")]
    TooManyDecimals,
    #[error("amount must not be negative")]
    Negative,
    #[error("amount must be greater than zero")]
    Zero,
    #[error("amount exceeds the maximum of 1000000000")]
    TooLarge,
    #[error("arithmetic overflow")]
    Overflow,
    #[error("amount must be a JSON string, not a number")]
    NotAString,
    #[error("a card is charged in whole cents")]
    FractionOfACent,
}

/// A non-negative amount of US dollars with at most [`SCALE`] decimals.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(Decimal);

impl Usd {
    pub const ZERO: Usd = Usd(Decimal::ZERO);

    pub const fn from_whole_dollars(dollars: u32) -> Usd {
        Usd(Decimal::from_parts(dollars, 0, 0, false, 0))
    }

    /// Parses a plain decimal string: digits, optionally one `.` and more digits.
    /// No sign, exponent, whitespace, `NaN` or infinity.
    pub fn parse(s: &str) -> Result<Usd, MoneyError> {
        let d = parse_plain_decimal(s)?;
        Usd::try_from_decimal(d)
    }

    /// Accepts a decimal that already exists (e.g. read back from the store), under the
    /// same rules as parsing, except that the range check is the overflow guard only.
    pub fn try_from_decimal(d: Decimal) -> Result<Usd, MoneyError> {
        if d.is_sign_negative() && !d.is_zero() {
            return Err(MoneyError::Negative);
        }
        let d = d.normalize();
        if d.scale() > SCALE {
            return Err(MoneyError::TooManyDecimals);
        }
        if d > MAX_AMOUNT {
            return Err(MoneyError::TooLarge);
        }
        Ok(Usd(d.abs()))
    }

    /// Reads a stored balance. Balances are sums of amounts and may exceed [`MAX_AMOUNT`].
    pub fn from_stored(d: Decimal) -> Result<Usd, MoneyError> {
        if d.is_sign_negative() && !d.is_zero() {
            return Err(MoneyError::Negative);
        }
        let d = d.normalize();
        if d.scale() > SCALE {
            return Err(MoneyError::TooManyDecimals);
        }
        Ok(Usd(d.abs()))
    }

    /// The one rounding rule: an exactly computed charge, rounded half away from zero to
    /// [`SCALE`] places. A negative charge is an error, not a credit.
    pub fn round_charge(exact: Decimal) -> Result<Usd, MoneyError> {
        if exact.is_sign_negative() && !exact.is_zero() {
            return Err(MoneyError::Negative);
        }
        let rounded = exact.round_dp_with_strategy(SCALE, RoundingStrategy::MidpointAwayFromZero);
        Usd::from_stored(rounded)
    }

    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    pub fn checked_add(self, other: Usd) -> Result<Usd, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(|d| Usd(d.normalize()))
            .ok_or(MoneyError::Overflow)
    }

    /// `self` taken `n` times.
    pub fn checked_mul_u32(self, n: u32) -> Result<Usd, MoneyError> {
        self.0
            .checked_mul(Decimal::from(n))
            .map(|d| Usd(d.normalize()))
            .ok_or(MoneyError::Overflow)
    }

    /// `self - other`, refused when the result would be negative.
    pub fn checked_sub(self, other: Usd) -> Result<Usd, MoneyError> {
        if other > self {
            return Err(MoneyError::Negative);
        }
        Ok(Usd((self.0 - other.0).normalize()))
    }

    /// `self - other`, or zero when `other` is larger.
    pub fn saturating_sub(self, other: Usd) -> Usd {
        if other >= self {
            Usd::ZERO
        } else {
            Usd((self.0 - other.0).normalize())
        }
    }

    pub fn min(self, other: Usd) -> Usd {
        if self <= other { self } else { other }
    }

    /// The amount in cents, as a card is charged: refused unless it is whole cents. The
    /// one conversion from dollars to cents.
    pub fn to_cents(self) -> Result<i64, MoneyError> {
        let c = self
            .0
            .checked_mul(Decimal::ONE_HUNDRED)
            .ok_or(MoneyError::Overflow)?;
        if !c.fract().is_zero() {
            return Err(MoneyError::FractionOfACent);
        }
        i64::try_from(c.normalize()).map_err(|_| MoneyError::Overflow)
    }

    /// Cents as dollars (a Stripe amount): refused when negative.
    pub fn from_cents(cents: i64) -> Result<Usd, MoneyError> {
        if cents < 0 {
            return Err(MoneyError::Negative);
        }
        Usd::from_stored(Decimal::new(cents, 2))
    }

    /// The share `part / whole` of this amount (what `part` cents of a payment of `whole`
    /// cents stand for), rounded once by the charge rule, never more than the amount
    /// itself; zero for nothing. The one pro-rata rule of take-backs.
    pub fn pro_rata(self, part: i64, whole: i64) -> Result<Usd, MoneyError> {
        if part <= 0 || whole <= 0 {
            return Ok(Usd::ZERO);
        }
        let exact = self
            .0
            .checked_mul(Decimal::from(part))
            .and_then(|p| p.checked_div(Decimal::from(whole)))
            .ok_or(MoneyError::Overflow)?;
        Ok(Usd::round_charge(exact)?.min(self))
    }

    /// Signed difference `self - other`.
    pub fn delta_to(self, other: Usd) -> SignedUsd {
        SignedUsd((other.0 - self.0).normalize())
    }
}

impl FromStr for Usd {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Usd::parse(s)
    }
}

/// Shows at least two decimals ("10.00", "0.07", "0.01845"): how people read dollars.
impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_at_least_cents(self.0, f)
    }
}

impl fmt::Debug for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Usd({self})")
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = deserialize_amount_string(d)?;
        Usd::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount that must be greater than zero: what a debit or a credit moves.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PositiveUsd(Usd);

impl PositiveUsd {
    pub fn parse(s: &str) -> Result<PositiveUsd, MoneyError> {
        PositiveUsd::new(Usd::parse(s)?)
    }

    pub fn new(usd: Usd) -> Result<PositiveUsd, MoneyError> {
        if usd.is_zero() {
            Err(MoneyError::Zero)
        } else {
            Ok(PositiveUsd(usd))
        }
    }

    pub fn usd(self) -> Usd {
        self.0
    }
}

impl FromStr for PositiveUsd {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PositiveUsd::parse(s)
    }
}

impl fmt::Display for PositiveUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for PositiveUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PositiveUsd({})", self.0)
    }
}

impl Serialize for PositiveUsd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for PositiveUsd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = deserialize_amount_string(d)?;
        PositiveUsd::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A signed change of an amount: a ledger entry's effect on the balance.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SignedUsd(Decimal);

impl SignedUsd {
    pub const ZERO: SignedUsd = SignedUsd(Decimal::ZERO);

    pub fn credit(amount: Usd) -> SignedUsd {
        SignedUsd(amount.as_decimal())
    }

    pub fn debit(amount: Usd) -> SignedUsd {
        SignedUsd(-amount.as_decimal())
    }

    pub fn from_stored(d: Decimal) -> Result<SignedUsd, MoneyError> {
        let d = d.normalize();
        if d.scale() > SCALE {
            return Err(MoneyError::TooManyDecimals);
        }
        Ok(SignedUsd(if d.is_zero() { Decimal::ZERO } else { d }))
    }

    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    pub fn magnitude(self) -> Usd {
        Usd(self.0.abs())
    }

    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    pub fn checked_add(self, other: SignedUsd) -> Result<SignedUsd, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(|d| SignedUsd(d.normalize()))
            .ok_or(MoneyError::Overflow)
    }

    /// Applies this change to a non-negative amount; refused if the result is negative.
    pub fn apply_to(self, amount: Usd) -> Result<Usd, MoneyError> {
        let d = amount.0.checked_add(self.0).ok_or(MoneyError::Overflow)?;
        Usd::from_stored(d)
    }
}

impl fmt::Display for SignedUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_at_least_cents(self.0, f)
    }
}

impl fmt::Debug for SignedUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedUsd({self})")
    }
}

impl Serialize for SignedUsd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SignedUsd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = deserialize_amount_string(d)?;
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.as_str()),
        };
        let magnitude = Usd::parse(digits).map_err(serde::de::Error::custom)?;
        Ok(if negative {
            SignedUsd::debit(magnitude)
        } else {
            SignedUsd::credit(magnitude)
        })
    }
}

fn fmt_at_least_cents(d: Decimal, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut d = d.normalize();
    if d.scale() < 2 {
        d.rescale(2);
    }
    write!(f, "{d}")
}

/// Strict plain-decimal grammar, checked before `Decimal` sees the text so that
/// exponents, signs, `NaN` and friends are refused with a precise error.
fn parse_plain_decimal(s: &str) -> Result<Decimal, MoneyError> {
    if s.is_empty() {
        return Err(MoneyError::Empty);
    }
    let unsigned = match s.strip_prefix('-') {
        Some(rest) => {
            // Still say "negative" for "-0.5", but not for "-abc".
            parse_plain_decimal(rest)?;
            return Err(MoneyError::Negative);
        }
        None => s,
    };
    if unsigned.contains(['e', 'E'])
        && unsigned
            .chars()
            .all(|c| c.is_ascii_digit() || ".eE+-".contains(c))
    {
        return Err(MoneyError::Exponent);
    }
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits_only = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits_only(int) || frac.is_some_and(|f| !digits_only(f)) {
        return Err(MoneyError::NotADecimal);
    }
    if frac.is_some_and(|f| f.trim_end_matches('0').len() > SCALE as usize) {
        return Err(MoneyError::TooManyDecimals);
    }
    // Ten integer digits already exceed MAX_AMOUNT; leading zeros aside, refuse early so
    // Decimal never sees a 40-digit number.
    if int.trim_start_matches('0').len() > 10 {
        return Err(MoneyError::TooLarge);
    }
    Decimal::from_str_exact(unsigned).map_err(|_| MoneyError::NotADecimal)
}

pub(crate) fn deserialize_amount_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a decimal string such as \"12.50\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<String, E> {
            Err(E::custom(MoneyError::NotAString))
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<String, E> {
            Err(E::custom(MoneyError::NotAString))
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<String, E> {
            Err(E::custom(MoneyError::NotAString))
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::dec;

    #[test]
    fn parses_plain_decimals_exactly() {
        assert_eq!(Usd::parse("12.50").unwrap().as_decimal(), dec!(12.5));
        assert_eq!(Usd::parse("0.000001").unwrap().as_decimal(), dec!(0.000001));
        assert_eq!(Usd::parse("1000000000").unwrap().as_decimal(), MAX_AMOUNT);
        assert_eq!(Usd::parse("0.1200000").unwrap().as_decimal(), dec!(0.12));
        assert_eq!(Usd::parse("0").unwrap(), Usd::ZERO);
    }

    #[test]
    fn refuses_what_is_not_a_plain_amount() {
        let cases = [
            ("", MoneyError::Empty),
            ("-1", MoneyError::Negative),
            ("-0.01", MoneyError::Negative),
            ("NaN", MoneyError::NotADecimal),
            ("inf", MoneyError::NotADecimal),
            ("Infinity", MoneyError::NotADecimal),
            ("1e400", MoneyError::Exponent),
            ("1E2", MoneyError::Exponent),
            ("1.5e-3", MoneyError::Exponent),
            ("0.0000001", MoneyError::TooManyDecimals),
            ("1000000000.01", MoneyError::TooLarge),
            ("99999999999999999999999999999999999999", MoneyError::TooLarge),
            (" 1", MoneyError::NotADecimal),
            ("1 ", MoneyError::NotADecimal),
            ("+1", MoneyError::NotADecimal),
            ("1.", MoneyError::NotADecimal),
            (".5", MoneyError::NotADecimal),
            ("1,5", MoneyError::NotADecimal),
            ("0x10", MoneyError::NotADecimal),
            ("１", MoneyError::NotADecimal),
        ];
        for (input, want) in cases {
            assert_eq!(Usd::parse(input), Err(want.clone()), "input {input:?}");
        }
        assert_eq!(PositiveUsd::parse("0"), Err(MoneyError::Zero));
        assert_eq!(PositiveUsd::parse("0.000"), Err(MoneyError::Zero));
    }

    #[test]
    fn json_numbers_are_refused_strings_accepted() {
        assert!(serde_json::from_str::<Usd>("12.5").is_err());
        assert!(serde_json::from_str::<Usd>("12").is_err());
        assert!(serde_json::from_str::<PositiveUsd>("1e400").is_err());
        assert_eq!(
            serde_json::from_str::<Usd>("\"12.5\"").unwrap(),
            Usd::parse("12.5").unwrap()
        );
        assert_eq!(
            serde_json::to_string(&Usd::parse("12.5").unwrap()).unwrap(),
            "\"12.50\""
        );
        assert_eq!(
            serde_json::to_string(&Usd::parse("0.01845").unwrap()).unwrap(),
            "\"0.01845\""
        );
        let debit: SignedUsd = serde_json::from_str("\"-0.07\"").unwrap();
        assert_eq!(debit, SignedUsd::debit(Usd::parse("0.07").unwrap()));
    }

    #[test]
    fn a_charge_rounds_half_away_from_zero_once() {
        assert_eq!(
            Usd::round_charge(dec!(0.0123) * dec!(1.5)).unwrap().to_string(),
            "0.01845"
        );
        assert_eq!(
            Usd::round_charge(dec!(0.0000005)).unwrap().to_string(),
            "0.000001"
        );
        assert_eq!(Usd::round_charge(dec!(0.00000049)).unwrap().to_string(), "0.00");
        assert_eq!(Usd::round_charge(dec!(-0.1)), Err(MoneyError::Negative));
    }

    fn usd() -> impl Strategy<Value = Usd> {
        (0i64..=1_000_000_000_000_000)
            .prop_map(|micros| Usd::try_from_decimal(Decimal::new(micros, SCALE)).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn display_parses_back_to_the_same_amount(a in usd()) {
            prop_assert_eq!(Usd::parse(&a.to_string()).unwrap(), a);
        }

        #[test]
        fn addition_is_exact_and_commutative(a in usd(), b in usd()) {
            let ab = a.checked_add(b).unwrap();
            prop_assert_eq!(ab, b.checked_add(a).unwrap());
            prop_assert_eq!(ab.as_decimal(), a.as_decimal() + b.as_decimal());
            prop_assert_eq!(ab.checked_sub(b).unwrap(), a);
        }

        #[test]
        fn subtraction_never_goes_negative(a in usd(), b in usd()) {
            match a.checked_sub(b) {
                Ok(d) => { prop_assert!(b <= a); prop_assert_eq!(d.checked_add(b).unwrap(), a); }
                Err(e) => { prop_assert!(b > a); prop_assert_eq!(e, MoneyError::Negative); }
            }
            prop_assert_eq!(a.saturating_sub(b).is_zero(), b >= a);
        }

        #[test]
        fn cents_round_trip_and_fractions_of_a_cent_are_refused(cents in 0i64..=100_000_000_000) {
            let usd = Usd::from_cents(cents).unwrap();
            prop_assert_eq!(usd.to_cents().unwrap(), cents);
            let odd = usd.checked_add(Usd::parse("0.001").unwrap()).unwrap();
            prop_assert_eq!(odd.to_cents(), Err(MoneyError::FractionOfACent));
        }

        #[test]
        fn pro_rata_shares_stay_within_the_whole_and_a_full_share_is_the_whole(
            credits in usd(), whole in 1i64..=10_000_000, cuts in proptest::collection::vec(1i64..=10_000_000, 1..6),
        ) {
            prop_assert_eq!(credits.pro_rata(whole, whole).unwrap(), credits);
            prop_assert!(credits.pro_rata(0, whole).unwrap().is_zero());
            // Refunds of parts of the payment: each share at most the whole, more cents
            // never a smaller share, and all of them within rounding of the whole.
            let mut left = whole;
            let mut total = Usd::ZERO;
            for cut in cuts {
                let part = cut.min(left);
                left -= part;
                let share = credits.pro_rata(part, whole).unwrap();
                prop_assert!(share <= credits);
                prop_assert!(credits.pro_rata(part + 1, whole).unwrap() >= share);
                total = total.checked_add(share).unwrap();
            }
            let all = credits.pro_rata(whole - left, whole).unwrap();
            let slack = Decimal::new(5, SCALE + 1) * Decimal::from(6);
            prop_assert!((total.as_decimal() - all.as_decimal()).abs() <= slack);
        }

        #[test]
        fn signed_deltas_round_trip(a in usd(), b in usd()) {
            prop_assert_eq!(a.delta_to(b).apply_to(a).unwrap(), b);
        }

        #[test]
        fn rounding_moves_a_charge_by_at_most_half_a_unit(micros in 0i64..1_000_000_000_000, extra in 0u32..10) {
            let exact = Decimal::new(micros, SCALE + extra);
            let rounded = Usd::round_charge(exact).unwrap().as_decimal();
            prop_assert!((rounded - exact).abs() <= Decimal::new(5, SCALE + 1));
            prop_assert!(rounded.scale() <= SCALE);
        }

        #[test]
        fn arbitrary_text_never_panics_and_parses_only_plain_decimals(s in "\\PC{0,24}") {
            if let Ok(a) = Usd::parse(&s) {
                prop_assert!(s.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
                prop_assert!(a.as_decimal() <= MAX_AMOUNT);
            }
        }
    }
}
