//! The LoRA adapter: which projections it adapts, its A and B matrices in
//! the shapes llama.cpp expects, and its export as a llama.cpp GGUF LoRA
//! file.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::FinetuneError;

/// A projection of a llama block that the adapter changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub(crate) const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The tensor's name in a llama GGUF, without `blk.{i}.` and `.weight`.
    pub(crate) fn gguf_name(self) -> &'static str {
        match self {
            Target::Q => "attn_q",
            Target::K => "attn_k",
            Target::V => "attn_v",
            Target::O => "attn_output",
            Target::Gate => "ffn_gate",
            Target::Up => "ffn_up",
            Target::Down => "ffn_down",
        }
    }
}

/// The names of layer `layer`'s A and B for `target`, as llama.cpp reads them.
pub(crate) fn tensor_names(layer: usize, target: Target) -> (String, String) {
    let base = format!("blk.{layer}.{}.weight", target.gguf_name());
    (format!("{base}.lora_a"), format!("{base}.lora_b"))
}

/// A and B tensors by name, as the forward pass reads them: A is
/// [rank, in] and B [out, rank], so a projection becomes
/// `x W^T + scale x A^T B^T`, which is llama.cpp's `W x + scale B (A x)`.
pub(crate) struct LoraWeights {
    pub tensors: BTreeMap<String, Tensor>,
    pub scale: f64,
}

impl LoraWeights {
    pub(crate) fn get(&self, layer: usize, target: Target) -> Option<(&Tensor, &Tensor, f64)> {
        let (a, b) = tensor_names(layer, target);
        Some((self.tensors.get(&a)?, self.tensors.get(&b)?, self.scale))
    }
}

/// A trained LoRA adapter.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub(crate) rank: usize,
    pub(crate) alpha: f32,
    pub(crate) tensors: BTreeMap<String, Tensor>,
}

impl Adapter {
    /// The adapter's rank r; llama.cpp scales it by alpha / r.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Every A and B, flattened, in name order: for comparing adapters.
    pub fn values(&self) -> Result<Vec<f32>, FinetuneError> {
        let mut out = Vec::new();
        for tensor in self.tensors.values() {
            out.extend(tensor.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Reads an adapter that [`Adapter::save_gguf`] wrote (any llama.cpp
    /// GGUF LoRA with F32 or F16 tensors).
    pub fn load_gguf(path: &Path) -> Result<Adapter, FinetuneError> {
        let bad = |reason: String| FinetuneError::Adapter {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| bad(e.to_string()))?;
        let kind = content
            .metadata
            .get("general.type")
            .and_then(|v| v.to_string().ok());
        if kind.map(String::as_str) != Some("adapter") {
            return Err(bad(
                "general.type is not \"adapter\": not a LoRA adapter".into()
            ));
        }
        let alpha = content
            .metadata
            .get("adapter.lora.alpha")
            .and_then(|v| v.to_f32().ok())
            .ok_or_else(|| bad("adapter.lora.alpha is missing".into()))?;
        let mut tensors = BTreeMap::new();
        let mut rank = None;
        for name in content.tensor_infos.keys() {
            let tensor = content
                .tensor(&mut file, name, &Device::Cpu)
                .and_then(|q| q.dequantize(&Device::Cpu))
                .and_then(|t| t.to_dtype(DType::F32))
                .map_err(|e| bad(format!("tensor {name}: {e}")))?;
            if name.ends_with(".lora_a") {
                let (r, _) = tensor
                    .dims2()
                    .map_err(|e| bad(format!("tensor {name}: {e}")))?;
                if rank.is_some_and(|rank| rank != r) {
                    return Err(bad("the lora_a tensors differ in rank".into()));
                }
                rank = Some(r);
            }
            tensors.insert(name.clone(), tensor);
        }
        let rank = rank.ok_or_else(|| bad("it holds no lora_a tensor".into()))?;
        Ok(Adapter {
            rank,
            alpha,
            tensors,
        })
    }

    pub(crate) fn weights(&self) -> LoraWeights {
        LoraWeights {
            tensors: self.tensors.clone(),
            scale: f64::from(self.alpha) / self.rank as f64,
        }
    }

    /// Writes the adapter as llama.cpp's GGUF LoRA (F32 tensors), which
    /// `zg-serving engine --lora FILE` serves.
    pub fn save_gguf(&self, path: &Path) -> Result<(), FinetuneError> {
        let mut quantized = Vec::with_capacity(self.tensors.len());
        for (name, tensor) in &self.tensors {
            quantized.push((name.as_str(), QTensor::quantize(tensor, GgmlDType::F32)?));
        }
        let tensors: Vec<(&str, &QTensor)> = quantized.iter().map(|(n, t)| (*n, t)).collect();
        let arch = Value::String("llama".into());
        let kind = Value::String("adapter".into());
        let adapter = Value::String("lora".into());
        let alpha = Value::F32(self.alpha);
        let metadata: [(&str, &Value); 4] = [
            ("general.architecture", &arch),
            ("general.type", &kind),
            ("adapter.type", &adapter),
            ("adapter.lora.alpha", &alpha),
        ];
        let write_err = |source: std::io::Error| FinetuneError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(write_err)?);
        gguf_file::write(&mut file, &metadata, &tensors)?;
        std::io::Write::flush(&mut file).map_err(write_err)?;
        Ok(())
    }
}

/// A fresh adapter for every target of every layer: A uniform in
/// ±1/sqrt(in) (PEFT's default), B zero, so training starts at the base.
pub(crate) fn init(
    dims: impl Fn(Target) -> (usize, usize),
    layers: usize,
    rank: usize,
    rng: &mut Rng,
) -> Result<BTreeMap<String, Tensor>, FinetuneError> {
    let mut tensors = BTreeMap::new();
    for layer in 0..layers {
        for target in Target::ALL {
            let (out, input) = dims(target);
            let bound = 1.0 / (input as f64).sqrt();
            let a: Vec<f32> = (0..rank * input)
                .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                .collect();
            let (a_name, b_name) = tensor_names(layer, target);
            tensors.insert(a_name, Tensor::from_vec(a, (rank, input), &Device::Cpu)?);
            tensors.insert(
                b_name,
                Tensor::zeros((out, rank), DType::F32, &Device::Cpu)?,
            );
        }
    }
    Ok(tensors)
}

/// splitmix64: a seeded generator whose whole state is one u64, so a run is
/// reproducible from its seed alone.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher-Yates shuffle of 0..n.
    pub(crate) fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
    }
}
