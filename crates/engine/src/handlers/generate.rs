//! What chat and legacy completions share: checking the sampling fields,
//! queueing one decode job per choice, and turning the jobs' events into one
//! JSON body or an SSE stream ending in `data: [DONE]`. Each endpoint says
//! through [`Answer`] what its bodies and chunks look like.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::Json;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, BoxStream, Stream, StreamExt, select_all};
use llama_cpp_2::token::LlamaToken;
use serde_json::Value;
use tokio::sync::mpsc::unbounded_channel;

use crate::api::chat::FinishReason;
use crate::api::generation::{Generation, Stop, TokenLogprob};
use crate::api::{ApiError, Usage};
use crate::chat::{Event, Job, Penalties, Sampling, random_seed};
use crate::engine::Engine;

/// Stop sequences one request may give (OpenAI's limit).
const MAX_STOPS: usize = 4;
/// Choices one request may ask for; each takes a slot.
pub(super) const MAX_CHOICES: u32 = 8;
/// Alternatives per token OpenAI allows.
pub(super) const MAX_TOP_LOGPROBS: u32 = 20;

/// The checked generation settings of a request.
#[derive(Debug)]
pub(super) struct Plan {
    pub sampling: Sampling,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub n: u32,
    pub top_logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
    /// Whether the jobs may reuse the KV of a cached prompt prefix.
    pub cache_prompt: bool,
}

/// Checks the shared fields; `max_tokens` is the endpoint's limit field.
pub(super) fn plan(generation: Generation, max_tokens: Option<u32>) -> Result<Plan, ApiError> {
    let g = generation;
    let n = g.n.unwrap_or(1);
    if !(1..=MAX_CHOICES).contains(&n) {
        return Err(ApiError::invalid(
            format!("n = {n} is out of range: expected 1 to {MAX_CHOICES}"),
            Some("n"),
        ));
    }
    let temperature = g.temperature.unwrap_or(1.0);
    let top_p = g.top_p.unwrap_or(1.0);
    let min_p = g.min_p.unwrap_or(0.0);
    let top_k = g.top_k.unwrap_or(0);
    let presence = g.presence_penalty.unwrap_or(0.0);
    let frequency = g.frequency_penalty.unwrap_or(0.0);
    let repeat = g.repeat_penalty.unwrap_or(1.0);
    let penalty = (-2.0..=2.0, "-2 to 2");
    for (field, value, ok, expected) in [
        (
            "temperature",
            temperature,
            (0.0..=2.0).contains(&temperature),
            "0 to 2",
        ),
        (
            "top_p",
            top_p,
            top_p > 0.0 && top_p <= 1.0,
            "more than 0, at most 1",
        ),
        ("min_p", min_p, (0.0..=1.0).contains(&min_p), "0 to 1"),
        ("top_k", top_k as f32, top_k >= 0, "0 (off) or more"),
        (
            "presence_penalty",
            presence,
            penalty.0.contains(&presence),
            penalty.1,
        ),
        (
            "frequency_penalty",
            frequency,
            penalty.0.contains(&frequency),
            penalty.1,
        ),
        (
            "repeat_penalty",
            repeat,
            repeat > 0.0 && repeat <= 10.0,
            "more than 0, at most 10 (1 is off)",
        ),
    ] {
        if !ok {
            return Err(ApiError::invalid(
                format!("{field} {value} is out of range: expected {expected}"),
                Some(field),
            ));
        }
    }
    if g.store == Some(true) {
        return Err(ApiError::invalid(
            "store: true is not supported: this engine keeps no completions (leave it out or false)",
            Some("store"),
        ));
    }
    if let Some(tier) = g
        .service_tier
        .as_deref()
        .filter(|t| !matches!(*t, "auto" | "default"))
    {
        return Err(ApiError::invalid(
            format!(
                "service_tier {tier:?} is not offered: this engine has one tier (auto or default)"
            ),
            Some("service_tier"),
        ));
    }
    if max_tokens == Some(0) {
        return Err(ApiError::invalid(
            "max_tokens must be at least 1",
            Some("max_tokens"),
        ));
    }
    let stop = g.stop.map(Stop::into_vec).unwrap_or_default();
    if stop.len() > MAX_STOPS {
        return Err(ApiError::invalid(
            format!("stop has {} sequences: at most {MAX_STOPS}", stop.len()),
            Some("stop"),
        ));
    }
    let mut sampling = Sampling::new(
        temperature,
        top_p,
        // Only the low 32 bits seed llama.cpp's sampler.
        g.seed.map_or_else(random_seed, |s| s as u32),
    );
    sampling.top_k = top_k;
    sampling.min_p = min_p;
    sampling.penalties = Penalties {
        presence,
        frequency,
        repeat,
    };
    Ok(Plan {
        sampling,
        max_tokens,
        stop,
        n,
        top_logprobs: None,
        stream: g.stream.unwrap_or(false),
        include_usage: g
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        cache_prompt: g.cache_prompt.unwrap_or(true),
    })
}

