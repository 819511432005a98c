//! Receipt checks: everything DESIGN.md lists, before a receipt is paid.
//! Signer, user and provider, service and model digest against the registry,
//! prices within the listed ceilings, fee arithmetic, owed against the
//! client's own tally, the request and response digests, and for a service
//! that registered a proof method, the digest of the proof the broker serves.

use crate::book::OwedBefore;
use zg_core::{
    Address, B256, Domain, Prices, Quote, Receipt, Service, U256, Verifiability,
    headers::SignedReceipt,
};

/// What the client knows independently of the provider when a receipt arrives.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub user: Address,
    /// The registry's listing this request was sent to.
    pub service: &'a Service,
    pub request_digest: B256,
    /// keccak256 of the response body as received.
    pub response_digest: B256,
    /// The client's own tally of fees owed to this provider before this
    /// answer: exact when the request was alone in flight, else a floor.
    pub owed_before: OwedBefore,
    /// The answer's proof of model as the broker served it.
    pub proof: ProofSeen<'a>,
    /// The quote the request went out under, and the output it asked for
    /// per choice (`Quote::requested_output`).
    pub quote: Option<(&'a Quote, u64)>,
}

/// What the client got of an answer's proof of model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofSeen<'a> {
    /// Not asked for: the service registered no proof method.
    NotAsked,
    /// keccak256 of the proof the broker served.
    Got(B256),
    /// The broker served none, for this reason.
    Missing(&'a str),
}

/// Why a receipt is refused. Each names what was expected and what came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptFault {
    #[error("signature is malformed: {0}")]
    Signature(String),
    #[error("signed by {got}, the registry lists signer {expected}")]
    WrongSigner { expected: Address, got: Address },
    #[error("made out to user {got}, expected {expected}")]
    WrongUser { expected: Address, got: Address },
    #[error("made out by provider {got}, expected {expected}")]
    WrongProvider { expected: Address, got: Address },
    #[error("for service {got}, expected {expected} (keccak of the service name)")]
    WrongService { expected: B256, got: B256 },
    #[error("model digest {got}, the registry lists {expected}")]
    WrongModelDigest { expected: B256, got: B256 },
    #[error("request digest {got}, the request sent had {expected}")]
    WrongRequestDigest { expected: B256, got: B256 },
    #[error("response digest {got}, the body received hashes to {expected}")]
    WrongResponseDigest { expected: B256, got: B256 },
    #[error(
        "prices {} in / {} out / {} cached neuron per token exceed the listed ceilings {} / {} / {}",
        got.input, got.output, got.cached, ceiling.input, ceiling.output, ceiling.cached
    )]
    PriceAboveCeiling { ceiling: Prices, got: Prices },
    #[error(
        "prices {} in / {} out / {} cached neuron per token exceed the quote's {} / {} / {} for {prompt_tokens} prompt tokens and {requested_output} requested output tokens",
        got.input, got.output, got.cached, quoted.input, quoted.output, quoted.cached
    )]
    PriceAboveQuote {
        quoted: Prices,
        got: Prices,
        prompt_tokens: U256,
        requested_output: u64,
    },
    #[error(
        "fee {claimed} neuron, but {input_tokens} in + {output_tokens} out tokens at its prices make {computed}"
    )]
    WrongFee {
        claimed: U256,
        computed: U256,
        input_tokens: U256,
        output_tokens: U256,
    },
    #[error("token counts or fee overflow")]
    Overflow,
    #[error("{cached} cached prompt tokens out of {input} prompt tokens")]
    CachedAboveInput { cached: U256, input: U256 },
    #[error("owed {claimed} neuron, the client's own tally makes {expected}")]
    WrongOwed { claimed: U256, expected: U256 },
    #[error(
        "the service registers verifiability {0:?}, which this client cannot check (it knows \"none\" and {methods})",
        methods = zg_core::verifiability::PROOF_METHODS.join(", ")
    )]
    UnknownVerifiability(String),
    #[error("the service registers {method}, but the answer has no proof: {why}")]
    MissingProof { method: &'static str, why: String },
    #[error("proof digest {got}, the proof the broker serves hashes to {expected}")]
    WrongProofDigest { expected: B256, got: B256 },
    #[error(
        "the receipt says it was issued at {issued_at} (unix seconds), this client's clock says {now}: a receipt of a proof service must be dated within {RECEIPT_MAX_AGE} s before and {RECEIPT_MAX_SKEW} s after now, or its dispute window would not be what the contract assumes"
    )]
    WrongIssuedAt { issued_at: u64, now: u64 },
}

