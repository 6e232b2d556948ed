//! Money as the API counts it: an integer number of nanos (1 USD =
//! 1,000,000,000 nanos), printed as USD and parsed from USD text without
//! ever going through a float.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Nanos in one US dollar.
pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// An amount of money: a signed count of nanos. Displays as USD with at
/// least two decimals and as many more as it needs (`$12.50`,
/// `$0.000000001`, `-$3.00`); serialises as the integer count of nanos.
///
/// ```
/// use uncensored::Money;
///
/// let price: Money = "0.04".parse().unwrap();
/// assert_eq!(price.nanos(), 40_000_000);
/// assert_eq!(price.checked_mul(3).unwrap().to_string(), "$0.12");
/// assert_eq!(Money::from_nanos(1_500).to_string(), "$0.0000015");
/// assert!("0.1234567891".parse::<Money>().is_err(), "finer than a nano");
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money {
    nanos: i64,
}

/// Why a USD amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a USD amount: {problem} (write it like 12.50, 0.004 or $3)")]
pub struct MoneyParseError {
    /// The text, shortened to 40 characters.
    pub text: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl Money {
    /// Nothing.
    pub const ZERO: Money = Money { nanos: 0 };
    /// The largest amount.
    pub const MAX: Money = Money { nanos: i64::MAX };

    /// `nanos` nanos.
    pub const fn from_nanos(nanos: i64) -> Self {
        Self { nanos }
    }

    /// The count of nanos.
    pub const fn nanos(self) -> i64 {
        self.nanos
    }

    /// Whole dollars, or `None` when that does not fit.
    pub const fn from_usd(dollars: i64) -> Option<Self> {
        match dollars.checked_mul(NANOS_PER_USD) {
            Some(nanos) => Some(Self { nanos }),
            None => None,
        }
    }

    /// Whether the amount is below zero.
    pub const fn is_negative(self) -> bool {
        self.nanos < 0
    }

    /// `self + other`, or `None` on overflow.
    pub const fn checked_add(self, other: Money) -> Option<Money> {
        match self.nanos.checked_add(other.nanos) {
            Some(nanos) => Some(Money { nanos }),
            None => None,
        }
    }

    /// `self - other`, or `None` on overflow.
    pub const fn checked_sub(self, other: Money) -> Option<Money> {
        match self.nanos.checked_sub(other.nanos) {
            Some(nanos) => Some(Money { nanos }),
            None => None,
        }
    }

    /// `self × count` (the price of `count` items), or `None` on overflow.
    pub fn checked_mul(self, count: u64) -> Option<Money> {
        let count = i64::try_from(count).ok()?;
        self.nanos.checked_mul(count).map(Money::from_nanos)
    }

    /// `self + other`, stopping at the bounds.
    pub const fn saturating_add(self, other: Money) -> Money {
        Money {
            nanos: self.nanos.saturating_add(other.nanos),
        }
    }

    /// `self - other`, stopping at the bounds.
    pub const fn saturating_sub(self, other: Money) -> Money {
        Money {
            nanos: self.nanos.saturating_sub(other.nanos),
        }
    }

    /// Reads a USD amount: an optional `-`, an optional `$`, digits, and at
    /// most nine decimals (`12`, `12.5`, `$0.004`, `-1.25`), in integers.
    pub fn parse_usd(text: &str) -> Result<Money, MoneyParseError> {
        let fail = |problem| MoneyParseError {
            text: text.chars().take(40).collect(),
            problem,
        };
        let trimmed = text.trim();
        let (negative, rest) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let rest = rest.strip_prefix('$').unwrap_or(rest);
        let (whole, fraction) = rest.split_once('.').unwrap_or((rest, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(fail("no digits"));
        }
        if !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return Err(fail("only digits and one decimal point are allowed"));
        }
        if fraction.len() > 9 {
            return Err(fail("more than nine decimals is finer than a nano"));
        }
        let too_large = || fail("too large");
        let dollars: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let mut nanos_part: i64 = 0;
        for (place, digit) in fraction.bytes().enumerate() {
            nanos_part += i64::from(digit - b'0') * 10_i64.pow(8 - place as u32);
        }
        let magnitude = dollars
            .checked_mul(NANOS_PER_USD)
            .and_then(|n| n.checked_add(nanos_part))
            .ok_or_else(too_large)?;
        Ok(Money::from_nanos(if negative {
            -magnitude
        } else {
            magnitude
        }))
    }
}

impl FromStr for Money {
    type Err = MoneyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Money::parse_usd(text)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.nanos.unsigned_abs();
        let per = NANOS_PER_USD as u64;
        let (dollars, nanos) = (magnitude / per, magnitude % per);
        let mut fraction = format!("{nanos:09}");
        while fraction.len() > 2 && fraction.ends_with('0') {
            fraction.pop();
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        write!(f, "{sign}${dollars}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_usd_with_as_many_decimals_as_it_needs() {
        for (nanos, shown) in [
            (0, "$0.00"),
            (12_500_000_000, "$12.50"),
            (40_000_000, "$0.04"),
            (1, "$0.000000001"),
            (-3_000_000_000, "-$3.00"),
            (i64::MIN, "-$9223372036.854775808"),
            (i64::MAX, "$9223372036.854775807"),
        ] {
            assert_eq!(Money::from_nanos(nanos).to_string(), shown);
        }
    }

    #[test]
    fn parses_usd_exactly_and_round_trips_what_it_prints() {
        for (text, nanos) in [
            ("12", 12_000_000_000),
            ("12.5", 12_500_000_000),
            ("$0.004", 4_000_000),
            (" -1.25 ", -1_250_000_000),
            (".5", 500_000_000),
            ("0.000000001", 1),
            // A float would make this 0.30000000000000004.
            ("0.3", 300_000_000),
        ] {
            assert_eq!(Money::parse_usd(text).unwrap().nanos(), nanos, "{text}");
        }
        for nanos in [0, 1, 40_000_000, -7, i64::MAX, i64::MIN + 1] {
            let money = Money::from_nanos(nanos);
            assert_eq!(money.to_string().parse::<Money>().unwrap(), money);
        }
        for bad in [
            "",
            "$",
            ".",
            "1.2.3",
            "1e3",
            "0.1234567891",
            "abc",
            "99999999999",
        ] {
            assert!(Money::parse_usd(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        let cent = Money::from_nanos(10_000_000);
        assert_eq!(cent.checked_mul(100), Money::from_usd(1));
        assert_eq!(Money::MAX.checked_add(cent), None);
        assert_eq!(Money::MAX.checked_mul(2), None);
        assert_eq!(Money::MAX.saturating_add(cent), Money::MAX);
        assert_eq!(serde_json::to_string(&cent).unwrap(), "10000000");
    }
}