/// One choice's events, tagged with its index.
pub(super) type Events = BoxStream<'static, (u32, Event)>;

/// Queues `prompt` and answers through `answer`. With proofs on, each
/// choice's proof of model is stored under the answer's id (choice `i` > 0
/// under `{id}-{i}`), which the `X-Engine-Proof-Id` header names.
pub(super) async fn run<A: Answer>(
    engine: &Engine,
    prompt: Vec<LlamaToken>,
    plan: &Plan,
    param: &'static str,
    answer: A,
) -> Result<Response, ApiError> {
    let id = answer.id().to_string();
    let prompt_tokens = prompt.len() as u32;
    let events = submit(engine, prompt, plan, param, &id)?;
    let response = respond(answer, events, prompt_tokens, plan).await?;
    let proof_header = engine.proofs().map(|_| super::proofs::id_header(&id));
    Ok((proof_header, response).into_response())
}

/// Checks that `prompt` fits a slot and queues one job per choice (choice
/// `i` draws with seed + i, so sampled choices differ and still repeat).
fn submit(
    engine: &Engine,
    prompt: Vec<LlamaToken>,
    plan: &Plan,
    param: &'static str,
    id: &str,
) -> Result<Events, ApiError> {
    let ctx = engine.chat().ctx_per_slot();
    if prompt.is_empty() || prompt.len() >= ctx as usize {
        return Err(ApiError::invalid(
            format!(
                "this model's context holds {ctx} tokens per request, but the {param} take {} tokens: shorten them",
                prompt.len()
            ),
            Some(param),
        )
        .with_code("context_length_exceeded"));
    }
    let mut choices = Vec::with_capacity(plan.n as usize);
    for index in 0..plan.n {
        let mut sampling = plan.sampling.clone();
        sampling.seed = sampling.seed.wrapping_add(index);
        let (events, rx) = unbounded_channel();
        engine.chat().submit(Job {
            prompt: prompt.clone(),
            max_tokens: plan.max_tokens.unwrap_or(ctx),
            sampling,
            stop: plan.stop.clone(),
            top_logprobs: plan.top_logprobs,
            events,
            id: match index {
                0 => id.to_string(),
                i => format!("{id}-{i}"),
            },
            cache_prompt: plan.cache_prompt,
        })?;
        let events = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
        choices.push(events.map(move |e| (index, e)).boxed());
    }
    Ok(select_all(choices).boxed())
}

/// An endpoint's shape of the answer, fed the events of every choice.
/// Each call returns the stream chunks it makes (ignored when not streaming).
pub(super) trait Answer: Send + 'static {
    /// Chunks before any text.
    fn start(&mut self) -> Vec<Value>;
    fn text(&mut self, index: u32, text: String, logprob: Option<TokenLogprob>) -> Vec<Value>;
    fn done(&mut self, index: u32, finish: FinishReason) -> Vec<Value>;
    /// The chunk carrying the usage (`include_usage`).
    fn usage_chunk(&self, usage: Usage) -> Value;
    /// The whole, non-streamed body.
    fn body(self, usage: Usage) -> Value;
    /// The response id, for the log.
    fn id(&self) -> &str;
}

fn log(id: &str, usage: Usage, choices: u32) {
    tracing::info!(
        id,
        prompt_tokens = usage.prompt_tokens,
        cached_tokens = usage.prompt_tokens_details.cached_tokens,
        completion_tokens = usage.completion_tokens,
        choices,
        "completion"
    );
}