/// How old a proof service's receipt may be when it arrives, in seconds
/// (a stream's receipt is signed when its last event is sent).
pub const RECEIPT_MAX_AGE: u64 = 600;
/// How far ahead of the client's clock a receipt may be dated (the contract
/// allows the same skew against the chain's clock).
pub const RECEIPT_MAX_SKEW: u64 = 300;

impl ReceiptFault {
    /// Stable short name, stored with the evidence.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Signature(_) => "signature",
            Self::WrongSigner { .. } => "wrong_signer",
            Self::WrongUser { .. } => "wrong_user",
            Self::WrongProvider { .. } => "wrong_provider",
            Self::WrongService { .. } => "wrong_service",
            Self::WrongModelDigest { .. } => "wrong_model_digest",
            Self::WrongRequestDigest { .. } => "wrong_request_digest",
            Self::WrongResponseDigest { .. } => "wrong_response_digest",
            Self::PriceAboveCeiling { .. } => "price_above_ceiling",
            Self::PriceAboveQuote { .. } => "price_above_quote",
            Self::WrongFee { .. } => "wrong_fee",
            Self::Overflow => "overflow",
            Self::CachedAboveInput { .. } => "cached_above_input",
            Self::WrongOwed { .. } => "wrong_owed",
            Self::UnknownVerifiability(_) => "unknown_verifiability",
            Self::MissingProof { .. } => "missing_proof",
            Self::WrongProofDigest { .. } => "wrong_proof_digest",
            Self::WrongIssuedAt { .. } => "wrong_issued_at",
        }
    }
}

/// Checks `signed` against what the client knows; on success returns the fee to pay.
pub fn check_receipt(
    signed: &SignedReceipt,
    expected: &Expected<'_>,
    domain: &Domain,
) -> Result<U256, ReceiptFault> {
    let receipt: &Receipt = &signed.receipt;
    let service = expected.service;
    let signature = signed
        .signature()
        .map_err(|e| ReceiptFault::Signature(e.to_string()))?;
    let signer = receipt
        .signer(&signature, domain)
        .map_err(|e| ReceiptFault::Signature(e.to_string()))?;
    same(service.signer, signer, |expected, got| {
        ReceiptFault::WrongSigner { expected, got }
    })?;
    same(expected.user, receipt.user, |expected, got| {
        ReceiptFault::WrongUser { expected, got }
    })?;
    same(service.provider, receipt.provider, |expected, got| {
        ReceiptFault::WrongProvider { expected, got }
    })?;
    same(service.id(), receipt.service, |expected, got| {
        ReceiptFault::WrongService { expected, got }
    })?;
    same(
        service.model_digest,
        receipt.model_digest,
        |expected, got| ReceiptFault::WrongModelDigest { expected, got },
    )?;
    same(
        expected.request_digest,
        receipt.request_digest,
        |expected, got| ReceiptFault::WrongRequestDigest { expected, got },
    )?;
    same(
        expected.response_digest,
        receipt.response_digest,
        |expected, got| ReceiptFault::WrongResponseDigest { expected, got },
    )?;
    check_proof(receipt, service, expected.proof)?;
    let prices = receipt.prices();
    if !prices.within(&service.prices) {
        return Err(ReceiptFault::PriceAboveCeiling {
            ceiling: service.prices,
            got: prices,
        });
    }
    let usage = receipt.usage().ok_or(ReceiptFault::Overflow)?;
    if let Some((quote, requested_output)) = expected.quote {
        let quoted = quote
            .prices_for(usage.input_tokens, requested_output)
            .unwrap_or_default();
        if !prices.within(&quoted) {
            return Err(ReceiptFault::PriceAboveQuote {
                quoted,
                got: prices,
                prompt_tokens: receipt.input_tokens,
                requested_output,
            });
        }
    }
    let computed = prices.fee(usage).map_err(|e| match e {
        zg_core::FeeError::CachedAboveInput { .. } => ReceiptFault::CachedAboveInput {
            cached: receipt.cached_tokens,
            input: receipt.input_tokens,
        },
        _ => ReceiptFault::Overflow,
    })?;
    if computed != receipt.fee {
        return Err(ReceiptFault::WrongFee {
            claimed: receipt.fee,
            computed,
            input_tokens: receipt.input_tokens,
            output_tokens: receipt.output_tokens,
        });
    }
    let (before, exact) = match expected.owed_before {
        OwedBefore::Exact(before) => (before, true),
        OwedBefore::AtLeast(before) => (before, false),
    };
    let owed = before
        .checked_add(receipt.fee)
        .ok_or(ReceiptFault::Overflow)?;
    if receipt.owed < owed || (exact && receipt.owed != owed) {
        return Err(ReceiptFault::WrongOwed {
            claimed: receipt.owed,
            expected: owed,
        });
    }
    Ok(receipt.fee)
}

