//! A service's `verifiability`: the method by which its answers can be
//! checked, a name the broker and the client both check rather than a free
//! label. `none` means signed receipts only; a proof method means every
//! answer comes with a proof of model whose digest its receipt binds.

/// Signed receipts only (any OpenAI-compatible upstream).
pub const NONE: &str = "none";

/// The built-in engine's proof of model, version 1: a fingerprint of the
/// logits of every generated token (docs/verification.md).
pub const ZG_LOGITS_V1: &str = "zg-logits-v1";

/// The header with which an upstream (the built-in engine) names an
/// answer's proof, fetched at its `GET /v1/proofs/{id}`.
pub const PROOF_ID_HEADER: &str = "x-engine-proof-id";

/// Every proof method this build produces and checks.
pub const PROOF_METHODS: &[&str] = &[ZG_LOGITS_V1];

/// A known `verifiability` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verifiability {
    /// [`NONE`].
    None,
    /// A proof method of [`PROOF_METHODS`].
    Proof(&'static str),
}

/// A `verifiability` that is neither `none` nor a known proof method.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "verifiability {0:?} is unknown: expected {NONE:?} or a proof method of this build ({methods})",
    methods = PROOF_METHODS.join(", ")
)]
pub struct UnknownMethod(pub String);

impl Verifiability {
    /// Reads a service's `verifiability` (exact, case-sensitive: it is a
    /// versioned method name).
    pub fn parse(text: &str) -> Result<Self, UnknownMethod> {
        if text == NONE {
            return Ok(Self::None);
        }
        PROOF_METHODS
            .iter()
            .find(|m| **m == text)
            .map(|m| Self::Proof(m))
            .ok_or_else(|| UnknownMethod(text.to_owned()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => NONE,
            Self::Proof(method) => method,
        }
    }

    /// The proof method, if answers carry proofs.
    pub fn proof_method(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Proof(method) => Some(method),
        }
    }
}

impl std::fmt::Display for Verifiability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_known_methods_and_refuses_the_rest() {
        assert_eq!(Verifiability::parse("none"), Ok(Verifiability::None));
        assert_eq!(
            Verifiability::parse("zg-logits-v1"),
            Ok(Verifiability::Proof(ZG_LOGITS_V1))
        );
        for other in ["", "tee", "NONE", "zg-logits-v2", "zg-logits-v1 "] {
            let err = Verifiability::parse(other).unwrap_err();
            assert!(err.to_string().contains("zg-logits-v1"), "{err}");
        }
    }
}
