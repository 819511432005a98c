//! Discovery: the registry's services, read page by page through zg-chain,
//! and filtered by model, kind, price, hardware, verifiability and provider.

use crate::ClientError;
use serde::{Deserialize, Serialize};
use zg_chain::ChainClient;
use zg_core::{Address, Service, U256};

const PAGE: u64 = 100;

/// What a user wants from a service. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFilter {
    pub model: Option<String>,
    pub kind: Option<String>,
    /// Highest acceptable listed input price per token, in neuron.
    pub max_input_price: Option<U256>,
    /// Highest acceptable listed output price per token, in neuron.
    pub max_output_price: Option<U256>,
    pub hardware: Option<String>,
    /// Required verifiability (a proof method such as "zg-logits-v1");
    /// "none" or empty accepts any.
    pub verifiability: Option<String>,
    /// Only these providers, when not empty.
    pub only: Vec<Address>,
    pub ignore: Vec<Address>,
}

impl ServiceFilter {
    /// Whether `s` fits; a service that failed verification (a dispute
    /// found it guilty) never does.
    pub fn matches(&self, s: &Service) -> bool {
        let eq = |want: &Option<String>, got: &str| {
            want.as_deref().is_none_or(|w| w.eq_ignore_ascii_case(got))
        };
        eq(&self.model, &s.model)
            && eq(&self.kind, &s.kind)
            && eq(&self.hardware, &s.hardware)
            && self.verifiability.as_deref().is_none_or(|v| {
                v.is_empty() || v == "none" || v.eq_ignore_ascii_case(&s.verifiability)
            })
            && self.max_input_price.is_none_or(|p| s.prices.input <= p)
            && self.max_output_price.is_none_or(|p| s.prices.output <= p)
            && (self.only.is_empty() || self.only.contains(&s.provider))
            && !self.ignore.contains(&s.provider)
            && s.failed_at == 0
    }
}

/// Every listed service, all pages.
pub async fn all_services(chain: &ChainClient) -> Result<Vec<Service>, ClientError> {
    let mut out = Vec::new();
    loop {
        let page = chain.services(out.len() as u64, PAGE).await?;
        let got = page.items.len();
        out.extend(page.items);
        if got == 0 || out.len() as u64 >= page.total {
            return Ok(out);
        }
    }
}

/// The listed services that fit `filter`, cheapest output price first.
pub async fn find_services(
    chain: &ChainClient,
    filter: &ServiceFilter,
) -> Result<Vec<Service>, ClientError> {
    let mut found: Vec<Service> = all_services(chain)
        .await?
        .into_iter()
        .filter(|s| filter.matches(s))
        .collect();
    found.sort_by_key(|s| (s.prices.output, s.prices.input));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zg_core::{B256, Prices};

    fn service(provider: u8, model: &str, out: u64, verif: &str) -> Service {
        Service {
            provider: Address::repeat_byte(provider),
            name: format!("{model}-{provider}"),
            kind: "chat".into(),
            url: String::new(),
            model: model.into(),
            model_digest: B256::ZERO,
            hardware: "cpu".into(),
            prices: Prices::new(U256::from(1u64), U256::from(out)),
            verifiability: verif.into(),
            signer: Address::ZERO,
            updated_at: 0,
            failed_at: 0,
        }
    }

    #[test]
    fn filters_by_every_field() {
        let a = service(1, "llama", 10, "none");
        let b = service(2, "llama", 30, "tee");
        let c = service(3, "qwen", 5, "none");
        let all = [&a, &b, &c];
        let pick = |f: ServiceFilter| {
            all.iter()
                .filter(|s| f.matches(s))
                .map(|s| s.provider)
                .collect::<Vec<_>>()
        };
        let model = |m: &str| ServiceFilter {
            model: Some(m.into()),
            ..Default::default()
        };
        assert_eq!(pick(model("llama")), vec![a.provider, b.provider]);
        assert_eq!(
            pick(ServiceFilter {
                max_output_price: Some(U256::from(20u64)),
                ..model("llama")
            }),
            vec![a.provider]
        );
        assert_eq!(
            pick(ServiceFilter {
                verifiability: Some("tee".into()),
                ..Default::default()
            }),
            vec![b.provider]
        );
        assert_eq!(
            pick(ServiceFilter {
                ignore: vec![a.provider],
                ..model("llama")
            }),
            vec![b.provider]
        );
        assert_eq!(
            pick(ServiceFilter {
                only: vec![c.provider],
                ..Default::default()
            }),
            vec![c.provider]
        );
        assert_eq!(
            pick(ServiceFilter {
                hardware: Some("H100".into()),
                ..Default::default()
            }),
            Vec::<Address>::new()
        );
        let failed = Service {
            failed_at: 1_700_000_000,
            ..a.clone()
        };
        assert!(!ServiceFilter::default().matches(&failed));
    }
}