/// A service that registered a proof method is paid only for a receipt
/// whose proofDigest is that of the proof its broker serves.
fn check_proof(
    receipt: &Receipt,
    service: &Service,
    seen: ProofSeen<'_>,
) -> Result<(), ReceiptFault> {
    let method = match Verifiability::parse(&service.verifiability) {
        Ok(Verifiability::None) => return Ok(()),
        Ok(Verifiability::Proof(method)) => method,
        Err(unknown) => return Err(ReceiptFault::UnknownVerifiability(unknown.0)),
    };
    let missing = |why: &str| ReceiptFault::MissingProof {
        method,
        why: why.to_owned(),
    };
    if receipt.proof_digest.is_zero() {
        return Err(missing("the receipt's proofDigest is zero"));
    }
    // Disputes run from the receipt's date: a backdated receipt would close
    // the window early, a future-dated one would be refused by the contract.
    let now = zg_core::now_unix();
    let issued_at = receipt.issued_at;
    if issued_at.saturating_add(RECEIPT_MAX_AGE) < now || issued_at > now + RECEIPT_MAX_SKEW {
        return Err(ReceiptFault::WrongIssuedAt { issued_at, now });
    }
    match seen {
        ProofSeen::Got(digest) => same(digest, receipt.proof_digest, |expected, got| {
            ReceiptFault::WrongProofDigest { expected, got }
        }),
        ProofSeen::Missing(why) => Err(missing(why)),
        ProofSeen::NotAsked => Err(missing("the client did not fetch it")),
    }
}

