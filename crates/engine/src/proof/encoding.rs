//! What a proof holds and its bytes: the digest of the prompt tokens, then
//! per generated token its id and three logits in fixed point (the chosen
//! token's, the largest, and the mean over the vocabulary).

use sha2::{Digest, Sha256};

/// Format version, the first byte.
const VERSION: u8 = 1;
/// Logits are stored as `round(logit * SCALE)` in an `i16`.
const SCALE: f32 = 256.0;
/// version, id width, token count (u32), prompt digest.
const HEADER: usize = 1 + 1 + 4 + 32;
/// Fixed-point logits per token: chosen, max, mean.
const MARKS: usize = 3;

/// Why proof bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("proof is {len} bytes, shorter than its {HEADER}-byte header: it was truncated")]
    NoHeader { len: usize },
    #[error(
        "proof format version {0} is unknown: this verifier reads version {VERSION} ({method})",
        method = super::PROOF_METHOD
    )]
    Version(u8),
    #[error("proof token ids are {0} bytes wide: expected 2 or 3")]
    IdWidth(u8),
    #[error("proof covers no token: every answer has at least one")]
    Empty,
    #[error(
        "proof is {len} bytes but its header announces {tokens} tokens, which take {expected}: it was truncated or padded"
    )]
    Length {
        len: usize,
        tokens: u32,
        expected: usize,
    },
}

/// The three logits of one generated token, in fixed point.
pub(super) type Marks = [i16; MARKS];

/// A decoded proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// sha256 of the prompt token ids, each as a little-endian u32.
    pub prompt_digest: [u8; 32],
    /// The generated tokens, the end-of-generation token included.
    pub tokens: Vec<u32>,
    /// Per generated token: chosen, max and mean logit times 256.
    pub marks: Vec<Marks>,
}

