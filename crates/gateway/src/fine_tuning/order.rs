//! Ordering a fine-tuning job (`POST /v1/fine_tuning/jobs`): OpenAI's
//! request read and checked, the cheapest listed fine-tuning service of the
//! model whose on-chain terms take it, priced by the provider's token
//! count, the order signed with the user's voucher key and started at the
//! provider.

use super::{
    FtError, authorize, delivery, files, hold, provider,
    record::{JobRecord, Status},
};
use crate::Gateway;
use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use std::sync::Arc;
use tracing::Instrument;
use zg_client::ServiceFilter;
use zg_core::{
    B128, Service, ServiceKind, U256,
    fine_tuning::{CountRequest, Hyperparameters, Order, StartJob, file_hash, trained_tokens},
    format_amount, now_unix,
};

/// The most epochs and the largest batch and rank asked of a provider
/// (the service's terms may allow fewer epochs).
const MAX_BATCH: u32 = 1024;
const MAX_RANK: u32 = 256;
const MAX_SUFFIX: usize = 64;
/// How long the provider may take to start an order (the order's
/// `startBy`): it starts one as it answers, so minutes are plenty, and an
/// order it refused or lost cannot be started later than this.
const ORDER_WINDOW_SECS: u64 = 600;

#[derive(Debug, Deserialize)]
pub(super) struct CreateJob {
    model: String,
    training_file: String,
    validation_file: Option<String>,
    suffix: Option<String>,
    seed: Option<u64>,
    hyperparameters: Option<Knobs>,
    method: Option<Method>,
    /// Our extension: the LoRA adapter's rank.
    lora_rank: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
struct Knobs {
    n_epochs: Option<Knob>,
    batch_size: Option<Knob>,
    learning_rate_multiplier: Option<Knob>,
}

/// A hyperparameter: a number, or "auto" (the service's default).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Knob {
    Number(f64),
    Text(String),
}

#[derive(Debug, Deserialize)]
struct Method {
    #[serde(rename = "type")]
    kind: String,
    supervised: Option<Supervised>,
}

#[derive(Debug, Deserialize)]
struct Supervised {
    hyperparameters: Option<Knobs>,
}

/// The knob's number, None for "auto" or absent.
fn knob(k: Option<&Knob>, param: &'static str) -> Result<Option<f64>, FtError> {
    match k {
        None => Ok(None),
        Some(Knob::Text(t)) if t == "auto" => Ok(None),
        Some(Knob::Text(t)) => Err(FtError::invalid(
            format!("{param} is {t:?}: give a number or \"auto\""),
            param,
        )),
        Some(Knob::Number(n)) => Ok(Some(*n)),
    }
}

fn whole(v: Option<f64>, default: u32, max: u32, param: &'static str) -> Result<u32, FtError> {
    let Some(v) = v else { return Ok(default) };
    if v.fract() != 0.0 || v < 1.0 || v > f64::from(max) {
        return Err(FtError::invalid(
            format!("{param} is {v}: give a whole number from 1 to {max}, or \"auto\""),
            param,
        ));
    }
    Ok(v as u32)
}

impl CreateJob {
    fn hyperparameters(&self) -> Result<Hyperparameters, FtError> {
        let knobs = match &self.method {
            Some(m) if m.kind != "supervised" => {
                return Err(FtError::invalid(
                    format!(
                        "method {:?} is not offered: fine-tuning here is \"supervised\" (LoRA)",
                        m.kind
                    ),
                    "method",
                ));
            }
            Some(Method {
                supervised:
                    Some(Supervised {
                        hyperparameters: Some(h),
                    }),
                ..
            }) => h,
            _ => self.hyperparameters.as_ref().unwrap_or(&Knobs::EMPTY),
        };
        let defaults = Hyperparameters::default();
        let epochs = knob(knobs.n_epochs.as_ref(), "n_epochs")?;
        let batch = knob(knobs.batch_size.as_ref(), "batch_size")?;
        let multiplier = knob(
            knobs.learning_rate_multiplier.as_ref(),
            "learning_rate_multiplier",
        )?;
        let learning_rate_multiplier_ppm = match multiplier {
            None => defaults.learning_rate_multiplier_ppm,
            Some(m) => Hyperparameters::multiplier_ppm(m).ok_or_else(|| {
                FtError::invalid(
                    format!("learning_rate_multiplier is {m}: give a positive number (1 is the service's base rate)"),
                    "learning_rate_multiplier",
                )
            })?,
        };
        Ok(Hyperparameters {
            epochs: whole(epochs, defaults.epochs, u32::MAX, "n_epochs")?,
            batch_size: whole(batch, defaults.batch_size, MAX_BATCH, "batch_size")?,
            rank: whole(
                self.lora_rank.map(f64::from),
                defaults.rank,
                MAX_RANK,
                "lora_rank",
            )?,
            learning_rate_multiplier_ppm,
        })
    }

