//! LoRA files as users have them, read into the weight changes they make: kohya/AUTOMATIC1111
//! (`lora_unet_…`, `lora_te_…`, `.lora_down`/`.lora_up`/`.alpha`, LoCon on 3×3 convolutions,
//! UNet names in diffusers or LDM form) and diffusers/PEFT (`unet.….lora_A`/`lora_B`, and the
//! older `.lora.down`/`.lora.up`). A layer's change is `scale · up · down` with
//! `scale = alpha / rank` (alpha defaults to the rank, as kohya and PEFT do), the semantics of
//! AUTOMATIC1111 and diffusers.

use std::collections::{BTreeMap, HashMap};
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

/// The low-rank factors of one layer's change.
#[derive(Debug, Clone)]
pub struct LowRank {
    /// `[rank, in]` or `[rank, in, kh, kw]`.
    pub down: Tensor,
    /// `[out, rank]` or `[out, rank, 1, 1]`.
    pub up: Tensor,
    pub alpha: Option<f32>,
}

impl LowRank {
    /// `alpha / rank`.
    pub fn scale(&self) -> Result<f32> {
        let rank = self.down.dim(0).map_err(internal)? as f32;
        Ok(self.alpha.unwrap_or(rank) / rank)
    }

    /// `up · down` shaped like a weight of `shape`, in f32.
    pub fn product(&self, shape: &[usize]) -> Result<Tensor> {
        let rank = self.down.dim(0).map_err(internal)?;
        let up = self.up.to_dtype(DType::F32).map_err(internal)?;
        let down = self.down.to_dtype(DType::F32).map_err(internal)?;
        let out = up.dim(0).map_err(internal)?;
        let (up_n, down_n) = (up.elem_count(), down.elem_count());
        if up_n != out * rank || down_n % rank != 0 {
            return Err(EngineError::InvalidParams(format!(
                "LoRA factors of shapes {:?} and {:?} do not multiply",
                self.up.dims(),
                self.down.dims()
            )));
        }
        let product = up
            .reshape((out, rank))
            .and_then(|u| u.matmul(&down.reshape((rank, down_n / rank))?))
            .map_err(internal)?;
        if product.elem_count() != shape.iter().product::<usize>() {
            return Err(EngineError::InvalidParams(format!(
                "a LoRA change of {:?} for a weight of {:?}",
                product.dims(),
                shape
            )));
        }
        product.reshape(shape).map_err(internal)
    }
}

/// A LoRA file: each layer it changes, by the name it gives it (underscored kohya names are
/// resolved against the model later).
#[derive(Debug, Clone)]
pub struct LoraFile {
    pub changes: BTreeMap<(Net, LayerName), LowRank>,
}

/// How a file names a layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerName {
    /// Dotted diffusers names (PEFT files): `down_blocks.0.attentions.0.…to_q`.
    Dotted(String),
    /// kohya's underscored names without the `lora_unet_` / `lora_te_` prefix.
    Underscored(String),
}

/// Most tensors a LoRA file may hold (SD 1.5 LoRAs hold about 800; LyCORIS full-rank ones some
/// thousands).
pub const MAX_LORA_TENSORS: usize = 20_000;

impl LoraFile {
    pub fn read(path: &Path) -> Result<Self> {
        let file = WeightFile::open(path)?;
        let bad = |m: String| EngineError::bad_model(path, m);
        let names: Vec<String> = file.names().map(str::to_string).collect();
        if names.len() > MAX_LORA_TENSORS {
            return Err(bad(format!(
                "{} tensors (a LoRA holds at most {MAX_LORA_TENSORS})",
                names.len()
            )));
        }
        // Group every tensor by the layer it belongs to and the part it is.
        let mut parts: HashMap<(Net, LayerName), HashMap<&'static str, String>> = HashMap::new();
        let mut unknown = vec![];
        for name in &names {
            match classify(name) {
                Some((net, layer, part)) => {
                    parts
                        .entry((net, layer))
                        .or_default()
                        .insert(part, name.clone());
                }
                None => unknown.push(name.clone()),
            }
        }
        if parts.is_empty() {
            let kind = if names
                .iter()
                .any(|n| n.contains("hada_") || n.contains("lokr_"))
            {
                "a LyCORIS LoHa/LoKr file (only LoRA and LoCon are read so far)".to_string()
            } else if names
                .iter()
                .any(|n| n == "emb_params" || n == "string_to_param.*")
            {
                "a textual-inversion embedding, not a LoRA".to_string()
            } else {
                format!(
                    "no LoRA layers in it (first tensors: {})",
                    names.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                )
            };
            return Err(bad(kind));
        }
        if let Some(odd) = unknown
            .iter()
            .find(|n| n.contains("hada_") || n.contains("lokr_") || n.contains("lora_mid"))
        {
            return Err(bad(format!(
                "{odd}: LoHa, LoKr and CP-decomposed LoCon layers are not read yet"
            )));
        }
        let cpu = Device::Cpu;
        let mut changes = BTreeMap::new();
        for ((net, layer), p) in parts {
            let load = |part: &str| -> Result<Option<Tensor>> {
                match p.get(part) {
                    Some(n) => file
                        .load(n, &cpu)
                        .map(Some)
                        .map_err(|e| bad(format!("{n}: {e}"))),
                    None => Ok(None),
                }
            };
            let (Some(down), Some(up)) = (load("down")?, load("up")?) else {
                return Err(bad(format!(
                    "{layer:?}: a LoRA layer without both its factors"
                )));
            };
            let alpha = match load("alpha")? {
                Some(a) => {
                    let v = a
                        .to_dtype(DType::F32)
                        .and_then(|a| a.flatten_all()?.to_vec1::<f32>())
                        .map_err(|e| bad(format!("{layer:?}.alpha: {e}")))?;
                    match v.as_slice() {
                        [a] if a.is_finite() => Some(*a),
                        _ => return Err(bad(format!("{layer:?}: alpha is not one finite number"))),
                    }
                }
                None => None,
            };
            if down.rank() < 2 || up.rank() < 2 || down.dim(0).map_err(internal)? == 0 {
                return Err(bad(format!(
                    "{layer:?}: factors of shapes {:?} and {:?}",
                    down.dims(),
                    up.dims()
                )));
            }
            let finite = |t: &Tensor| crate::model::checkpoint::weights::all_finite(t);
            if !(finite(&down).map_err(internal)? && finite(&up).map_err(internal)?) {
                return Err(bad(format!("{layer:?}: NaN or infinite values")));
            }
            changes.insert((net, layer), LowRank { down, up, alpha });
        }
        Ok(Self { changes })
    }
}

/// Which network, layer and part a tensor name is; `None` for what a LoRA does not use.
fn classify(name: &str) -> Option<(Net, LayerName, &'static str)> {
    const KOHYA: [(&str, &str); 3] = [
        (".lora_down.weight", "down"),
        (".lora_up.weight", "up"),
        (".alpha", "alpha"),
    ];
    const PEFT: [(&str, &str); 5] = [
        (".lora_A.weight", "down"),
        (".lora_B.weight", "up"),
        (".lora.down.weight", "down"),
        (".lora.up.weight", "up"),
        (".alpha", "alpha"),
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
