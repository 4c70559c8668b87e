//! Exact fixed-point arithmetic on the demo market's 8-decimal quantity strings.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A non-negative decimal with 8 fraction digits, held as an integer count of `1e-8` units.
///
/// Displays and serializes (as a JSON string) with exactly 8 decimals, e.g. `"0.01500000"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fixed8(u64);

impl Fixed8 {
    /// Units per whole: `10^8`.
    pub const SCALE: u64 = 100_000_000;
    /// Number of fraction digits.
    pub const DECIMALS: usize = 8;

    /// The value `units * 1e-8`.
    #[must_use]
    pub const fn from_units(units: u64) -> Self {
        Self(units)
    }

    /// The value in `1e-8` units.
    #[must_use]
    pub const fn units(self) -> u64 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    /// `self - other`, or `None` when `other` is larger.
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self)
    }

    /// `self / other` rounded half up to 8 decimals, or `None` when `other` is zero or the
    /// quotient is too large.
    pub fn checked_div(self, other: Self) -> Option<Self> {
        if other.0 == 0 {
            return None;
        }
        let (num, den) = (u128::from(self.0), u128::from(other.0));
        let scaled = num * u128::from(Self::SCALE);
        let quotient = (scaled + den / 2) / den;
        u64::try_from(quotient).ok().map(Self)
    }
}

/// Why a string is not a valid [`Fixed8`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFixed8Error {
    input: String,
    reason: &'static str,
}

impl fmt::Display for ParseFixed8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid decimal {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for ParseFixed8Error {}

impl FromStr for Fixed8 {
    type Err = ParseFixed8Error;

    /// Parses `digits[.digits]` with at most 8 fraction digits; no sign, exponent or spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseFixed8Error {
            input: s.to_owned(),
            reason,
        };
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() || (frac.is_empty() && s.ends_with('.')) {
            return Err(err("expected digits on both sides of the point"));
        }
        if frac.len() > Self::DECIMALS {
            return Err(err("more than 8 decimals"));
        }
        let whole = digits(int).ok_or_else(|| err("not a plain decimal number"))?;
        let part = digits(frac).ok_or_else(|| err("not a plain decimal number"))?;
        // `frac` has at most 8 digits, so `part * 10^(8 - len)` < 10^8.
        let part = part * POW10[Self::DECIMALS - frac.len()];
        whole
            .checked_mul(Self::SCALE)
            .and_then(|units| units.checked_add(part))
            .map(Self)
            .ok_or_else(|| err("too large"))
    }
}

/// `10^i` for `i` in `0..=8`.
const POW10: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The value of an ASCII digit string (`0` when empty), or `None` for a non-digit or overflow.
fn digits(s: &str) -> Option<u64> {
    s.bytes().try_fold(0u64, |acc, b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

impl fmt::Display for Fixed8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:08}", self.0 / Self::SCALE, self.0 % Self::SCALE)
    }
}

impl Serialize for Fixed8 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `decimal` without the trailing zeros of its fraction, nor the point when no fraction digit
/// remains: `"67000.01000000"` → `"67000.01"`, `"67000.00000000"` → `"67000"`. A string without a
/// point is returned whole (`"100"` stays `"100"`).
#[must_use]
pub fn trim_zeros(decimal: &str) -> &str {
    if !decimal.contains('.') {
        return decimal;
    }
    let trimmed = decimal.trim_end_matches('0');
    trimmed.strip_suffix('.').unwrap_or(trimmed)
}

#[cfg(test)]
mod tests {
    use super::{trim_zeros, Fixed8};

    fn parse(s: &str) -> Fixed8 {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_8_decimals() {
        assert_eq!(parse("0.01200000").units(), 1_200_000);
        assert_eq!(parse("67000.01000000").units(), 6_700_001_000_000);
        assert_eq!(parse("1.5").to_string(), "1.50000000");
        assert_eq!(parse("7").to_string(), "7.00000000");
        assert_eq!(parse("0.00000001").to_string(), "0.00000001");
        assert_eq!(Fixed8::default().to_string(), "0.00000000");
    }

    #[test]
    fn sums_exactly() {
        // 0.1 + 0.2 is not 0.3 in floating point.
        let sum = parse("0.10000000")
            .checked_add(parse("0.20000000"))
            .unwrap();
        assert_eq!(sum.to_string(), "0.30000000");
        let max = Fixed8::from_units(u64::MAX);
        assert_eq!(max.checked_add(parse("0.00000001")), None);
    }

    #[test]
    fn subtracts_and_divides() {
        assert_eq!(
            parse("0.5").checked_sub(parse("0.2")).unwrap().to_string(),
            "0.30000000"
        );
        assert_eq!(parse("0.2").checked_sub(parse("0.5")), None);
        let average = |cost: &str, qty: &str| parse(cost).checked_div(parse(qty));
        assert_eq!(average("804.00024", "0.012").unwrap(), parse("67000.02"));
        assert_eq!(average("1", "3").unwrap().to_string(), "0.33333333");
        assert_eq!(average("2", "3").unwrap().to_string(), "0.66666667");
        assert_eq!(average("1", "0"), None);
        assert_eq!(average("100000000000", "0.00000001"), None);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            ".",
            "1.",
            ".5",
            "-1",
            "+1",
            "1e3",
            " 1",
            "1.000000001",
            "1.2.3",
            "abc",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Fixed8>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn serializes_as_json_string() {
        assert_eq!(
            serde_json::to_string(&parse("3.2")).unwrap(),
            "\"3.20000000\""
        );
    }

    #[test]
    fn trims_trailing_zeros() {
        for (input, trimmed) in [
            ("67000.01000000", "67000.01"),
            ("67000.00000000", "67000"),
            ("0.01200000", "0.012"),
            ("0.00000000", "0"),
            ("0.00000001", "0.00000001"),
            ("1.5", "1.5"),
            ("100", "100"),
            ("10.", "10"),
        ] {
            assert_eq!(trim_zeros(input), trimmed, "{input}");
        }
    }
}
