//! How the next token is chosen: greedy at temperature 0 (deterministic),
//! otherwise temperature, nucleus (top_p) and a seeded draw, all llama.cpp
//! samplers.

use llama_cpp_2::sampling::LlamaSampler;

/// The sampling settings of one request, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u32,
}

impl Sampling {
    pub(crate) fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    pub(crate) fn sampler(&self) -> LlamaSampler {
        if self.is_greedy() {
            return LlamaSampler::greedy();
        }
        let mut chain = vec![LlamaSampler::temp(self.temperature)];
        if self.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(self.top_p, 1));
        }
        chain.push(LlamaSampler::dist(self.seed));
        LlamaSampler::chain_simple(chain)
    }
}

/// A seed for requests that name none.
pub(crate) fn random_seed() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    // Truncation is the point: any 32 bits of a random hash will do.
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}
