//! The user's limits for one request: the gateway's configured defaults,
//! narrowed by `X-ZG-*` request headers and by the body's `zg` extra field
//! (`extra_body={"zg": {...}}` in the openai SDK). Prices are decimal 0G per
//! token; providers are addresses.

use serde::Deserialize;
use zg_client::{ClientError, ServiceFilter};
use zg_core::{Address, U256, parse_amount};

pub(crate) const MAX_PRICE: &str = "x-zg-max-price";
pub(crate) const MAX_INPUT_PRICE: &str = "x-zg-max-input-price";
pub(crate) const MAX_OUTPUT_PRICE: &str = "x-zg-max-output-price";
pub(crate) const ONLY_PROVIDERS: &str = "x-zg-only-providers";
pub(crate) const IGNORE_PROVIDERS: &str = "x-zg-ignore-providers";
pub(crate) const VERIFIABILITY: &str = "x-zg-verifiability";

/// The body's `zg` object.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BodyLimits {
    /// Both prices at once.
    pub max_price: Option<String>,
    pub max_input_price: Option<String>,
    pub max_output_price: Option<String>,
    #[serde(default)]
    pub only_providers: Vec<Address>,
    #[serde(default)]
    pub ignore_providers: Vec<Address>,
    pub verifiability: Option<String>,
}

/// Typed limits from one source (headers, the `zg` field, the `provider`
/// routing object), each of which can only narrow what it is applied to.
#[derive(Debug, Default)]
pub(crate) struct Narrowing {
    pub max_input_price: Option<U256>,
    pub max_output_price: Option<U256>,
    pub only: Vec<Address>,
    pub ignore: Vec<Address>,
    pub verifiability: Option<String>,
}

impl Narrowing {
    /// `f` narrowed by these limits: lower prices win, only-providers
    /// intersect, ignored providers add up, a verifiability replaces.
    pub(crate) fn apply(self, mut f: ServiceFilter) -> Result<ServiceFilter, ClientError> {
        let lower = |cur: Option<U256>, new: Option<U256>| match (cur, new) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        f.max_input_price = lower(f.max_input_price, self.max_input_price);
        f.max_output_price = lower(f.max_output_price, self.max_output_price);
        if !self.only.is_empty() {
            f.only = if f.only.is_empty() {
                self.only
            } else {
                f.only
                    .into_iter()
                    .filter(|a| self.only.contains(a))
                    .collect()
            };
            if f.only.is_empty() {
                return Err(ClientError::NoService(
                    "the request's only-providers and the gateway's configured ones have no provider in common".into(),
                ));
            }
        }
        f.ignore.extend(self.ignore);
        if let Some(v) = self.verifiability {
            f.verifiability = Some(v);
        }
        Ok(f)
    }
}

/// The limits of the `X-ZG-*` headers and the body's `zg` field.
pub(crate) fn from_request<'a>(
    header: impl Fn(&'static str) -> Option<&'a str>,
    body: Option<BodyLimits>,
) -> Result<Vec<Narrowing>, ClientError> {
    let body = body.unwrap_or_default();
    let price = |name: &str, text: Option<&str>| -> Result<Option<U256>, ClientError> {
        text.map(|t| {
            parse_amount(t)
                .map_err(|e| ClientError::InvalidRequest(format!("{name}: {e} (0G per token)")))
        })
        .transpose()
    };
    let both = |name: &str, text: Option<&str>| -> Result<Narrowing, ClientError> {
        let p = price(name, text)?;
        Ok(Narrowing {
            max_input_price: p,
            max_output_price: p,
            ..Default::default()
        })
    };
    Ok(vec![
        both(MAX_PRICE, header(MAX_PRICE))?,
        both("zg.max_price", body.max_price.as_deref())?,
        Narrowing {
            max_input_price: price(MAX_INPUT_PRICE, header(MAX_INPUT_PRICE))?,
            max_output_price: price(MAX_OUTPUT_PRICE, header(MAX_OUTPUT_PRICE))?,
            only: addresses(ONLY_PROVIDERS, header(ONLY_PROVIDERS))?,
            ignore: addresses(IGNORE_PROVIDERS, header(IGNORE_PROVIDERS))?,
            verifiability: header(VERIFIABILITY).map(str::to_owned),
        },
        Narrowing {
            max_input_price: price("zg.max_input_price", body.max_input_price.as_deref())?,
            max_output_price: price("zg.max_output_price", body.max_output_price.as_deref())?,
            only: body.only_providers,
            ignore: body.ignore_providers,
            verifiability: body.verifiability,
        },
    ])
}

/// Narrows `base` (the configured limits) by every source in turn.
pub(crate) fn narrow(
    base: &ServiceFilter,
    sources: impl IntoIterator<Item = Narrowing>,
) -> Result<ServiceFilter, ClientError> {
    sources
        .into_iter()
        .try_fold(base.clone(), |f, n| n.apply(f))
}

fn addresses(name: &str, text: Option<&str>) -> Result<Vec<Address>, ClientError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse().map_err(|_| {
                ClientError::InvalidRequest(format!(
                    "{name}: {s:?} is not an address (0x and 40 hex digits)"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_body_only_narrow_the_configured_limits() {
        let base = ServiceFilter {
            max_output_price: Some(U256::from(1000u64)),
            ..Default::default()
        };
        let a = Address::repeat_byte(1);
        let header_only = format!("{a}");
        let headers = |name: &'static str| match name {
            MAX_OUTPUT_PRICE => Some("0.000000000000002"),
            ONLY_PROVIDERS => Some(header_only.as_str()),
            _ => None,
        };
        let body = BodyLimits {
            max_input_price: Some("0.000000000000000005".into()),
            ignore_providers: vec![Address::repeat_byte(2)],
            verifiability: Some("tee".into()),
            ..Default::default()
        };
        let f = narrow(&base, from_request(headers, Some(body)).unwrap()).unwrap();
        assert_eq!(
            f.max_output_price,
            Some(U256::from(1000u64)),
            "a header can't raise the configured cap"
        );
        assert_eq!(f.max_input_price, Some(U256::from(5u64)));
        assert_eq!(f.only, vec![a]);
        assert_eq!(f.ignore, vec![Address::repeat_byte(2)]);
        assert_eq!(f.verifiability.as_deref(), Some("tee"));
        assert!(from_request(|n| (n == MAX_PRICE).then_some("abc"), None).is_err());
    }
}
