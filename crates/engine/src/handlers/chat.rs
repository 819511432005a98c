//! `POST /v1/chat/completions`: checks the request, renders and tokenizes
//! the prompt, queues the job on the decode thread, and answers with one
//! JSON body or an SSE stream of chunks ending in `data: [DONE]`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::api::chat::{
    AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta,
    FinishReason,
};
use crate::api::{ApiError, OpenAiJson, Usage, response_id, unix_now};
use crate::chat::{Event, Job, Sampling, random_seed};
use crate::engine::Engine;

/// Stop sequences one request may give (OpenAI's limit).
const MAX_STOPS: usize = 4;

pub(super) async fn completions(
    State(engine): State<Arc<Engine>>,
    OpenAiJson(req): OpenAiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let stream = req.stream.unwrap_or(false);
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let (job, rx) = prepare(&engine, req)?;
    let prompt_tokens = job.prompt.len() as u32;
    engine.chat().submit(job)?;
    let answer = Answer {
        id: response_id("chatcmpl"),
        created: unix_now(),
        model: engine.chat_model_id().to_string(),
        prompt_tokens,
    };
    if stream {
        Ok(Sse::new(answer.stream(rx, include_usage)).into_response())
    } else {
        answer.collect(rx).await.map(IntoResponse::into_response)
    }
}

/// Checks every field and builds the decode job.
fn prepare(engine: &Engine, req: ChatRequest) -> Result<(Job, UnboundedReceiver<Event>), ApiError> {
    if let Some(n) = req.n
        && n != 1
    {
        return Err(ApiError::invalid(
            format!("n = {n} is not supported: this engine returns one choice"),
            Some("n"),
        ));
    }
    let temperature = req.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            format!("temperature {temperature} is out of range: expected 0 to 2"),
            Some("temperature"),
        ));
    }
    let top_p = req.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            format!("top_p {top_p} is out of range: expected more than 0, at most 1"),
            Some("top_p"),
        ));
    }
    let ctx = engine.chat().ctx_per_slot();
    let max_tokens = match req.max_completion_tokens.or(req.max_tokens) {
        Some(0) => {
            return Err(ApiError::invalid(
                "max_tokens must be at least 1",
                Some("max_tokens"),
            ));
        }
        Some(n) => n,
        None => ctx,
    };
    let stop = req.stop.map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > MAX_STOPS {
        return Err(ApiError::invalid(
            format!("stop has {} sequences: at most {MAX_STOPS}", stop.len()),
            Some("stop"),
        ));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for message in req.messages {
        let content = match message.content {
            Some(content) => content.into_text()?,
            None => String::new(),
        };
        messages.push((message.role, content));
    }
    let prompt_text = engine.chat().render(messages)?;
    let prompt = engine.chat().tokenize(&prompt_text);
    if prompt.is_empty() || prompt.len() >= ctx as usize {
        return Err(ApiError::invalid(
            format!(
                "this model's context holds {ctx} tokens per request, but the messages take {} tokens: shorten them",
                prompt.len()
            ),
            Some("messages"),
        )
        .with_code("context_length_exceeded"));
    }
    let sampling = Sampling {
        temperature,
        top_p,
        // Only the low 32 bits seed llama.cpp's sampler.
        seed: req.seed.map_or_else(random_seed, |s| s as u32),
    };
    let (events, rx) = unbounded_channel();
    let job = Job {
        prompt,
        max_tokens,
        sampling,
        stop,
        events,
    };
    Ok((job, rx))
}

/// The parts every form of the answer repeats.
struct Answer {
    id: String,
    created: u64,
    model: String,
    prompt_tokens: u32,
}

impl Answer {
    async fn collect(
        self,
        mut rx: UnboundedReceiver<Event>,
    ) -> Result<Json<ChatResponse>, ApiError> {
        let mut content = String::new();
        while let Some(event) = rx.recv().await {
            match event {
                Event::Text(text) => content.push_str(&text),
                Event::Done {
                    finish,
                    completion_tokens,
                } => {
                    let usage = Usage::new(self.prompt_tokens, completion_tokens);
                    self.log(finish, usage);
                    return Ok(Json(ChatResponse {
                        id: self.id,
                        object: "chat.completion",
                        created: self.created,
                        model: self.model,
                        choices: vec![Choice {
                            index: 0,
                            message: AssistantMessage {
                                role: "assistant",
                                content,
                            },
                            finish_reason: finish,
                        }],
                        usage,
                    }));
                }
                Event::Failed(message) => return Err(ApiError::internal(message)),
            }
        }
        Err(ApiError::unavailable("the decode thread stopped"))
    }

    fn stream(
        self,
        rx: UnboundedReceiver<Event>,
        include_usage: bool,
    ) -> impl Stream<Item = Result<SseEvent, Infallible>> {
        let first = self.chunk(
            Delta {
                role: Some("assistant"),
                content: Some(""),
            },
            None,
        );
        let state = StreamState {
            answer: self,
            rx,
            include_usage,
            queue: VecDeque::from([first]),
            done: false,
        };
        stream::unfold(state, |mut s| async move {
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

    fn chunk(&self, delta: Delta<'_>, finish_reason: Option<FinishReason>) -> SseEvent {
        data(&ChatChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
            }],
            usage: None,
        })
    }

    fn log(&self, finish: FinishReason, usage: Usage) {
        tracing::info!(
            id = %self.id,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            ?finish,
            "chat completion"
        );
    }
}

struct StreamState {
    answer: Answer,
    rx: UnboundedReceiver<Event>,
    include_usage: bool,
    queue: VecDeque<SseEvent>,
    done: bool,
}

impl StreamState {
    /// Waits for the decode thread and queues the SSE events it leads to.
    async fn next_events(&mut self) {
        let a = &self.answer;
        match self.rx.recv().await {
            Some(Event::Text(text)) => {
                let chunk = a.chunk(
                    Delta {
                        role: None,
                        content: Some(&text),
                    },
                    None,
                );
                self.queue.push_back(chunk);
            }
            Some(Event::Done {
                finish,
                completion_tokens,
            }) => {
                let usage = Usage::new(a.prompt_tokens, completion_tokens);
                a.log(finish, usage);
                self.queue
                    .push_back(a.chunk(Delta::default(), Some(finish)));
                if self.include_usage {
                    self.queue.push_back(data(&ChatChunk {
                        id: &a.id,
                        object: "chat.completion.chunk",
                        created: a.created,
                        model: &a.model,
                        choices: Vec::new(),
                        usage: Some(usage),
                    }));
                }
                self.queue.push_back(SseEvent::default().data("[DONE]"));
                self.done = true;
            }
            Some(Event::Failed(message)) => {
                self.queue.push_back(
                    SseEvent::default().data(ApiError::internal(message).body().to_string()),
                );
                self.done = true;
            }
            None => {
                let error = ApiError::unavailable("the decode thread stopped");
                self.queue
                    .push_back(SseEvent::default().data(error.body().to_string()));
                self.done = true;
            }
        }
    }
}

fn data<T: serde::Serialize>(value: &T) -> SseEvent {
    // These types always serialize; an empty event is the harmless fallback.
    SseEvent::default().data(serde_json::to_string(value).unwrap_or_default())
}