fn same<T: PartialEq + Copy>(
    expected: T,
    got: T,
    fault: impl FnOnce(T, T) -> ReceiptFault,
) -> Result<(), ReceiptFault> {
    if expected == got {
        Ok(())
    } else {
        Err(fault(expected, got))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zg_core::{SigningKey, keccak256, service_id};

    struct Case {
        domain: Domain,
        signer: SigningKey,
        service: Service,
        receipt: Receipt,
        user: Address,
        quote: Option<Quote>,
    }

    fn case() -> Case {
        let signer = SigningKey::random();
        let user = Address::repeat_byte(1);
        let service = Service {
            provider: Address::repeat_byte(2),
            name: "chat".into(),
            kind: "chat".into(),
            url: "http://p".into(),
            model: "m".into(),
            model_digest: B256::repeat_byte(3),
            hardware: "cpu".into(),
            prices: Prices::new(U256::from(10u64), U256::from(20u64)),
            verifiability: "none".into(),
            signer: signer.address(),
            updated_at: 0,
            failed_at: 0,
        };
        let receipt = Receipt {
            user,
            provider: service.provider,
            service: service_id("chat"),
            model_digest: service.model_digest,
            request_digest: keccak256(b"req"),
            response_digest: keccak256(b"resp"),
            input_tokens: U256::from(5u64),
            output_tokens: U256::from(7u64),
            input_price: U256::from(10u64),
            output_price: U256::from(15u64),
            cached_tokens: U256::ZERO,
            cached_price: U256::ZERO,
            fee: U256::from(5 * 10 + 7 * 15u64),
            owed: U256::from(1000 + 5 * 10 + 7 * 15u64),
            proof_digest: B256::ZERO,
            issued_at: zg_core::now_unix(),
        };
        Case {
            domain: Domain::new(31337, Address::repeat_byte(9)),
            signer,
            service,
            receipt,
            user,
            quote: None,
        }
    }

    fn run(case: &Case, receipt: &Receipt, key: &SigningKey) -> Result<U256, ReceiptFault> {
        run_with_proof(case, receipt, key, ProofSeen::NotAsked)
    }

    fn run_with_proof(
        case: &Case,
        receipt: &Receipt,
        key: &SigningKey,
        proof: ProofSeen<'_>,
    ) -> Result<U256, ReceiptFault> {
        let signed = SignedReceipt::new(receipt.clone(), &receipt.sign(key, &case.domain));
        let expected = Expected {
            user: case.user,
            service: &case.service,
            request_digest: keccak256(b"req"),
            response_digest: keccak256(b"resp"),
            owed_before: OwedBefore::Exact(U256::from(1000u64)),
            proof,
            quote: case.quote.as_ref().map(|q| (q, 64)),
        };
        check_receipt(&signed, &expected, &case.domain)
    }

    #[test]
    fn an_honest_receipt_passes_with_its_fee() {
        let c = case();
        assert_eq!(run(&c, &c.receipt, &c.signer), Ok(U256::from(155u64)));
    }

    #[test]
    fn every_lie_is_caught_by_name() {
        let c = case();
        let r = &c.receipt;
        let lies: Vec<(Receipt, &str)> = vec![
            (
                Receipt {
                    fee: r.fee + U256::from(1u64),
                    owed: r.owed + U256::from(1u64),
                    ..r.clone()
                },
                "wrong_fee",
            ),
            (
                Receipt {
                    owed: r.owed + U256::from(1u64),
                    ..r.clone()
                },
                "wrong_owed",
            ),
            (
                Receipt {
                    model_digest: B256::repeat_byte(8),
                    ..r.clone()
                },
                "wrong_model_digest",
            ),
            (
                Receipt {
                    service: service_id("other"),
                    ..r.clone()
                },
                "wrong_service",
            ),
            (
                Receipt {
                    user: Address::repeat_byte(5),
                    ..r.clone()
                },
                "wrong_user",
            ),
            (
                Receipt {
                    provider: Address::repeat_byte(5),
                    ..r.clone()
                },
                "wrong_provider",
            ),
            (
                Receipt {
                    request_digest: B256::ZERO,
                    ..r.clone()
                },
                "wrong_request_digest",
            ),
            (
                Receipt {
                    response_digest: B256::ZERO,
                    ..r.clone()
                },
                "wrong_response_digest",
            ),
            (
                Receipt {
                    output_price: U256::from(21u64),
                    cached_tokens: U256::ZERO,
                    cached_price: U256::ZERO,
                    fee: U256::from(5 * 10 + 7 * 21u64),
                    owed: U256::from(1000 + 5 * 10 + 7 * 21u64),
                    ..r.clone()
                },
                "price_above_ceiling",
            ),
            (
                Receipt {
                    input_tokens: U256::MAX,
                    ..r.clone()
                },
                "overflow",
            ),
        ];
        for (lie, kind) in lies {
            assert_eq!(run(&c, &lie, &c.signer).map_err(|f| f.kind()), Err(kind));
        }
        let impostor = SigningKey::random();
        assert_eq!(
            run(&c, r, &impostor).map_err(|f| f.kind()),
            Err("wrong_signer")
        );
    }

    #[test]
    fn a_proof_service_is_paid_only_for_the_proof_its_broker_serves() {
        let mut c = case();
        c.service.verifiability = zg_core::verifiability::ZG_LOGITS_V1.into();
        let digest = zg_core::proof_digest(b"proof");
        let r = Receipt {
            proof_digest: digest,
            ..c.receipt.clone()
        };
        let check = |c: &Case, r: &Receipt, seen| {
            run_with_proof(c, r, &c.signer, seen).map_err(|f| f.kind())
        };
        assert_eq!(
            check(&c, &r, ProofSeen::Got(digest)),
            Ok(U256::from(155u64))
        );
        let other = zg_core::proof_digest(b"another proof");
        assert_eq!(
            check(&c, &r, ProofSeen::Got(other)),
            Err("wrong_proof_digest")
        );
        assert_eq!(
            check(&c, &r, ProofSeen::Missing("404")),
            Err("missing_proof")
        );
        assert_eq!(check(&c, &r, ProofSeen::NotAsked), Err("missing_proof"));
        let now = zg_core::now_unix();
        for issued_at in [now - RECEIPT_MAX_AGE - 60, now + RECEIPT_MAX_SKEW + 60, 0] {
            let dated = Receipt {
                issued_at,
                ..r.clone()
            };
            assert_eq!(
                check(&c, &dated, ProofSeen::Got(digest)),
                Err("wrong_issued_at")
            );
        }
        // A zero digest is no proof, whatever was fetched.
        assert_eq!(
            check(&c, &c.receipt, ProofSeen::Got(B256::ZERO)),
            Err("missing_proof")
        );
        c.service.verifiability = "tee".into();
        assert_eq!(
            check(&c, &r, ProofSeen::Got(digest)),
            Err("unknown_verifiability")
        );
        // A service without a proof method is not asked for one.
        c.service.verifiability = "none".into();
        assert_eq!(check(&c, &r, ProofSeen::NotAsked), Ok(U256::from(155u64)));
    }

    #[test]
    fn a_quoted_request_pays_at_most_its_quote_and_cached_tokens_their_price() {
        let mut c = case();
        c.service.prices = c.service.prices.with_cached(U256::from(2u64));
        let tier = |min_prompt_tokens, input: u64| zg_core::Tier {
            min_prompt_tokens,
            min_output_tokens: 0,
            prices: Prices::new(U256::from(input), U256::from(15u64)).with_cached(U256::from(1u64)),
        };
        c.quote = Some(Quote {
            provider: c.service.provider,
            service: c.service.id(),
            issued_at: 0,
            valid_until: u64::MAX,
            max_output_tokens: 64,
            tiers: vec![tier(0, 8), tier(100, 10)],
        });
        let priced = |input: u64, cached: u64, input_price: u64, cached_price: u64| {
            let fee = U256::from(
                (input - cached.min(input)) * input_price + cached * cached_price + 7 * 15,
            );
            Receipt {
                input_tokens: U256::from(input),
                cached_tokens: U256::from(cached),
                input_price: U256::from(input_price),
                cached_price: U256::from(cached_price),
                fee,
                owed: U256::from(1000u64) + fee,
                ..c.receipt.clone()
            }
        };
        let check = |r: Receipt| run(&c, &r, &c.signer).map_err(|f| f.kind());
        // Five prompt tokens at the base tier, three of them from the cache.
        assert_eq!(
            check(priced(5, 3, 8, 1)),
            Ok(U256::from(2 * 8 + 3 + 7 * 15u64))
        );
        // The long-prompt tier's price on a short prompt, a dearer cache.
        assert_eq!(check(priced(5, 0, 10, 1)), Err("price_above_quote"));
        assert_eq!(check(priced(5, 3, 8, 2)), Err("price_above_quote"));
        // A long prompt pays its tier.
        assert_eq!(
            check(priced(150, 0, 10, 1)),
            Ok(U256::from(1500 + 7 * 15u64))
        );
        // Over the ceiling is refused as such, quote or not.
        assert_eq!(check(priced(5, 3, 8, 3)), Err("price_above_ceiling"));
        assert_eq!(check(priced(5, 6, 8, 1)), Err("cached_above_input"));
    }
}
