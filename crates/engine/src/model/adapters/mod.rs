//! Adapters that change a loaded model's weights for a job without reloading it: LoRA, LoCon,
//! LoHa and LoKr (`lora`). `slots` keeps every adaptable layer's base weight untouched and lets a job
//! compute with an adapted one; `Adapters` decides which file changes which layer by how much.

pub mod card;
pub mod embedding;
pub mod factors;
pub mod find;
pub mod hash;
pub mod lora;
pub mod slots;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use candle_core::{DType, Tensor};

use crate::error::{EngineError, Result};
use crate::model::nets::config::UNetConfig;
use lora::{LayerName, LoraFile, Net};
use slots::SlotRegistry;

/// A LoRA file and its weight for a job (negative weights are allowed, as in AUTOMATIC1111).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraRef {
    pub path: PathBuf,
    /// The text encoder's weight, and the UNet's unless `unet_weight` says otherwise.
    pub weight: f32,
    /// AUTOMATIC1111's `<lora:NAME:TE:UNET>`: the UNet's own weight.
    pub unet_weight: Option<f32>,
}

impl LoraRef {
    /// `path` at `weight` on both networks.
    pub fn new(path: PathBuf, weight: f32) -> Self {
        Self {
            path,
            weight,
            unet_weight: None,
        }
    }

    /// The weight for `net`.
    fn weight_for(&self, net: Net) -> f32 {
        match net {
            Net::Unet => self.unet_weight.unwrap_or(self.weight),
            Net::Text => self.weight,
        }
    }
}

/// Most LoRAs one job applies at once.
pub const MAX_LORAS: usize = 32;
/// Largest magnitude of a LoRA weight; beyond it a picture is noise anyway.
pub const MAX_LORA_WEIGHT: f32 = 100.0;
/// Largest change of a layer, relative to its own largest weight (trained LoRAs stay well under
/// one; weight 100 on a strong one approaches a hundred).
pub const MAX_CHANGE_RATIO: f32 = 1000.0;

/// The adaptable layers of a model's UNet and text encoder, and the LoRAs applied now.
#[derive(Debug, Default)]
pub struct Adapters {
    unet: SlotRegistry,
    text: SlotRegistry,
    unet_config: Option<UNetConfig>,
    /// The LoRAs (path, weight, file length and time) whose changes the slots hold now.
    applied: Mutex<Vec<(LoraRef, u64, Option<std::time::SystemTime>)>>,
    /// The textual-inversion embeddings of the job being run.
    embeddings: Mutex<Vec<embedding::Embedding>>,
}

/// Most embeddings one job uses.
pub const MAX_EMBEDDINGS: usize = 64;

impl Adapters {
    pub fn new(unet: SlotRegistry, text: SlotRegistry, unet_config: UNetConfig) -> Self {
        Self {
            unet,
            text,
            unet_config: Some(unet_config),
            applied: Mutex::new(vec![]),
            embeddings: Mutex::new(vec![]),
        }
    }

    /// Reads the job's embeddings for its prompts (none: prompts are plain words).
    pub fn use_embeddings(&self, refs: &[embedding::EmbeddingRef]) -> Result<()> {
        if refs.len() > MAX_EMBEDDINGS {
            return Err(EngineError::InvalidParams(format!(
                "{} embeddings (at most {MAX_EMBEDDINGS} at once)",
                refs.len()
            )));
        }
        let read = refs
            .iter()
            .map(embedding::Embedding::read)
            .collect::<Result<Vec<_>>>()?;
        *self
            .embeddings
            .lock()
            .map_err(|_| EngineError::Internal("adapter state poisoned".into()))? = read;
        Ok(())
    }

