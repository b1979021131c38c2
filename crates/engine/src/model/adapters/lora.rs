//! LoRA files as users have them, read into the weight changes they make: kohya/AUTOMATIC1111
//! (`lora_unet_…`, `lora_te_…`, `.lora_down`/`.lora_up`/`.alpha`, LoCon on 3×3 convolutions,
//! UNet names in diffusers or LDM form) and diffusers/PEFT (`unet.….lora_A`/`lora_B`, and the
//! older `.lora.down`/`.lora.up`). A layer's change is `scale · up · down` with
//! `scale = alpha / rank` (alpha defaults to the rank, as kohya and PEFT do), the semantics of
//! AUTOMATIC1111 and diffusers.
//!
//! Opening a file reads its header only; each layer's factors are checked against the shape of
//! the weight they change (and their element type) before a byte of them is read, so a file
//! cannot make the reader allocate more than the model's own layer sizes.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};
use crate::model::checkpoint::weights::WeightFile;

/// Which network a change belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Net {
    Unet,
    Text,
}

/// How a file names a layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerName {
    /// Dotted diffusers names (PEFT files): `down_blocks.0.attentions.0.…to_q`.
    Dotted(String),
    /// kohya's underscored names without the `lora_unet_` / `lora_te_` prefix.
    Underscored(String),
}

impl std::fmt::Display for LayerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerName::Dotted(n) | LayerName::Underscored(n) => f.write_str(n),
        }
    }
}

/// The tensor names of one layer's factors and alpha.
#[derive(Debug, Clone, Default)]
pub struct LayerParts {
    down: Option<String>,
    up: Option<String>,
    alpha: Option<String>,
}

/// A LoRA file, its header read: each layer it changes, by the name it gives it.
pub struct LoraFile {
    file: WeightFile,
    pub layers: BTreeMap<(Net, LayerName), LayerParts>,
}

/// Most tensors a LoRA file may hold (SD 1.5 LoRAs hold about 800; LyCORIS full-rank ones some
/// thousands).
pub const MAX_LORA_TENSORS: usize = 20_000;
/// Largest |alpha / rank|: trained files stay at or below 1; far beyond it a file is broken.
pub const MAX_ALPHA_SCALE: f32 = 1000.0;