/// The usage of the choices ended so far. It counts the prompt once (each
/// choice read it, but OpenAI bills it once) and the tokens of every choice;
/// its cached tokens are the fewest any choice took from the cache, the part
/// of the prompt that no choice computed.
#[derive(Debug, Default)]
struct Tally {
    completion_tokens: u32,
    cached_tokens: Option<u32>,
}

impl Tally {
    fn add(&mut self, completion_tokens: u32, cached_tokens: u32) {
        self.completion_tokens += completion_tokens;
        self.cached_tokens = Some(
            self.cached_tokens
                .map_or(cached_tokens, |c| c.min(cached_tokens)),
        );
    }

    fn usage(&self, prompt_tokens: u32) -> Usage {
        Usage::new(
            prompt_tokens,
            self.completion_tokens,
            self.cached_tokens.unwrap_or(0),
        )
    }
}

/// Feeds the events to `answer` and answers with JSON or SSE.
async fn respond<A: Answer>(
    mut answer: A,
    mut events: Events,
    prompt_tokens: u32,
    plan: &Plan,
) -> Result<Response, ApiError> {
    if plan.stream {
        let queue = answer.start().into_iter().map(data).collect();
        let state = StreamState {
            answer,
            events,
            open: plan.n,
            choices: plan.n,
            tally: Tally::default(),
            prompt_tokens,
            include_usage: plan.include_usage,
            queue,
            done: false,
        };
        return Ok(Sse::new(state.into_stream()).into_response());
    }
    let mut open = plan.n;
    let mut tally = Tally::default();
    while open > 0 {
        match events.next().await {
            Some((index, Event::Text { text, logprob })) => {
                answer.text(index, text, logprob);
            }
            Some((
                index,
                Event::Done {
                    finish,
                    completion_tokens,
                    cached_tokens,
                },
            )) => {
                tally.add(completion_tokens, cached_tokens);
                open -= 1;
                answer.done(index, finish);
            }
            Some((_, Event::Failed(message))) => return Err(ApiError::internal(message)),
            None => return Err(ApiError::unavailable("the decode thread stopped")),
        }
    }
    let usage = tally.usage(prompt_tokens);
    log(answer.id(), usage, plan.n);
    Ok(Json(answer.body(usage)).into_response())
}

struct StreamState<A> {
    answer: A,
    events: Events,
    open: u32,
    choices: u32,
    tally: Tally,
    prompt_tokens: u32,
    include_usage: bool,
    queue: VecDeque<SseEvent>,
    done: bool,
}

impl<A: Answer> StreamState<A> {
    fn into_stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> {
        stream::unfold(self, |mut s| async move {
            loop {
                if let Some(event) = s.queue.pop_front() {
                    return Some((Ok(event), s));
                }
                if s.done {
                    return None;
                }
                s.next_events().await;
            }
        })
    }

    /// Waits for the decode thread and queues the SSE events it leads to.
    async fn next_events(&mut self) {
        let chunks = match self.events.next().await {
            Some((index, Event::Text { text, logprob })) => self.answer.text(index, text, logprob),
            Some((
                index,
                Event::Done {
                    finish,
                    completion_tokens,
                    cached_tokens,
                },
            )) => {
                self.tally.add(completion_tokens, cached_tokens);
                self.open -= 1;
                self.answer.done(index, finish)
            }
            Some((_, Event::Failed(message))) => return self.fail(ApiError::internal(message)),
            None => return self.fail(ApiError::unavailable("the decode thread stopped")),
        };
        self.queue.extend(chunks.into_iter().map(data));
        if self.open == 0 {
            let usage = self.tally.usage(self.prompt_tokens);
            log(self.answer.id(), usage, self.choices);
            if self.include_usage {
                self.queue.push_back(data(self.answer.usage_chunk(usage)));
            }
            self.queue.push_back(SseEvent::default().data("[DONE]"));
            self.done = true;
        }
    }

    fn fail(&mut self, error: ApiError) {
        self.queue
            .push_back(SseEvent::default().data(error.body().to_string()));
        self.done = true;
    }
}

fn data(value: Value) -> SseEvent {
    SseEvent::default().data(value.to_string())
}