impl Proof {
    pub fn encode(&self) -> Vec<u8> {
        let width = id_width(&self.tokens);
        let mut out = Vec::with_capacity(HEADER + self.tokens.len() * (width + 2 * MARKS));
        out.push(VERSION);
        out.push(width as u8);
        // An answer never comes near 2^32 tokens.
        out.extend_from_slice(&(self.tokens.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.prompt_digest);
        for (token, marks) in self.tokens.iter().zip(&self.marks) {
            out.extend_from_slice(&token.to_le_bytes()[..width]);
            for mark in marks {
                out.extend_from_slice(&mark.to_le_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProofError> {
        let Some((header, body)) = bytes.split_at_checked(HEADER) else {
            return Err(ProofError::NoHeader { len: bytes.len() });
        };
        if header[0] != VERSION {
            return Err(ProofError::Version(header[0]));
        }
        let width = match header[1] {
            w @ (2 | 3) => usize::from(w),
            w => return Err(ProofError::IdWidth(w)),
        };
        let tokens = u32::from_le_bytes([header[2], header[3], header[4], header[5]]);
        if tokens == 0 {
            return Err(ProofError::Empty);
        }
        let per_token = width + 2 * MARKS;
        let expected = (tokens as usize)
            .checked_mul(per_token)
            .and_then(|n| n.checked_add(HEADER))
            .unwrap_or(usize::MAX);
        if bytes.len() != expected {
            return Err(ProofError::Length {
                len: bytes.len(),
                tokens,
                expected,
            });
        }
        let mut prompt_digest = [0u8; 32];
        prompt_digest.copy_from_slice(&header[6..]);
        let mut proof = Proof {
            prompt_digest,
            tokens: Vec::with_capacity(tokens as usize),
            marks: Vec::with_capacity(tokens as usize),
        };
        for entry in body.chunks_exact(per_token) {
            let (id, marks) = entry.split_at(width);
            let mut le = [0u8; 4];
            le[..width].copy_from_slice(id);
            proof.tokens.push(u32::from_le_bytes(le));
            let mut out = [0i16; MARKS];
            for (mark, bytes) in out.iter_mut().zip(marks.chunks_exact(2)) {
                *mark = i16::from_le_bytes([bytes[0], bytes[1]]);
            }
            proof.marks.push(out);
        }
        Ok(proof)
    }
}

/// Two bytes per id where every id fits (vocabularies up to 65,536), else three.
fn id_width(tokens: &[u32]) -> usize {
    if tokens.iter().all(|&t| t <= u32::from(u16::MAX)) {
        2
    } else {
        3
    }
}

/// sha256 of token ids, each as a little-endian u32.
pub fn tokens_digest(tokens: impl IntoIterator<Item = u32>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for token in tokens {
        hasher.update(token.to_le_bytes());
    }
    hasher.finalize().into()
}

/// The marks of one row of logits for the token chosen from it: a single
/// pass over the vocabulary, cheap beside the decode step that made it.
pub(crate) fn marks(logits: &[f32], token: u32) -> Marks {
    // Eight lanes so the compiler vectorizes the pass.
    let mut max = [f32::NEG_INFINITY; 8];
    let mut sum = [0.0f32; 8];
    let lanes = logits.chunks_exact(8);
    let tail = lanes.remainder();
    for chunk in lanes {
        for i in 0..8 {
            max[i] = max[i].max(chunk[i]);
            sum[i] += chunk[i];
        }
    }
    for (i, &x) in tail.iter().enumerate() {
        max[i] = max[i].max(x);
        sum[i] += x;
    }
    let max = max.into_iter().fold(f32::NEG_INFINITY, f32::max);
    let mean = sum.iter().sum::<f32>() / logits.len().max(1) as f32;
    let chosen = logits.get(token as usize).copied().unwrap_or(f32::NAN);
    [fixed(chosen), fixed(max), fixed(mean)]
}

/// Saturating fixed point; NaN becomes 0 (the `as` cast's rule).
fn fixed(logit: f32) -> i16 {
    (logit * SCALE).round() as i16
}

/// How far two marks are apart, in logits: the largest of the three
/// differences.
pub(crate) fn distance(a: &Marks, b: &Marks) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (i32::from(*x) - i32::from(*y)).unsigned_abs())
        .max()
        .unwrap_or(0) as f32
        / SCALE
}

/// The proof of one answer as the decode thread builds it.
pub(crate) struct Recorder {
    proof: Proof,
}

impl Recorder {
    pub(crate) fn new(prompt: impl IntoIterator<Item = u32>) -> Self {
        Self {
            proof: Proof {
                prompt_digest: tokens_digest(prompt),
                tokens: Vec::new(),
                marks: Vec::new(),
            },
        }
    }

    /// Records `token`, chosen from `logits`.
    pub(crate) fn record(&mut self, logits: &[f32], token: u32) {
        self.proof.tokens.push(token);
        self.proof.marks.push(marks(logits, token));
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        self.proof.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Proof {
        let mut recorder = Recorder::new([1, 2, 3]);
        recorder.record(&[0.5, -1.25, 30.0], 1);
        recorder.record(&[2.0, 1.0, 0.0], 0);
        recorder.proof
    }

    #[test]
    fn round_trips() {
        let proof = sample();
        let bytes = proof.encode();
        assert_eq!(bytes.len(), HEADER + 2 * 8);
        assert_eq!(Proof::decode(&bytes).expect("decodes"), proof);
        assert_eq!(proof.marks[0], [-320, 7680, 2496]);
    }

    #[test]
    fn wide_ids_take_three_bytes() {
        let mut proof = sample();
        proof.tokens[1] = 100_000;
        let bytes = proof.encode();
        assert_eq!(bytes[1], 3);
        assert_eq!(Proof::decode(&bytes).expect("decodes"), proof);
    }

    #[test]
    fn bad_bytes_are_errors() {
        let bytes = sample().encode();
        for cut in [0, 5, HEADER, bytes.len() - 1] {
            assert!(Proof::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(matches!(
            Proof::decode(&padded),
            Err(ProofError::Length { .. })
        ));
        let mut version = bytes.clone();
        version[0] = 9;
        assert!(matches!(
            Proof::decode(&version),
            Err(ProofError::Version(9))
        ));
        let mut huge = bytes;
        huge[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Proof::decode(&huge).is_err());
    }
}
