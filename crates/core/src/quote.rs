//! A provider's signed price quote for one service: the prices it will
//! charge right now, by tier of prompt length and requested output length,
//! valid for a short while. The client takes one before it signs a
//! request's voucher, names it in `X-ZG-Quote`, and refuses to pay a
//! receipt whose prices exceed the quote's tier for that answer (or the
//! registry's ceilings).

use crate::{Domain, Prices, Signature, SignatureError, SigningKey, eip712};
use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

/// How far a quote's `issuedAt` may be ahead of the client's clock.
pub const QUOTE_MAX_SKEW: u64 = 30;

/// One price line: what a request pays when its prompt has at least
/// `min_prompt_tokens` tokens and it asks for at least `min_output_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tier {
    pub min_prompt_tokens: u64,
    pub min_output_tokens: u64,
    pub prices: Prices,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    pub provider: Address,
    /// keccak256 of the service name.
    pub service: B256,
    /// Unix seconds.
    pub issued_at: u64,
    /// The last unix second at which a request may be sent under it.
    pub valid_until: u64,
    /// The output a request that names no `max_tokens` asks for (the
    /// service's limit); a larger `max_tokens` counts as this.
    pub max_output_tokens: u64,
    /// The first tier starts at zero and zero; later tiers apply over it.
    pub tiers: Vec<Tier>,
}

/// A quote as `GET /v1/quote` serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedQuote {
    pub quote: Quote,
    /// 65-byte EIP-712 signature by the service's signer, 0x-prefixed hex.
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("the quote's signature is malformed: {0}")]
    Signature(String),
    #[error("the quote is signed by {got}, the registry lists signer {expected}")]
    WrongSigner { expected: Address, got: Address },
    #[error("the quote is for provider {got} and service {service}, expected {expected}")]
    WrongService {
        expected: Address,
        got: Address,
        service: B256,
    },
    #[error("the quote has no tier starting at 0 prompt and 0 output tokens")]
    NoBaseTier,
    #[error("the quote's tier {index} charges more than the service's ceilings")]
    AboveCeiling { index: usize },
    #[error("the quote is valid from {issued_at} to {valid_until} (unix seconds), now is {now}")]
    NotValid {
        issued_at: u64,
        valid_until: u64,
        now: u64,
    },
}

impl Quote {
    fn typed(&self) -> eip712::Quote {
        eip712::Quote {
            provider: self.provider,
            service: self.service,
            issuedAt: self.issued_at,
            validUntil: self.valid_until,
            maxOutputTokens: self.max_output_tokens,
            tiers: self
                .tiers
                .iter()
                .map(|t| eip712::QuoteTier {
                    minPromptTokens: t.min_prompt_tokens,
                    minOutputTokens: t.min_output_tokens,
                    inputPrice: t.prices.input,
                    outputPrice: t.prices.output,
                    cachedPrice: t.prices.cached,
                })
                .collect(),
        }
    }

    /// What the signer signs, and what `X-ZG-Quote` names.
    pub fn signing_hash(&self, domain: &Domain) -> B256 {
        domain.signing_hash(&self.typed())
    }

    pub fn sign(self, key: &SigningKey, domain: &Domain) -> SignedQuote {
        let signature = key.sign_hash(&self.signing_hash(domain)).to_string();
        SignedQuote {
            quote: self,
            signature,
        }
    }

    /// The output a request asks for: its `max_tokens` capped at the
    /// service's limit, or the limit when it names none.
    pub fn requested_output(&self, max_tokens: Option<u64>) -> u64 {
        max_tokens.map_or(self.max_output_tokens, |m| m.min(self.max_output_tokens))
    }

    /// The prices of the last tier whose thresholds the answer meets
    /// (`None` only for a quote without its base tier).
    pub fn prices_for(&self, prompt_tokens: u64, requested_output: u64) -> Option<Prices> {
        self.tiers
            .iter()
            .rev()
            .find(|t| {
                prompt_tokens >= t.min_prompt_tokens && requested_output >= t.min_output_tokens
            })
            .map(|t| t.prices)
    }

    /// Whether a request may be sent under it at `now`.
    pub fn valid_at(&self, now: u64) -> Result<(), QuoteError> {
        if self.issued_at > now + QUOTE_MAX_SKEW || now > self.valid_until {
            return Err(QuoteError::NotValid {
                issued_at: self.issued_at,
                valid_until: self.valid_until,
                now,
            });
        }
        Ok(())
    }