    fn suffix(&self) -> Result<Option<String>, FtError> {
        let Some(s) = &self.suffix else {
            return Ok(None);
        };
        // It becomes part of a model name and of the adapter's file name.
        let fine = !s.is_empty()
            && s.len() <= MAX_SUFFIX
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !fine {
            return Err(FtError::invalid(
                format!("suffix {s:?}: give 1 to {MAX_SUFFIX} letters, digits, '-', '_' or '.'"),
                "suffix",
            ));
        }
        Ok(Some(s.clone()))
    }
}

impl Knobs {
    const EMPTY: Knobs = Knobs {
        n_epochs: None,
        batch_size: None,
        learning_rate_multiplier: None,
    };
}

/// A training or validation file's bytes, as text, checked to be a
/// fine-tuning upload.
async fn training_text(gw: &Gateway, id: &str, param: &'static str) -> Result<String, FtError> {
    let missing = |e| match e {
        FtError::NotFound { .. } => FtError::invalid(
            format!(
                "{param} {id:?} is not an uploaded file: upload it with POST /v1/files (purpose \"fine-tune\")"
            ),
            param,
        ),
        other => other,
    };
    let meta = files::meta(gw, id).await.map_err(missing)?;
    if meta.purpose != "fine-tune" {
        return Err(FtError::invalid(
            format!(
                "{param} {id:?} was uploaded with purpose {:?}: upload it again with purpose \"fine-tune\"",
                meta.purpose
            ),
            param,
        ));
    }
    let bytes = files::bytes(gw, id).await.map_err(missing)?;
    String::from_utf8(bytes)
        .map_err(|_| FtError::invalid(format!("{param} {id:?} is not UTF-8 text"), param))
}

/// Whether `s` offers `model`: by name, or by the hex of its weights' digest.
fn offers(s: &Service, model: &str) -> bool {
    let hex = model.strip_prefix("0x").unwrap_or(model);
    s.model == model || hex.eq_ignore_ascii_case(&hex::encode(s.model_digest))
}

/// The service chosen for a job, and what it will cost at most.
struct Choice<'a> {
    service: &'a Service,
    tokens: u64,
    price_per_token: U256,
    max_fee: U256,
}

