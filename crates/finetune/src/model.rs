//! The llama forward pass in plain differentiable candle ops, on the GGUF's
//! weights dequantized to f32 and kept in llama.cpp's layout (q and k rows
//! permuted for its NORM rope), so an adapter learnt here is the adapter
//! llama.cpp applies.

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::{CpuStorage, CustomOp1, D, DType, Device, Layout, Shape, Tensor};

use crate::FinetuneError;
use crate::lora::{LoraWeights, Target};

/// The shape of the model, read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// The longest sequence the model was trained for.
    pub context: usize,
    pub rope_theta: f32,
    pub rms_eps: f64,
}

struct Layer {
    attn_norm: Tensor,
    ffn_norm: Tensor,
    /// Indexed by [`Target::index`]: [out, in] each.
    linear: Vec<Tensor>,
}

/// The frozen base model: dequantized weights only, no Vars.
pub(crate) struct Llama {
    pub config: Config,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    /// The embedding again when the GGUF ties it (it has no `output.weight`).
    output: Tensor,
}

impl Llama {
    pub(crate) fn load(gguf: &Path) -> Result<Self, FinetuneError> {
        let load_err = |reason: String| FinetuneError::ModelLoad {
            path: gguf.to_path_buf(),
            reason,
        };
        let mut file = File::open(gguf).map_err(|e| load_err(e.to_string()))?;
        let content = Content::read(&mut file).map_err(|e| load_err(e.to_string()))?;
        let arch = meta_str(&content, "general.architecture").map_err(load_err)?;
        if arch != "llama" {
            return Err(load_err(format!(
                "architecture {arch:?}: only llama models can be fine-tuned"
            )));
        }
        let int = |key: &str| -> Result<usize, FinetuneError> {
            let value = content
                .metadata
                .get(&format!("llama.{key}"))
                .ok_or_else(|| load_err(format!("metadata llama.{key} is missing")))?;
            value
                .to_u32()
                .map(|v| v as usize)
                .map_err(|e| load_err(format!("metadata llama.{key}: {e}")))
        };
        let float = |key: &str, default: f32| -> Result<f32, FinetuneError> {
            match content.metadata.get(&format!("llama.{key}")) {
                None => Ok(default),
                Some(v) => v
                    .to_f32()
                    .map_err(|e| load_err(format!("metadata llama.{key}: {e}"))),
            }
        };
        let hidden = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let config = Config {
            layers: int("block_count")?,
            hidden,
            heads,
            kv_heads: int("attention.head_count_kv")?,
            head_dim: hidden / heads.max(1),
            context: int("context_length")?,
            // llama.cpp's defaults when the GGUF leaves them out.
            rope_theta: float("rope.freq_base", 10_000.0)?,
            rms_eps: f64::from(float("attention.layer_norm_rms_epsilon", 1e-5)?),
        };
        if config.heads == 0
            || config.kv_heads == 0
            || !config.heads.is_multiple_of(config.kv_heads)
            || !config.hidden.is_multiple_of(config.heads)
            || !config.head_dim.is_multiple_of(2)
        {
            return Err(load_err(format!("unsupported attention shape {config:?}")));
        }
        let mut tensor = |name: &str| -> Result<Tensor, FinetuneError> {
            let q = content
                .tensor(&mut file, name, &Device::Cpu)
                .map_err(|e| load_err(format!("tensor {name}: {e}")))?;
            Ok(q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?)
        };
        let embed = tensor("token_embd.weight")?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let linear = Target::ALL
                .iter()
                .map(|t| tensor(&format!("blk.{i}.{}.weight", t.gguf_name())))
                .collect::<Result<Vec<_>, _>>()?;
            layers.push(Layer {
                attn_norm: tensor(&format!("blk.{i}.attn_norm.weight"))?,
                ffn_norm: tensor(&format!("blk.{i}.ffn_norm.weight"))?,
                linear,
            });
        }
        let norm = tensor("output_norm.weight")?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            tensor("output.weight")?
        } else {
            embed.clone()
        };
        Ok(Self {
            config,
            embed,
            layers,
            norm,
            output,
        })
    }

    /// The shape [out, in] of a layer's projection.
    pub(crate) fn linear_dims(&self, target: Target) -> (usize, usize) {
        self.layers[0].linear[target.index()]
            .dims2()
            .unwrap_or((0, 0))
    }

    /// Final hidden states [batch, seq, hidden] of `tokens` [batch, seq],
    /// with `lora` added to the projections when given.
    pub(crate) fn hidden(
        &self,
        tokens: &Tensor,
        lora: Option<&LoraWeights>,
    ) -> Result<Tensor, FinetuneError> {
        let (batch, seq) = tokens.dims2()?;
        let c = &self.config;
        let mut x = self
            .embed
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((batch * seq, c.hidden))?;
        let (cos, sin) = rope_tables(c, seq)?;
        let mask = causal_mask(seq)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let proj = |input: &Tensor, target: Target| -> Result<Tensor, FinetuneError> {
                let mut y = frozen_linear(input, &layer.linear[target.index()])?;
                if let Some((a, b, scale)) = lora.and_then(|l| l.get(i, target)) {
                    let delta = input.matmul(&a.t()?)?.matmul(&b.t()?)?;
                    y = (y + (delta * scale)?)?;
                }
                Ok(y)
            };
            let h = rms_norm(&x, &layer.attn_norm, c.rms_eps)?;
            let heads = |t: Tensor, n: usize| -> Result<Tensor, FinetuneError> {
                Ok(t.reshape((batch, seq, n, c.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = rope(&heads(proj(&h, Target::Q)?, c.heads)?, &cos, &sin)?;
            let k = rope(&heads(proj(&h, Target::K)?, c.kv_heads)?, &cos, &sin)?;
            let v = heads(proj(&h, Target::V)?, c.kv_heads)?;
            let (k, v) = (repeat_kv(&k, c)?, repeat_kv(&v, c)?);
            let scores = (q.matmul(&k.t()?.contiguous()?)? / (c.head_dim as f64).sqrt())?
                .broadcast_add(&mask)?;
            let attn = softmax(&scores)?.matmul(&v)?;
            let attn = attn
                .transpose(1, 2)?
                .contiguous()?
                .reshape((batch * seq, c.heads * c.head_dim))?;
            x = (x + proj(&attn, Target::O)?)?;
            let h = rms_norm(&x, &layer.ffn_norm, c.rms_eps)?;
            let gate = proj(&h, Target::Gate)?;
            let up = proj(&h, Target::Up)?;
            let act = (gate.silu()? * up)?;
            x = (x + proj(&act, Target::Down)?)?;
        }
        Ok(rms_norm(&x, &self.norm, c.rms_eps)?.reshape((batch, seq, c.hidden))?)
    }

    /// Logits [n, vocab] of the hidden states `rows` [n, hidden].
    pub(crate) fn logits(&self, rows: &Tensor) -> Result<Tensor, FinetuneError> {
        frozen_linear(rows, &self.output)
    }
}

/// `x W^T` for a frozen `w` [out, in]. A plain matmul's backward pass
/// also computes the gradient of `w`, as costly as the product itself and
/// thrown away here: this op's backward computes only the input's.
fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor, FinetuneError> {
    Ok(x.apply_op1(Frozen(w.clone()))?)
}

struct Frozen(Tensor);

impl CustomOp1 for Frozen {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("frozen-linear takes a contiguous f32 input")
        };
        let x = Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.0.t()?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1()?), shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.0)?))
    }
}

