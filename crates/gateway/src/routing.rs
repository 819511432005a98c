//! Routing per request as OpenRouter users write it: the body's `provider`
//! object (`order`, `only`, `ignore`, `allow_fallbacks`,
//! `require_parameters`, `sort`, `max_price` per million tokens, and our own
//! `verifiability`). Providers are named by address, prices in 0G. The
//! gateway strips the object before the request goes to a provider.

use crate::limits::Narrowing;
use serde::Deserialize;
use serde_json::Value;
use zg_client::ClientError;
use zg_core::{Address, Service, U256, parse_amount};

/// The body's `provider` object.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProviderPrefs {
    /// Providers to try first, in this order.
    #[serde(default)]
    pub order: Vec<Address>,
    #[serde(default)]
    pub only: Vec<Address>,
    #[serde(default)]
    pub ignore: Vec<Address>,
    /// With `false`: only the providers of `order` (or, without one, the
    /// best ranked) are tried.
    pub allow_fallbacks: Option<bool>,
    /// Only providers that honour every parameter of the request, the
    /// sampling ones included.
    #[serde(default)]
    pub require_parameters: bool,
    pub sort: Option<Sort>,
    pub max_price: Option<MaxPrice>,
    /// A proof method the answering service must have registered.
    pub verifiability: Option<String>,
}

/// What the ranking orders by, instead of its blend of price and latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// The estimated fee of the request, cheapest first.
    Price,
    /// Measured time to the first byte, fastest first.
    Latency,
    /// Measured output tokens per second, highest first.
    Throughput,
}

/// Highest prices, in 0G per million tokens (a number or a decimal string).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MaxPrice {
    pub prompt: Option<Value>,
    pub completion: Option<Value>,
}

impl ProviderPrefs {
    /// Reads the body's `provider` value.
    pub(crate) fn parse(value: Value) -> Result<Self, ClientError> {
        serde_json::from_value(value).map_err(|e| {
            ClientError::InvalidRequest(format!(
                "\"provider\": {e} (providers are addresses, 0x and 40 hex digits; sort is price, latency or throughput; max_price takes prompt and completion in 0G per million tokens)"
            ))
        })
    }

    /// The limits this object sets, to narrow the gateway's with.
    pub(crate) fn narrowing(&self) -> Result<Narrowing, ClientError> {
        let max_price = self.max_price.as_ref();
        Ok(Narrowing {
            max_input_price: per_token("prompt", max_price.and_then(|m| m.prompt.as_ref()))?,
            max_output_price: per_token(
                "completion",
                max_price.and_then(|m| m.completion.as_ref()),
            )?,
            only: self.only.clone(),
            ignore: self.ignore.clone(),
            verifiability: self.verifiability.clone(),
        })
    }

    /// `ranked` (best first) with the providers of `order` moved to the
    /// front in that order, cut to what `allow_fallbacks` allows.
    pub(crate) fn arrange(&self, ranked: Vec<Service>) -> Vec<Service> {
        let fallbacks = self.allow_fallbacks.unwrap_or(true);
        if self.order.is_empty() {
            return if fallbacks {
                ranked
            } else {
                ranked.into_iter().take(1).collect()
            };
        }
        let position = |s: &Service| self.order.iter().position(|a| *a == s.provider);
        let (mut first, rest): (Vec<Service>, Vec<Service>) =
            ranked.into_iter().partition(|s| position(s).is_some());
        first.sort_by_key(|s| position(s));
        if fallbacks {
            first.extend(rest);
        }
        first
    }
}

/// A price per million tokens as neuron per token (rounded down).
fn per_token(name: &str, value: Option<&Value>) -> Result<Option<U256>, ClientError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(ClientError::InvalidRequest(format!(
                "\"provider.max_price.{name}\": {other} is not a number of 0G per million tokens"
            )));
        }
    };
    let per_million = parse_amount(&text).map_err(|e| {
        ClientError::InvalidRequest(format!(
            "\"provider.max_price.{name}\": {e} (0G per million tokens, a decimal)"
        ))
    })?;
    Ok(Some(per_million / U256::from(1_000_000u64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranking::tests::service;
    use serde_json::json;

    fn arranged(prefs: Value) -> Vec<u8> {
        ProviderPrefs::parse(prefs)
            .unwrap()
            .arrange(vec![service(1, 0), service(2, 0), service(3, 0)])
            .iter()
            .map(|s| s.provider.0[0])
            .collect()
    }

    #[test]
    fn order_goes_first_and_fallbacks_follow_unless_refused() {
        let (a2, a3) = (Address::repeat_byte(2), Address::repeat_byte(3));
        assert_eq!(arranged(json!({})), vec![1, 2, 3]);
        assert_eq!(arranged(json!({"order": [a3, a2]})), vec![3, 2, 1]);
        assert_eq!(
            arranged(json!({"order": [a3], "allow_fallbacks": false})),
            vec![3]
        );
        assert_eq!(arranged(json!({"allow_fallbacks": false})), vec![1]);
    }

    #[test]
    fn max_price_is_per_million_tokens_and_bad_fields_are_named() {
        let prefs =
            ProviderPrefs::parse(json!({"max_price": {"prompt": 1, "completion": "0.5"}})).unwrap();
        let n = prefs.narrowing().unwrap();
        // 1 0G per million tokens = 10^12 neuron per token.
        assert_eq!(n.max_input_price, Some(U256::from(1_000_000_000_000u64)));
        assert_eq!(n.max_output_price, Some(U256::from(500_000_000_000u64)));
        for bad in [
            json!({"sort": "cheapest"}),
            json!({"order": ["openai"]}),
            json!({"quantizations": ["q4"]}),
            json!({"max_price": {"prompt": true}}),
        ] {
            let e = ProviderPrefs::parse(bad.clone())
                .and_then(|p| p.narrowing().map(|_| ()))
                .unwrap_err();
            assert!(matches!(e, ClientError::InvalidRequest(_)), "{bad}: {e}");
        }
    }
}