impl LoraFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = WeightFile::open(path)?;
        let bad = |m: String| EngineError::bad_model(path, m);
        let names: Vec<String> = file.names().map(str::to_string).collect();
        if names.len() > MAX_LORA_TENSORS {
            return Err(bad(format!(
                "{} tensors (a LoRA holds at most {MAX_LORA_TENSORS})",
                names.len()
            )));
        }
        let mut layers: BTreeMap<(Net, LayerName), LayerParts> = BTreeMap::new();
        let mut sorted = names.clone();
        sorted.sort();
        for name in &sorted {
            let Some((net, layer, part)) = classify(name) else {
                if name.contains("hada_") || name.contains("lokr_") || name.contains("lora_mid") {
                    return Err(bad(format!(
                        "{name}: LoHa, LoKr and CP-decomposed LoCon layers are not read yet"
                    )));
                }
                continue;
            };
            let entry = layers.entry((net, layer.clone())).or_default();
            let slot = match part {
                Part::Down => &mut entry.down,
                Part::Up => &mut entry.up,
                Part::Alpha => &mut entry.alpha,
            };
            // Two names for one part (kohya's `lora_te_` and `lora_te1_`, or a layer in two
            // layouts): which one counts would be a guess.
            if let Some(first) = slot.replace(name.clone()) {
                return Err(bad(format!(
                    "{first} and {name} are the same part of layer {layer}: which one counts?"
                )));
            }
        }
        if layers.is_empty() {
            let kind = if names
                .iter()
                .any(|n| n == "emb_params" || n.starts_with("string_to_param"))
            {
                "a textual-inversion embedding, not a LoRA".to_string()
            } else {
                format!(
                    "no LoRA layers in it (first tensors: {})",
                    sorted
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(bad(kind));
        }
        Ok(Self { file, layers })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The change `scale · up · down` of one layer, shaped like `target` (the weight it changes:
    /// `[out, in]` or `[out, in, kh, kw]`), in f32 on the CPU. The factors' shapes must be those
    /// of a LoRA (or LoCon) of that weight, of rank at most the weight's own.
    pub fn change(&self, layer: &(Net, LayerName), target: &[usize]) -> Result<Tensor> {
        let bad = |m: String| EngineError::bad_model(self.path(), format!("{}: {m}", layer.1));
        let parts = self
            .layers
            .get(layer)
            .ok_or_else(|| bad("no such layer".into()))?;
        let (Some(down), Some(up)) = (&parts.down, &parts.up) else {
            return Err(bad("a LoRA layer without both its factors".into()));
        };
        let shape = |n: &str| {
            self.file
                .shape(n)
                .map(<[usize]>::to_vec)
                .unwrap_or_default()
        };
        let (down_shape, up_shape) = (shape(down), shape(up));
        let (out, inner) = match target {
            [out, rest @ ..] if !rest.is_empty() => (*out, rest.to_vec()),
            _ => {
                return Err(bad(format!(
                    "a weight of shape {target:?} cannot take a LoRA"
                )))
            }
        };
        let inner_n: usize = inner.iter().product();
        let kernel_1 = inner.len() == 1 || inner[1..].iter().all(|&k| k == 1);
        let rank = down_shape.first().copied().unwrap_or(0);
        // down: [r, in] or [r, in, 1, 1] for a linear or 1×1 weight, [r, in, kh, kw] for a
        // convolution; up: [out, r] or [out, r, 1, 1].
        let down_ok = match down_shape.as_slice() {
            [_, i] => kernel_1 && *i == inner[0],
            [_, i, 1, 1] => kernel_1 && *i == inner[0],
            [_, i, kh, kw] => inner.len() == 3 && [*i, *kh, *kw] == inner[..],
            _ => false,
        };
        let up_ok = matches!(up_shape.as_slice(), [o, r] | [o, r, 1, 1] if *o == out && *r == rank);
        if !down_ok || !up_ok || rank == 0 {
            return Err(bad(format!(
                "factors of shapes {down_shape:?} and {up_shape:?} are not a LoRA of a weight of {target:?}"
            )));
        }
        if rank > out.min(inner_n) {
            return Err(bad(format!(
                "rank {rank} above the weight's own ({})",
                out.min(inner_n)
            )));
        }
        for name in [down, up].into_iter().chain(parts.alpha.as_ref()) {
            let dtype = self.file.dtype(name);
            if !matches!(
                dtype,
                Some(DType::F16 | DType::BF16 | DType::F32 | DType::F64)
            ) {
                return Err(bad(format!(
                    "{name} is stored as {dtype:?}, not as floating point"
                )));
            }
        }
        let load = |n: &str| {
            self.file
                .load(n, &Device::Cpu)
                .and_then(|t| t.to_dtype(DType::F32))
                .map_err(|e| bad(format!("{n}: {e}")))
        };
        let alpha = match &parts.alpha {
            Some(a) => {
                let v = load(a)?.flatten_all().and_then(|t| t.to_vec1::<f32>());
                match v.as_deref() {
                    Ok([a]) if a.is_finite() => *a,
                    _ => return Err(bad("alpha is not one finite number".into())),
                }
            }
            None => rank as f32,
        };
        let scale = alpha / rank as f32;
        if scale.abs() > MAX_ALPHA_SCALE {
            return Err(bad(format!(
                "alpha {alpha} for rank {rank} (alpha / rank at most {MAX_ALPHA_SCALE})"
            )));
        }
        let (down, up) = (load(down)?, load(up)?);
        let finite = |t: &Tensor| crate::model::checkpoint::weights::all_finite(t);
        if !(finite(&down).map_err(internal)? && finite(&up).map_err(internal)?) {
            return Err(bad("NaN or infinite values".into()));
        }
        let product = up
            .reshape((out, rank))
            .and_then(|u| u.matmul(&down.reshape((rank, inner_n))?))
            .and_then(|p| p.reshape(target))
            .and_then(|p| p * scale as f64)
            .map_err(internal)?;
        Ok(product)
    }
}

enum Part {
    Down,
    Up,
    Alpha,
}

/// Which network, layer and part a tensor name is; `None` for what a LoRA does not use.
fn classify(name: &str) -> Option<(Net, LayerName, Part)> {
    const KOHYA: [(&str, Part); 3] = [
        (".lora_down.weight", Part::Down),
        (".lora_up.weight", Part::Up),
        (".alpha", Part::Alpha),
    ];
    const PEFT: [(&str, Part); 5] = [
        (".lora_A.weight", Part::Down),
        (".lora_B.weight", Part::Up),
        (".lora.down.weight", Part::Down),
        (".lora.up.weight", Part::Up),
        (".alpha", Part::Alpha),
    ];
    for (suffix, part) in KOHYA {
        if let Some(layer) = name.strip_suffix(suffix) {
            if let Some(rest) = layer.strip_prefix("lora_unet_") {
                return Some((Net::Unet, LayerName::Underscored(rest.into()), part));
            }
            for te in ["lora_te_", "lora_te1_"] {
                if let Some(rest) = layer.strip_prefix(te) {
                    let rest = rest.strip_prefix("text_model_").unwrap_or(rest);
                    return Some((Net::Text, LayerName::Underscored(rest.into()), part));
                }
            }
        }
    }
    for (suffix, part) in PEFT {
        if let Some(layer) = name.strip_suffix(suffix) {
            if let Some(rest) = layer.strip_prefix("unet.") {
                return Some((Net::Unet, LayerName::Dotted(rest.into()), part));
            }
            if let Some(rest) = layer.strip_prefix("text_encoder.") {
                let rest = rest.strip_prefix("text_model.").unwrap_or(rest);
                return Some((Net::Text, LayerName::Dotted(rest.into()), part));
            }
        }
    }
    None
}

fn internal(e: candle_core::Error) -> EngineError {
    EngineError::Internal(e.to_string())
}
