//! Fee arithmetic in `U256` neuron: checked everywhere, never wraps.

use alloy_primitives::U256;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    #[error("fee overflows uint256: {tokens} tokens at {price} neuron each")]
    Overflow { tokens: u64, price: U256 },
    #[error("sum of fees overflows uint256")]
    SumOverflow,
}

/// Prices per token in neuron. In the registry these are ceilings; a receipt
/// carries the prices an answer was actually served at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    pub input: U256,
    pub output: U256,
}

/// Token counts of one answer, as the model server reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Prices {
    pub fn new(input: U256, output: U256) -> Self {
        Self { input, output }
    }

    /// `input_tokens * input + output_tokens * output`.
    pub fn fee(&self, usage: Usage) -> Result<U256, FeeError> {
        let part = |tokens: u64, price: U256| {
            price
                .checked_mul(U256::from(tokens))
                .ok_or(FeeError::Overflow { tokens, price })
        };
        part(usage.input_tokens, self.input)?
            .checked_add(part(usage.output_tokens, self.output)?)
            .ok_or(FeeError::SumOverflow)
    }

    /// Whether both prices are at or under `ceiling`'s.
    pub fn within(&self, ceiling: &Prices) -> bool {
        self.input <= ceiling.input && self.output <= ceiling.output
    }
}

/// Upper bound on the input tokens of a body of `body_len` bytes: a token is
/// at least one byte of the JSON it came in, plus room for the chat
/// template's own tokens.
pub fn input_bound(body_len: usize) -> u64 {
    body_len as u64 + 256
}

impl Prices {
    /// The most a request of `body_len` bytes answered with at most
    /// `max_output` tokens can cost at these prices: what the broker reserves
    /// against the escrow and the gateway holds against an API key.
    pub fn worst_case(&self, body_len: usize, max_output: u64) -> U256 {
        self.fee(Usage {
            input_tokens: input_bound(body_len),
            output_tokens: max_output,
        })
        .unwrap_or(U256::MAX)
    }
}

/// `a + b`, or an error instead of wrapping.
pub fn add(a: U256, b: U256) -> Result<U256, FeeError> {
    a.checked_add(b).ok_or(FeeError::SumOverflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_is_tokens_times_prices() {
        let prices = Prices::new(U256::from(2u64), U256::from(5u64));
        let usage = Usage {
            input_tokens: 10,
            output_tokens: 3,
        };
        assert_eq!(prices.fee(usage).unwrap(), U256::from(35u64));
        assert_eq!(prices.fee(Usage::default()).unwrap(), U256::ZERO);
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let prices = Prices::new(U256::MAX, U256::ZERO);
        let usage = Usage {
            input_tokens: 2,
            output_tokens: 0,
        };
        assert!(matches!(
            prices.fee(usage),
            Err(FeeError::Overflow { tokens: 2, .. })
        ));
        let half = U256::MAX / U256::from(2u64) + U256::from(1u64);
        let both = Prices::new(half, half);
        let one_each = Usage {
            input_tokens: 1,
            output_tokens: 1,
        };
        assert_eq!(both.fee(one_each), Err(FeeError::SumOverflow));
        assert_eq!(add(U256::MAX, U256::from(1u64)), Err(FeeError::SumOverflow));
    }

    #[test]
    fn within_ceiling() {
        let ceiling = Prices::new(U256::from(2u64), U256::from(5u64));
        assert!(Prices::new(U256::from(2u64), U256::from(4u64)).within(&ceiling));
        assert!(!Prices::new(U256::from(3u64), U256::from(4u64)).within(&ceiling));
        assert!(!Prices::new(U256::from(1u64), U256::from(6u64)).within(&ceiling));
    }
}
