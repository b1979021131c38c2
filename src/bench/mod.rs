//! `pentimento bench`: the full-size SD 1.5 and 2.1 networks built with random weights (speed
//! does not depend on weight values, and nothing needs downloading), timed piece by piece.
//! The architectures are the JSON configs in `assets/bench`, which `bench/compare_diffusers.py`
//! builds in diffusers for the side-by-side baseline.

pub mod measure;
pub mod memory;
pub mod random;

use std::path::PathBuf;

use candle_core::{DType, Device};
use serde::Serialize;

use crate::engine::model::clip::{ClipLayout, ClipTextModel};
use crate::engine::model::config::{ClipConfig, UNetConfig, VaeConfig};
use crate::engine::model::detect::Family;
use crate::engine::model::taesd::{Taesd, TaesdConfig};
use crate::engine::model::unet::UNet;
use crate::engine::model::vae::Vae;
use crate::engine::model::vae_fallback::VaeFallback;
use crate::engine::model::{ModelFormat, ModelInfo, StableDiffusion};
use crate::engine::sampler::{Prediction, TrainingSchedule};
use crate::engine::text::{ClipTokenizer, TextEncoder};
use crate::engine::{EngineError, Result};
use random::RandomWeights;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Sd15,
    Sd21,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Sd15 => "SD 1.5",
            Arch::Sd21 => "SD 2.1",
        }
    }

    /// The size the model was trained at.
    pub fn native_size(self) -> usize {
        match self {
            Arch::Sd15 => 512,
            Arch::Sd21 => 768,
        }
    }

    fn unet_json(self) -> &'static str {
        match self {
            Arch::Sd15 => include_str!("../../assets/bench/sd15-unet.json"),
            Arch::Sd21 => include_str!("../../assets/bench/sd21-unet.json"),
        }
    }

    fn text_json(self) -> &'static str {
        match self {
            Arch::Sd15 => include_str!("../../assets/bench/sd15-text_encoder.json"),
            Arch::Sd21 => include_str!("../../assets/bench/sd21-text_encoder.json"),
        }
    }

    pub fn unet_config(self) -> Result<UNetConfig> {
        UNetConfig::from_diffusers_json(self.unet_json()).map_err(EngineError::InvalidParams)
    }

    pub fn vae_config(self) -> Result<VaeConfig> {
        VaeConfig::from_diffusers_json(include_str!("../../assets/bench/vae.json"))
            .map_err(EngineError::InvalidParams)
    }

    pub fn clip_config(self) -> Result<ClipConfig> {
        ClipConfig::from_transformers_json(self.text_json()).map_err(EngineError::InvalidParams)
    }
}

fn tensor_error(what: &str) -> impl Fn(candle_core::Error) -> EngineError + '_ {
    move |e| EngineError::Tensor {
        context: what.to_string(),
        source: e,
    }
}

/// The whole model with random weights, computing in `dtype` on `device`, and the bytes of
/// weights it holds.
use crate::engine::model::adapters::{slots::collect, Adapters};

pub fn build(arch: Arch, device: &Device, dtype: DType) -> Result<(StableDiffusion, u64)> {
    let weights = RandomWeights::new();
    let unet_cfg = arch.unet_config()?;
    let (unet, unet_slots) = collect(|| UNet::load(weights.var_builder(dtype, device), &unet_cfg));
    let unet = unet.map_err(tensor_error("UNet"))?;
    let vae_cfg = arch.vae_config()?;
    let vae =
        Vae::load(weights.var_builder(dtype, device), &vae_cfg).map_err(tensor_error("VAE"))?;
    let clip_cfg = arch.clip_config()?;
    let (clip, text_slots) = collect(|| {
        ClipTextModel::load(
            weights.var_builder(dtype, device),
            &clip_cfg,
            ClipLayout::HuggingFace,
        )
    });
    let clip = clip.map_err(tensor_error("text encoder"))?;
    let (family, pad, prediction) = match arch {
        Arch::Sd15 => (Family::Sd1, crate::engine::text::EOS, Prediction::Epsilon),
        Arch::Sd21 => (Family::Sd2, 0, Prediction::V),
    };
    let text = TextEncoder {
        tokenizer: ClipTokenizer::bundled(pad)?,
        model: clip,
    };
    let bytes = weights.bytes();
    let info = ModelInfo {
        path: PathBuf::from(format!("{} (random weights)", arch.name())),
        format: ModelFormat::DiffusersFolder,
        family,
        inpainting: false,
        prediction,
        prediction_source: crate::engine::model::detect::Source::Rule("the bench's architecture"),
        config: None,
        dtype,
        vae: None,
        ema: false,
        memory_bytes: bytes,
        hash: None,
    };
    let fallback_device = device.clone();
    let fallback = VaeFallback::new(move |dt| {
        Vae::load(
            RandomWeights::new().var_builder(dt, &fallback_device),
            &vae_cfg,
        )
        .map_err(tensor_error("VAE"))
    });
    Ok((
        StableDiffusion::from_parts(
            unet,
            vae,
            text,
            info,
            TrainingSchedule::default(),
            fallback,
            device.clone(),
        )
        .with_adapters(Adapters::new(unet_slots, text_slots, unet_cfg)),
        bytes,
    ))
}

/// TAESD at its real size with random weights.
pub fn build_taesd(device: &Device) -> Result<Taesd> {
    let cfg: TaesdConfig =
        serde_json::from_str("{}").map_err(|e| EngineError::InvalidParams(e.to_string()))?;
    Taesd::load(RandomWeights::new().var_builder(DType::F32, device), &cfg)
        .map_err(tensor_error("TAESD"))
}