    /// Whether every tier is within `ceiling` and the base tier is there.
    pub fn check_shape(&self, ceiling: &Prices) -> Result<(), QuoteError> {
        match self.tiers.first() {
            Some(t) if t.min_prompt_tokens == 0 && t.min_output_tokens == 0 => {}
            _ => return Err(QuoteError::NoBaseTier),
        }
        match self.tiers.iter().position(|t| !t.prices.within(ceiling)) {
            Some(index) => Err(QuoteError::AboveCeiling { index }),
            None => Ok(()),
        }
    }
}

impl SignedQuote {
    /// Checks the quote is `provider`'s for `service`, signed by `signer`
    /// under `domain`, shaped right and within `ceiling`; returns its
    /// signing hash (what `X-ZG-Quote` carries).
    pub fn check(
        &self,
        domain: &Domain,
        provider: Address,
        service: B256,
        signer: Address,
        ceiling: &Prices,
    ) -> Result<B256, QuoteError> {
        let q = &self.quote;
        if q.provider != provider || q.service != service {
            return Err(QuoteError::WrongService {
                expected: provider,
                got: q.provider,
                service: q.service,
            });
        }
        let hash = q.signing_hash(domain);
        let got = self
            .signature
            .parse::<Signature>()
            .and_then(|s| s.recover(&hash))
            .map_err(|e: SignatureError| QuoteError::Signature(e.to_string()))?;
        if got != signer {
            return Err(QuoteError::WrongSigner {
                expected: signer,
                got,
            });
        }
        q.check_shape(ceiling)?;
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;

    fn quote() -> Quote {
        let p = |i: u64, o: u64, c: u64| {
            Prices::new(U256::from(i), U256::from(o)).with_cached(U256::from(c))
        };
        Quote {
            provider: Address::repeat_byte(2),
            service: crate::service_id("chat"),
            issued_at: 1_000,
            valid_until: 1_030,
            max_output_tokens: 512,
            tiers: vec![
                Tier {
                    min_prompt_tokens: 0,
                    min_output_tokens: 0,
                    prices: p(4, 8, 1),
                },
                Tier {
                    min_prompt_tokens: 1_000,
                    min_output_tokens: 0,
                    prices: p(6, 8, 2),
                },
                Tier {
                    min_prompt_tokens: 1_000,
                    min_output_tokens: 256,
                    prices: p(6, 10, 2),
                },
            ],
        }
    }

    #[test]
    fn the_last_tier_met_applies() {
        let q = quote();
        assert_eq!(q.prices_for(10, 512).unwrap().input, U256::from(4u64));
        assert_eq!(q.prices_for(1_000, 100).unwrap().input, U256::from(6u64));
        assert_eq!(q.prices_for(1_000, 100).unwrap().output, U256::from(8u64));
        assert_eq!(
            q.prices_for(5_000, q.requested_output(None))
                .unwrap()
                .output,
            U256::from(10u64)
        );
        assert_eq!(q.requested_output(Some(100_000)), 512);
        assert_eq!(q.requested_output(Some(16)), 16);
    }

    #[test]
    fn signed_by_the_signer_and_every_tier_bound() {
        let key = SigningKey::random();
        let domain = Domain::new(31337, Address::repeat_byte(3));
        let q = quote();
        let provider = q.provider;
        let service = q.service;
        let ceiling =
            Prices::new(U256::from(6u64), U256::from(10u64)).with_cached(U256::from(2u64));
        let signed = q.clone().sign(&key, &domain);
        let hash = signed
            .check(&domain, provider, service, key.address(), &ceiling)
            .unwrap();
        assert_eq!(hash, q.signing_hash(&domain));
        let mut cheaper = signed.clone();
        cheaper.quote.tiers[2].prices.output = U256::from(9u64);
        assert!(matches!(
            cheaper.check(&domain, provider, service, key.address(), &ceiling),
            Err(QuoteError::WrongSigner { .. })
        ));
        let lower = Prices::new(U256::from(5u64), U256::from(10u64)).with_cached(U256::from(2u64));
        assert_eq!(
            signed.check(&domain, provider, service, key.address(), &lower),
            Err(QuoteError::AboveCeiling { index: 1 })
        );
        let other = Domain::new(1, Address::repeat_byte(3));
        assert!(
            signed
                .check(&other, provider, service, key.address(), &ceiling)
                .is_err()
        );
    }

    #[test]
    fn valid_only_in_its_window() {
        let q = quote();
        assert!(q.valid_at(1_000).is_ok());
        assert!(q.valid_at(1_030).is_ok());
        assert!(q.valid_at(1_031).is_err());
        assert!(q.valid_at(1_000 - QUOTE_MAX_SKEW).is_ok());
        assert!(q.valid_at(1_000 - QUOTE_MAX_SKEW - 1).is_err());
    }
}
