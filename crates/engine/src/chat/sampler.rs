//! How the next token is chosen, all llama.cpp samplers in one chain: an
//! optional grammar first (it only masks tokens, so constrained output is
//! always valid), then the repetition penalties, then greedy at temperature
//! 0 (deterministic) or top_k, top_p, min_p, temperature and a seeded draw.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

/// The sampling settings of one request, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u32,
    /// 0: off.
    pub top_k: i32,
    /// 0: off.
    pub min_p: f32,
    pub penalties: Penalties,
    pub grammar: Option<Grammar>,
}

/// OpenAI's presence and frequency penalties and llama.cpp's repeat
/// penalty, over the tokens generated so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Penalties {
    pub presence: f32,
    pub frequency: f32,
    /// 1: off.
    pub repeat: f32,
}

impl Default for Penalties {
    fn default() -> Self {
        Self {
            presence: 0.0,
            frequency: 0.0,
            repeat: 1.0,
        }
    }
}

/// A GBNF grammar the answer must follow. A lazy one applies only from the
/// trigger text on (a tool call the model may or may not start).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grammar {
    pub gbnf: String,
    pub trigger: Option<String>,
}

/// Tokens the penalties look back over.
const PENALTY_WINDOW: i32 = 1024;

impl Sampling {
    /// Plain sampling at `temperature`, no grammar, no penalties.
    pub(crate) fn new(temperature: f32, top_p: f32, seed: u32) -> Self {
        Self {
            temperature,
            top_p,
            seed,
            top_k: 0,
            min_p: 0.0,
            penalties: Penalties::default(),
            grammar: None,
        }
    }

    pub(crate) fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// The llama.cpp sampler chain; fails only on a grammar llama.cpp
    /// cannot parse.
    pub(crate) fn sampler(&self, model: &LlamaModel) -> Result<LlamaSampler, String> {
        let mut chain = Vec::new();
        if let Some(grammar) = &self.grammar {
            let sampler = match &grammar.trigger {
                None => LlamaSampler::grammar(model, &grammar.gbnf, "root"),
                Some(trigger) => {
                    LlamaSampler::grammar_lazy(model, &grammar.gbnf, "root", [trigger], &[])
                }
            };
            chain.push(sampler.map_err(|e| format!("the grammar does not parse: {e}"))?);
        }
        if self.penalties != Penalties::default() {
            chain.push(LlamaSampler::penalties(
                model.n_vocab(),
                PENALTY_WINDOW,
                self.penalties.repeat,
                self.penalties.frequency,
                self.penalties.presence,
            ));
        }
        if self.is_greedy() {
            chain.push(LlamaSampler::greedy());
        } else {
            if self.top_k > 0 {
                chain.push(LlamaSampler::top_k(self.top_k));
            }
            if self.top_p < 1.0 {
                chain.push(LlamaSampler::top_p(self.top_p, 1));
            }
            if self.min_p > 0.0 {
                chain.push(LlamaSampler::min_p(self.min_p, 1));
            }
            chain.push(LlamaSampler::temp(self.temperature));
            chain.push(LlamaSampler::dist(self.seed));
        }
        Ok(match chain.len() {
            1 => chain.remove(0),
            _ => LlamaSampler::chain_simple(chain),
        })
    }
}

/// A seed for requests that name none.
pub(crate) fn random_seed() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    // Truncation is the point: any 32 bits of a random hash will do.
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}
