//! Log-probabilities of generated tokens, from the model's raw logits at
//! that position (a log-softmax over the whole vocabulary, before
//! temperature, penalties or grammar), as OpenAI reports them. Computed only
//! for requests that ask, so the plain path pays nothing.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::api::generation::{TokenLogprob, TopLogprob};

/// The entry of `token` given the logits of its position, with the `top`
/// most likely tokens (at most 20).
pub(super) fn entry(
    model: &LlamaModel,
    logits: &[f32],
    token: LlamaToken,
    top: usize,
) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln() + max;
    let logprob_of = |t: LlamaToken| {
        usize::try_from(t.0)
            .ok()
            .and_then(|i| logits.get(i))
            .map_or(f32::NEG_INFINITY, |l| l - log_sum)
    };
    let mut best: Vec<usize> = (0..logits.len()).collect();
    let top = top.min(best.len());
    if top > 0 {
        let by_logit = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]);
        best.select_nth_unstable_by(top - 1, by_logit);
        best.truncate(top);
        best.sort_unstable_by(by_logit);
    } else {
        best.clear();
    }
    let (text, bytes) = piece(model, token);
    TokenLogprob {
        token: text,
        logprob: logprob_of(token),
        bytes,
        top_logprobs: best
            .into_iter()
            .filter_map(|i| i32::try_from(i).ok().map(LlamaToken))
            .map(|t| {
                let (token, bytes) = piece(model, t);
                TopLogprob {
                    token,
                    logprob: logprob_of(t),
                    bytes,
                }
            })
            .collect(),
    }
}

fn piece(model: &LlamaModel, token: LlamaToken) -> (String, Vec<u8>) {
    let bytes = model.vocab().token_to_piece(token, false, None);
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}