    /// The embeddings the prompts of the job being run may use.
    pub fn embeddings(&self) -> Vec<embedding::Embedding> {
        self.embeddings
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// Checks a job's LoRAs before any work: count and weights.
    pub fn validate(loras: &[LoraRef]) -> Result<()> {
        if loras.len() > MAX_LORAS {
            return Err(EngineError::InvalidParams(format!(
                "{} LoRAs (at most {MAX_LORAS} at once)",
                loras.len()
            )));
        }
        let bad = |w: f32| !w.is_finite() || w.abs() > MAX_LORA_WEIGHT;
        if let Some(l) = loras
            .iter()
            .find(|l| bad(l.weight) || l.unet_weight.is_some_and(bad))
        {
            return Err(EngineError::InvalidParams(format!(
                "LoRA {}: weight {} (at most ±{MAX_LORA_WEIGHT})",
                l.path.display(),
                if bad(l.weight) {
                    l.weight
                } else {
                    l.unet_weight.unwrap_or(l.weight)
                }
            )));
        }
        Ok(())
    }

    /// Makes the model compute with exactly `loras` (none: its own weights, bit for bit). The
    /// same LoRAs as the last job cost nothing.
    pub fn apply(&self, loras: &[LoraRef]) -> Result<()> {
        Self::validate(loras)?;
        let wanted: Vec<_> = loras
            .iter()
            .map(|l| {
                let meta = std::fs::metadata(&l.path).ok();
                (
                    l.clone(),
                    meta.as_ref().map_or(0, |m| m.len()),
                    meta.and_then(|m| m.modified().ok()),
                )
            })
            .collect();
        let mut applied = self
            .applied
            .lock()
            .map_err(|_| EngineError::Internal("adapter state poisoned".into()))?;
        if *applied == wanted {
            return Ok(());
        }
        self.unet.clear();
        self.text.clear();
        applied.clear();
        if loras.is_empty() {
            return Ok(());
        }
        // Each layer's summed change, then one new weight per layer.
        let mut deltas: HashMap<(Net, String), Tensor> = HashMap::new();
        let names = self.names_in_files();
        for l in loras {
            let file = LoraFile::open(&l.path)?;
            let mut missing = vec![];
            let total = file.layers.len();
            // Which file layer each model layer came from: two for one would apply it twice.
            let mut seen: HashMap<(Net, String), &LayerName> = HashMap::new();
            for key @ (net, layer) in file.layers.keys() {
                let Some(name) = names.get(&(*net, layer.clone())).cloned() else {
                    missing.push(layer.clone());
                    continue;
                };
                if let Some(first) = seen.insert((*net, name.clone()), layer) {
                    return Err(EngineError::bad_model(
                        &l.path,
                        format!(
                            "{first} and {layer} are both the layer {name}: it would change twice"
                        ),
                    ));
                }
                let Some(target) = self.registry(*net).get(&name) else {
                    continue;
                };
                let change = file.change(key, target.base.dims())?;
                let scaled = (change * l.weight_for(*net) as f64).map_err(internal)?;
                let key = (*net, name);
                let sum = match deltas.remove(&key) {
                    Some(d) => (d + scaled).map_err(internal)?,
                    None => scaled,
                };
                deltas.insert(key, sum);
            }
            if !missing.is_empty() {
                return Err(EngineError::bad_model(
                    &l.path,
                    format!(
                        "{} of its {total} LoRA layers have no match in this model (first: {}): a LoRA for another model family?",
                        missing.len(),
                        missing[0]
                    ),
                ));
            }
        }
        for ((net, name), delta) in deltas {
            let registry = self.registry(net);
            let Some(target) = registry.get(&name) else {
                continue;
            };
            let base = &target.base;
            // A change far beyond the layer's own weights is a broken file, not a style.
            let largest = |t: &Tensor| {
                t.abs()
                    .and_then(|a| {
                        a.flatten_all()?
                            .max(0)?
                            .to_dtype(DType::F32)?
                            .to_scalar::<f32>()
                    })
                    .map_err(internal)
            };
            let (change, own) = (largest(&delta)?, largest(base)?);
            if change > MAX_CHANGE_RATIO * own.max(1e-3) {
                return Err(EngineError::InvalidParams(format!(
                    "the LoRAs change layer {name} by up to {change:.3e}, over {MAX_CHANGE_RATIO} times its own weights (up to {own:.3e}): a broken file or a weight far too large"
                )));
            }
            // The weight the layer computes with: f32 on the CPU, also for a base kept half.
            let computed = if base.device().is_cpu() {
                DType::F32
            } else {
                base.dtype()
            };
            let adapted = base
                .to_dtype(DType::F32)
                .and_then(|b| b + delta.to_device(base.device())?)
                .and_then(|w| w.to_dtype(computed))
                .map_err(internal)?;
            crate::error::ensure_finite(&adapted, "applying a LoRA", "its weight is too large")?;
            registry.set(&name, Some(adapted));
        }
        *applied = wanted;
        Ok(())
    }

    /// Every adaptable layer: its network, its name in LoRA files (kohya's underscored form,
    /// Hugging Face names for the text encoder) and its weight's shape.
    pub fn layers(&self) -> Vec<(Net, String, Vec<usize>)> {
        let mut out = vec![];
        for net in [Net::Unet, Net::Text] {
            let registry = self.registry(net);
            for name in registry.names() {
                if let Some(r) = registry.get(name) {
                    let underscored = canonical(net, name).replace('.', "_");
                    out.push((net, underscored, r.base.dims().to_vec()));
                }
            }
        }
        out.sort();
        out
    }

    /// Bytes the adapted weights hold now (beside the untouched bases).
    pub fn adapted_bytes(&self) -> usize {
        [&self.unet, &self.text]
            .iter()
            .map(|r| r.adapted_bytes())
            .sum()
    }

    fn registry(&self, net: Net) -> &SlotRegistry {
        match net {
            Net::Unet => &self.unet,
            Net::Text => &self.text,
        }
    }

    /// Every name a file may give each registered layer: dotted and underscored diffusers
    /// names (Hugging Face names for an OpenCLIP text encoder), and LDM names for the UNet.
    fn names_in_files(&self) -> HashMap<(Net, LayerName), String> {
        let mut map = HashMap::new();
        for net in [Net::Unet, Net::Text] {
            for name in self.registry(net).names() {
                let canonical = canonical(net, name);
                let underscored = canonical.replace('.', "_");
                map.insert((net, LayerName::Dotted(canonical)), name.to_string());
                map.insert((net, LayerName::Underscored(underscored)), name.to_string());
                if net == Net::Unet {
                    if let Some(ldm) = self.ldm_underscored(name) {
                        map.entry((net, LayerName::Underscored(ldm)))
                            .or_insert_with(|| name.to_string());
                    }
                }
            }
        }
        map
    }

    /// A UNet layer's LDM name, underscored (`input_blocks_1_1_proj_in`), as LoRAs trained on
    /// LDM checkpoints name it.
    fn ldm_underscored(&self, name: &str) -> Option<String> {
        let cfg = self.unet_config.as_ref()?;
        let ldm = crate::model::checkpoint::keymap::unet_to_ldm(&format!("{name}.weight"), cfg);
        Some(ldm.strip_suffix(".weight")?.replace('.', "_"))
    }
}

/// A registered layer's name as LoRA files give it: diffusers names for the UNet, Hugging Face
/// names for the text encoder (whatever layout it was loaded from).
fn canonical(net: Net, name: &str) -> String {
    match net {
        Net::Unet => name.to_string(),
        Net::Text => open_clip_to_hf(name),
    }
}

/// An OpenCLIP text layer's name in the Hugging Face form LoRAs use.
fn open_clip_to_hf(name: &str) -> String {
    let Some(rest) = name.strip_prefix("transformer.resblocks.") else {
        return name.to_string();
    };
    let (index, rest) = rest.split_once('.').unwrap_or((rest, ""));
    let rest = match rest {
        "attn.q_proj" | "attn.k_proj" | "attn.v_proj" | "attn.out_proj" => {
            format!("self_attn.{}", &rest[5..])
        }
        "mlp.c_fc" => "mlp.fc1".into(),
        "mlp.c_proj" => "mlp.fc2".into(),
        other => other.into(),
    };
    format!("encoder.layers.{index}.{rest}")
}

fn internal(e: candle_core::Error) -> EngineError {
    EngineError::Internal(e.to_string())
}