/// The cheapest service in `offered` (cheapest first) whose terms accept
/// the job and that counts the file; otherwise why none did.
async fn choose<'a>(
    gw: &Gateway,
    offered: &[&'a Service],
    h: &Hyperparameters,
    training: &str,
    file_bytes: u64,
) -> Result<Choice<'a>, FtError> {
    let mut passed = Vec::new();
    for &s in offered {
        let who = format!("{} at {}", s.name, s.provider);
        let terms = match gw.chain.fine_tuning_terms(s.provider, &s.name).await {
            Ok(t) => t,
            Err(e) => {
                passed.push(format!("{who}: its terms do not read ({e})"));
                continue;
            }
        };
        if !terms.base_models.contains(&s.model_digest) {
            passed.push(format!(
                "{who}: its terms do not list base model {}",
                s.model_digest
            ));
            continue;
        }
        if h.epochs > terms.max_epochs {
            passed.push(format!("{who}: trains at most {} epochs", terms.max_epochs));
            continue;
        }
        if file_bytes > terms.max_file_bytes {
            passed.push(format!(
                "{who}: takes files up to {} bytes, these are {file_bytes}",
                terms.max_file_bytes
            ));
            continue;
        }
        let ask = CountRequest {
            service: s.name.clone(),
            training: training.to_owned(),
        };
        let count = match provider::count(gw.payer.http(), &s.url, &ask).await {
            Ok(c) => c,
            Err(e) if e.is_refusal() => {
                return Err(FtError::invalid(
                    format!("the training file was refused: {e}"),
                    "training_file",
                ));
            }
            Err(e) => {
                passed.push(format!("{who}: {e}"));
                continue;
            }
        };
        if count.price_per_token > s.prices.input {
            passed.push(format!(
                "{who}: asks {} 0G per token, above its listed {}",
                format_amount(count.price_per_token),
                format_amount(s.prices.input)
            ));
            continue;
        }
        // The contract refuses a zero maximum: a free service still
        // reserves one neuron.
        let max_fee =
            (trained_tokens(count.tokens, h.epochs) * count.price_per_token).max(U256::from(1));
        return Ok(Choice {
            service: s,
            tokens: count.tokens,
            price_per_token: count.price_per_token,
            max_fee,
        });
    }
    Err(FtError::invalid(
        format!(
            "no fine-tuning service of this model takes the job: {}",
            passed.join("; ")
        ),
        "model",
    ))
}