fn meta_str(content: &Content, key: &str) -> Result<String, String> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| format!("metadata {key} is missing"))?
        .to_string()
        .cloned()
        .map_err(|e| format!("metadata {key}: {e}"))
}

/// RMSNorm from basic ops: candle_nn's fused one has no backward pass.
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
    x.broadcast_div(&rms)?.broadcast_mul(weight)
}

/// Softmax over the last dimension from basic ops (differentiable).
fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// log-softmax over the last dimension from basic ops (differentiable).
pub(crate) fn log_softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let diff = x.broadcast_sub(&max)?;
    let lse = diff.exp()?.sum_keepdim(D::Minus1)?.log()?;
    diff.broadcast_sub(&lse)
}

/// cos and sin [seq, head_dim/2, 1] of llama.cpp's NORM rope.
fn rope_tables(c: &Config, seq: usize) -> candle_core::Result<(Tensor, Tensor)> {
    let half = c.head_dim / 2;
    let mut cos = Vec::with_capacity(seq * half);
    let mut sin = Vec::with_capacity(seq * half);
    for p in 0..seq {
        for i in 0..half {
            let freq = f64::from(c.rope_theta).powf(-2.0 * i as f64 / c.head_dim as f64);
            let angle = p as f64 * freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (seq, half, 1), &Device::Cpu)?,
        Tensor::from_vec(sin, (seq, half, 1), &Device::Cpu)?,
    ))
}

/// Rotates adjacent pairs (x[2i], x[2i+1]) of `x` [batch, heads, seq,
/// head_dim], as llama.cpp's NORM rope does (candle_nn's rope has no
/// backward pass).
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    let pairs = x.reshape((b, h, t, d / 2, 2))?;
    let x0 = pairs.narrow(4, 0, 1)?;
    let x1 = pairs.narrow(4, 1, 1)?;
    let r0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
    let r1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
    Tensor::cat(&[r0, r1], 4)?.reshape((b, h, t, d))
}

/// Grouped-query attention: query head `h` reads kv head `h / n_rep`.
fn repeat_kv(x: &Tensor, c: &Config) -> candle_core::Result<Tensor> {
    let n_rep = c.heads / c.kv_heads;
    if n_rep == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, d) = x.dims4()?;
    Tensor::cat(&vec![x; n_rep], 2)?.reshape((b, kv * n_rep, t, d))
}

fn causal_mask(seq: usize) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (seq, seq), &Device::Cpu)
}
