//! Decimal token amounts ("1.5" 0G) <-> `U256` neuron (1 0G = 1e18 neuron).
//! Only the edges (CLI, config, JSON for people) use the decimal form.

use alloy_primitives::U256;

/// Decimals of the native token: 1 0G is 10^18 neuron.
pub const DECIMALS: usize = 18;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty: expected a decimal number of 0G such as \"1.5\"")]
    Empty,
    #[error(
        "amount {0:?} is not a decimal number: expected digits with at most one '.', such as \"1.5\""
    )]
    NotDecimal(String),
    #[error(
        "amount {0:?} has more than 18 decimal places: the smallest unit is 0.000000000000000001 (one neuron)"
    )]
    TooPrecise(String),
    #[error("amount {0:?} is larger than a uint256 can hold")]
    TooLarge(String),
}

/// Parses a decimal amount of 0G ("1", "1.5", ".25", "0.000000000000000001") into neuron.
pub fn parse_amount(text: &str) -> Result<U256, AmountError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !all_digits(whole) || !all_digits(frac) {
        return Err(AmountError::NotDecimal(text.to_owned()));
    }
    if frac.len() > DECIMALS {
        return Err(AmountError::TooPrecise(text.to_owned()));
    }
    let digits = format!("{whole}{frac:0<DECIMALS$}");
    U256::from_str_radix(&digits, 10).map_err(|_| AmountError::TooLarge(text.to_owned()))
}

/// Prints neuron as a decimal amount of 0G without trailing zeros ("1.5", "0", "12").
pub fn format_amount(neuron: U256) -> String {
    let digits = neuron.to_string();
    let padded = format!("{digits:0>width$}", width = DECIMALS + 1);
    let (whole, frac) = padded.split_at(padded.len() - DECIMALS);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole.to_owned()
    } else {
        format!("{whole}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neuron(s: &str) -> U256 {
        U256::from_str_radix(s, 10).unwrap()
    }

    #[test]
    fn parses_and_prints_round_trip() {
        for (text, n) in [
            ("1", "1000000000000000000"),
            ("1.5", "1500000000000000000"),
            ("0.000000000000000001", "1"),
            ("0", "0"),
            ("123456.789", "123456789000000000000000"),
        ] {
            assert_eq!(parse_amount(text).unwrap(), neuron(n), "{text}");
            assert_eq!(format_amount(neuron(n)), text);
        }
        assert_eq!(parse_amount(".25").unwrap(), neuron("250000000000000000"));
        assert_eq!(parse_amount("2.").unwrap(), neuron("2000000000000000000"));
        assert_eq!(parse_amount(" 3 ").unwrap(), neuron("3000000000000000000"));
    }

    #[test]
    fn rejects_what_is_not_an_amount() {
        assert_eq!(parse_amount(""), Err(AmountError::Empty));
        for bad in [".", "-1", "1e18", "1.2.3", "abc", "0x10", "1,5", "+1"] {
            assert!(
                matches!(parse_amount(bad), Err(AmountError::NotDecimal(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_amount("0.0000000000000000001"),
            Err(AmountError::TooPrecise(_))
        ));
        let huge = "9".repeat(80);
        assert!(matches!(parse_amount(&huge), Err(AmountError::TooLarge(_))));
    }

    #[test]
    fn prints_the_largest_value() {
        let text = format_amount(U256::MAX);
        assert_eq!(parse_amount(&text).unwrap(), U256::MAX);
    }
}