/// `POST /v1/fine_tuning/jobs`.
pub(super) async fn create(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let span = tracing::info_span!("fine_tuning_order", user = %gw.payer.user());
    match create_job(&gw, &headers, &body).instrument(span).await {
        Ok(record) => {
            delivery::spawn(gw, record.id);
            Json(record.to_openai()).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn create_job(gw: &Gateway, headers: &HeaderMap, body: &[u8]) -> Result<JobRecord, FtError> {
    authorize(gw, headers).await?;
    gw.fine_tuning.dir()?;
    let req: CreateJob = serde_json::from_slice(body).map_err(|e| FtError::Invalid {
        message: format!("the body is not a fine-tuning job request: {e}"),
        param: None,
    })?;
    let h = req.hyperparameters()?;
    let suffix = req.suffix()?;
    let training = training_text(gw, &req.training_file, "training_file").await?;
    let validation = match &req.validation_file {
        Some(id) => Some(training_text(gw, id, "validation_file").await?),
        None => None,
    };
    let file_bytes = (training.len() + validation.as_ref().map_or(0, String::len)) as u64;

    let services = gw.services(false).await?;
    let limits = ServiceFilter {
        only: gw.config.limits.only.clone(),
        ignore: gw.config.limits.ignore.clone(),
        ..Default::default()
    };
    let mut offered: Vec<&Service> = services
        .iter()
        .filter(|s| ServiceKind::parse(&s.kind) == ServiceKind::FineTuning && limits.matches(s))
        .filter(|s| offers(s, &req.model))
        .collect();
    if offered.is_empty() {
        let mut listed: Vec<&str> = services
            .iter()
            .filter(|s| ServiceKind::parse(&s.kind) == ServiceKind::FineTuning && limits.matches(s))
            .map(|s| s.model.as_str())
            .collect();
        listed.sort_unstable();
        listed.dedup();
        let listed = if listed.is_empty() {
            "none is listed".to_owned()
        } else {
            format!("listed for fine-tuning: {}", listed.join(", "))
        };
        return Err(FtError::invalid(
            format!(
                "no fine-tuning service offers model {:?} ({listed})",
                req.model
            ),
            "model",
        ));
    }
    offered.sort_by_key(|s| s.prices.input);
    let choice = choose(gw, &offered, &h, &training, file_bytes).await?;
    let s = choice.service;

    let user = gw.payer.user();
    let account = gw.chain.account(user, s.provider).await?;
    // Vouchers signed to this provider and not settled yet are paid from the same escrow.
    let signed = gw.payer.book().tab(s.provider).await?.authorized;
    let unsettled = signed.saturating_sub(account.settled);
    let free = account.escrow.saturating_sub(unsettled);
    if free < choice.max_fee {
        let short = format_amount(choice.max_fee - free);
        return Err(FtError::Escrow(format!(
            "escrow for {user} at provider {} is {} 0G, {} 0G of it backs answers not settled yet, and this job needs up to {} 0G ({} tokens x {} epochs x {} 0G per token): fund more with `zg-serving user fund --provider {} --amount {short}`",
            s.provider,
            format_amount(account.escrow),
            format_amount(unsettled),
            format_amount(choice.max_fee),
            choice.tokens,
            h.epochs,
            format_amount(choice.price_per_token),
            s.provider,
        )));
    }

    let order = Order {
        user,
        provider: s.provider,
        service: s.name.clone(),
        base_model: s.model_digest,
        training_file: file_hash(training.as_bytes()),
        validation_file: validation.as_deref().map(|v| file_hash(v.as_bytes())),
        hyperparameters: h,
        max_fee: choice.max_fee,
        start_by: now_unix() + ORDER_WINDOW_SECS,
        nonce: B128::from(rand::random::<[u8; 16]>()),
    };
    let (chain_id, contract) = (gw.chain.chain_id(), gw.chain.fine_tuning_address());
    let id = order.digest(chain_id, contract);
    let signature = order.sign(gw.payer.signing_key(), chain_id, contract);
    let mut record = JobRecord {
        id,
        created_at: now_unix(),
        finished_at: None,
        model: s.model.clone(),
        suffix,
        seed: req.seed.unwrap_or_else(|| u64::from(rand::random::<u32>())),
        training_file: req.training_file.clone(),
        validation_file: req.validation_file.clone(),
        url: s.url.clone(),
        order: order.clone(),
        status: Status::ValidatingFiles,
        trained_tokens: None,
        fee: None,
        deliverable: None,
        state_on_chain: None,
        steps: Vec::new(),
        checkpoints: Vec::new(),
        notes: Vec::new(),
        error: None,
        adapter_path: None,
        fine_tuned_model: None,
        key: None,
    };
    record.note(
        "info",
        format!(
            "Ordered from {} at {}: up to {} 0G for {} tokens x {} epochs",
            s.name,
            s.provider,
            format_amount(choice.max_fee),
            choice.tokens,
            h.epochs
        ),
    );
    // Saved before it is sent: a job the provider started while its answer
    // was lost is still followed (and its reservation accounted for).
    gw.fine_tuning.save(record.clone()).await?;
    let start = StartJob {
        order,
        signature,
        training,
        validation,
    };
    // The API key's spend limit covers the job's most: held while the
    // provider starts it, spent once the reservation may exist, and what
    // the job did not cost given back when it ends (`Gateway::update_job`).
    let key = hold(gw, headers, choice.max_fee).await?;
    record.key = key.key_id.clone();
    let started = provider::start(gw.payer.http(), &s.url, &start).await;
    let e = match started {
        Ok(view) => {
            record.status = if view.status == zg_core::fine_tuning::JobStatus::Running {
                Status::Running
            } else {
                Status::Queued
            };
            record.note(
                "info",
                "Started at the provider; the fee is reserved on chain",
            );
            gw.keys.close(key, choice.max_fee).await?;
            gw.fine_tuning.save(record.clone()).await?;
            return Ok(record);
        }
        Err(e) => e,
    };
    // Not started on chain and the provider's word is that it did not (or
    // it never got the order): nothing to follow. An answer lost on the way
    // is followed instead, since the provider may still start the order
    // until its startBy.
    let unstarted = gw
        .chain
        .job(id)
        .await
        .is_ok_and(|j| j.state == zg_chain::JobState::None);
    if e.is_refusal() || (unstarted && !e.may_have_acted()) {
        gw.keys.close(key, U256::ZERO).await?;
        gw.fine_tuning.forget(&id).await?;
        return Err(match e {
            e if e.is_refusal() => FtError::invalid(
                format!("the provider refused the job: {e}"),
                "training_file",
            ),
            e => FtError::Provider(e.to_string()),
        });
    }
    record.status = Status::Queued;
    record.note(
        "warn",
        format!(
            "The provider's answer to the start was lost ({e}); following the job on chain (the provider can start it until unix time {})",
            record.order.start_by
        ),
    );
    gw.keys.close(key, choice.max_fee).await?;
    gw.fine_tuning.save(record.clone()).await?;
    Ok(record)
}
