//! Fee arithmetic in `U256` neuron: checked everywhere, never wraps.

use alloy_primitives::U256;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    #[error("fee overflows uint256: {tokens} tokens at {price} neuron each")]
    Overflow { tokens: u64, price: U256 },
    #[error("sum of fees overflows uint256")]
    SumOverflow,
    #[error("{cached} cached prompt tokens is more than the {input} prompt tokens")]
    CachedAboveInput { cached: u64, input: u64 },
}

/// Prices per token in neuron. In the registry these are ceilings; a receipt
/// carries the prices an answer was actually served at. `cached` is the
/// price of a prompt token the provider's prompt cache served (at most
/// `input`; a service without a cache discount lists `input` again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    pub input: U256,
    pub output: U256,
    /// Absent in data stored before the field existed: read as zero.
    #[serde(default)]
    pub cached: U256,
}

/// Token counts of one answer, as the model server reported them.
/// `cached_input_tokens` of the `input_tokens` came from its prompt cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cached_input_tokens: u64,
}

impl Usage {
    /// An answer none of whose prompt came from a cache.
    pub fn uncached(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            cached_input_tokens: 0,
        }
    }
}

impl Prices {
    /// Prices without a cache discount: a cached prompt token costs `input`.
    pub fn new(input: U256, output: U256) -> Self {
        Self {
            input,
            output,
            cached: input,
        }
    }

    /// These prices with cached prompt tokens at `cached`.
    pub fn with_cached(self, cached: U256) -> Self {
        Self { cached, ..self }
    }

    /// `(input_tokens - cached) * input + cached * cached_price +
    /// output_tokens * output`.
    pub fn fee(&self, usage: Usage) -> Result<U256, FeeError> {
        let part = |tokens: u64, price: U256| {
            price
                .checked_mul(U256::from(tokens))
                .ok_or(FeeError::Overflow { tokens, price })
        };
        let uncached = usage
            .input_tokens
            .checked_sub(usage.cached_input_tokens)
            .ok_or(FeeError::CachedAboveInput {
                cached: usage.cached_input_tokens,
                input: usage.input_tokens,
            })?;
        let sum = |a: U256, b: U256| a.checked_add(b).ok_or(FeeError::SumOverflow);
        sum(
            sum(
                part(uncached, self.input)?,
                part(usage.cached_input_tokens, self.cached)?,
            )?,
            part(usage.output_tokens, self.output)?,
        )
    }

    /// Whether all three prices are at or under `ceiling`'s.
    pub fn within(&self, ceiling: &Prices) -> bool {
        self.input <= ceiling.input
            && self.output <= ceiling.output
            && self.cached <= ceiling.cached
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
        Prices::new(self.input.max(self.cached), self.output)
            .fee(Usage::uncached(input_bound(body_len), max_output))
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
        assert_eq!(
            prices.fee(Usage::uncached(10, 3)).unwrap(),
            U256::from(35u64)
        );
        assert_eq!(prices.fee(Usage::default()).unwrap(), U256::ZERO);
    }

    #[test]
    fn cached_prompt_tokens_pay_the_cached_price() {
        let prices = Prices::new(U256::from(4u64), U256::from(5u64)).with_cached(U256::from(1u64));
        let usage = Usage {
            input_tokens: 10,
            output_tokens: 3,
            cached_input_tokens: 6,
        };
        assert_eq!(prices.fee(usage).unwrap(), U256::from(4 * 4 + 6 + 15u64));
        let impossible = Usage {
            cached_input_tokens: 11,
            ..usage
        };
        assert_eq!(
            prices.fee(impossible),
            Err(FeeError::CachedAboveInput {
                cached: 11,
                input: 10
            })
        );
        assert!(
            !prices
                .within(&Prices::new(U256::from(4u64), U256::from(5u64)).with_cached(U256::ZERO))
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let prices = Prices::new(U256::MAX, U256::ZERO);
        assert!(matches!(
            prices.fee(Usage::uncached(2, 0)),
            Err(FeeError::Overflow { tokens: 2, .. })
        ));
        let half = U256::MAX / U256::from(2u64) + U256::from(1u64);
        let both = Prices::new(half, half);
        assert_eq!(both.fee(Usage::uncached(1, 1)), Err(FeeError::SumOverflow));
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
