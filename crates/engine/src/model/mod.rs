//! Loading Stable Diffusion 1.x/2.x models from the layouts users have: diffusers folders and
//! single-file `.safetensors` / `.ckpt` checkpoints, told apart by their contents.

pub mod adapters;
pub mod checkpoint;
pub mod controlnets;
pub mod kernels;
pub mod nets;

// The modules by their short names, as the rest of the engine and its users name them.
pub use checkpoint::{
    detect, external_vae, hash, inspect, keymap, ldm_yaml, prediction_probe, weights,
};
pub use kernels::{attention, conv, geglu, linear, norm, tiling};
pub(crate) use kernels::{cpu_storage, fast_math, matmul, winograd};
pub use nets::{blocks, clip, config, controlnet, taesd, transformer, unet, vae, vae_fallback};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::sampler::{Prediction, TrainingSchedule};
use crate::text::{ClipTokenizer, TextEncoder, EOS};
use clip::{ClipLayout, ClipTextModel};
pub use config::UNetConfig;
use config::{ClipConfig, VaeConfig};
pub use detect::Family;
pub use external_vae::VaeChoice;
use unet::UNet;
use vae::Vae;
pub use weights::HalfWeights;
use weights::WeightFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    DiffusersFolder,
    Safetensors,
    Ckpt,
}

impl std::fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelFormat::DiffusersFolder => "diffusers folder",
            ModelFormat::Safetensors => "single-file safetensors",
            ModelFormat::Ckpt => "single-file ckpt",
        })
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    /// Compute dtype; `None`: f32 on the CPU, f16 on a GPU.
    pub dtype: Option<DType>,
    /// Overrides what the checkpoint says or implies.
    pub prediction: Option<Prediction>,
    pub vae: VaeChoice,
    /// Use the EMA copy of the UNet in a training checkpoint that holds both.
    pub ema: bool,
    /// The LDM config YAML of a single file.
    pub config: ConfigChoice,
    /// Whether a half-precision file's UNet stays half in memory on the CPU.
    pub half_weights: HalfWeights,
}

/// Where a single file's LDM config YAML comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ConfigChoice {
    /// `<name>.yaml` beside the checkpoint, if there is one (as AUTOMATIC1111 does).
    #[default]
    Automatic,
    /// This file.
    File(PathBuf),
}

/// The config YAML a single file's load uses, if any.
pub fn chosen_config(model: &Path, choice: &ConfigChoice) -> Option<PathBuf> {
    match choice {
        ConfigChoice::File(p) => Some(p.clone()),
        ConfigChoice::Automatic => {
            let sibling = model.with_extension("yaml");
            (model.is_file() && sibling.is_file()).then_some(sibling)
        }
    }
}

impl LoadOptions {
    pub fn cpu() -> Self {
        Self {
            device: Device::Cpu,
            dtype: None,
            prediction: None,
            vae: VaeChoice::Automatic,
            ema: false,
            config: ConfigChoice::Automatic,
            half_weights: HalfWeights::Keep,
        }
    }

    fn compute_dtype(&self) -> DType {
        self.dtype.unwrap_or(if self.device.is_cpu() {
            DType::F32
        } else {
            DType::F16
        })
    }
}

/// What was loaded, for display and for the PNG parameters.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub format: ModelFormat,
    pub family: Family,
    pub inpainting: bool,
    pub prediction: Prediction,
    /// What decided the prediction type (config, marker, test forward, option, rule).
    pub prediction_source: detect::Source,
    /// The LDM config YAML a single file was loaded with.
    pub config: Option<PathBuf>,
    pub dtype: DType,
    /// The external VAE decoding, if not the model's own.
    pub vae: Option<PathBuf>,
    /// Whether the UNet's EMA weights are in use.
    pub ema: bool,
    /// Bytes of weights held in memory (UNet, VAE, text encoder) on the model's device.
    pub memory_bytes: u64,
    /// AUTOMATIC1111's "Model hash" of a single file (folders have none).
    pub hash: Option<String>,
}

pub struct StableDiffusion {
    pub unet: UNet,
    pub vae: Vae,
    pub text: TextEncoder,
    pub schedule: TrainingSchedule,
    pub info: ModelInfo,
    pub device: Device,
    pub dtype: DType,
    /// Large images go through the VAE in tiles so its memory stays that of one tile.
    pub vae_tiling: tiling::Tiling,
    /// The VAE again in f32, for a half-precision pass that overflows.
    pub vae_fallback: vae_fallback::VaeFallback,
    /// The layers LoRAs change, and the LoRAs applied now.
    pub adapters: adapters::Adapters,
    /// The ControlNets the last job used.
    pub controlnets: controlnets::ControlNets,
}

impl StableDiffusion {
    /// A model from its built networks (the loaders below; benchmarks, with random weights).
    pub fn from_parts(
        unet: UNet,
        vae: Vae,
        text: TextEncoder,
        info: ModelInfo,
        schedule: TrainingSchedule,
        vae_fallback: vae_fallback::VaeFallback,
        device: Device,
    ) -> Self {
        let dtype = info.dtype;
        Self {
            unet,
            vae,
            text,
            schedule,
            info,
            device,
            dtype,
            vae_tiling: tiling::Tiling::default(),
            vae_fallback,
            adapters: adapters::Adapters::default(),
            controlnets: controlnets::ControlNets::default(),
        }
    }

    /// The model with the adaptable layers its loader collected.
    pub fn with_adapters(mut self, adapters: adapters::Adapters) -> Self {
        self.adapters = adapters;
        self
    }

    /// Opens a model, folder or file, detecting its layout from its contents.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        Self::load_reporting(path, opts, |_| {})
    }

    /// Whether `path` looks like a model this engine opens, from its headers and configs alone
    /// (no weights read): a front end keeps the model it has when the user picks a file that
    /// is not one.
    pub fn precheck(path: &Path, opts: &LoadOptions) -> Result<()> {
        let found = inspect::inspect_with(path, &opts.config)?;
        if found.family.is_none() {
            let what = if found.kind.is_empty() {
                "no Stable Diffusion model".to_string()
            } else {
                found.kind
            };
            return Err(EngineError::bad_model(
                path,
                format!("not a model to generate with: {what}"),
            ));
        }
        Ok(())
    }

    /// `load`, telling `progress` how much of the weights has been read.
    pub fn load_reporting(
        path: &Path,
        opts: &LoadOptions,
        mut progress: impl FnMut(LoadProgress) + 'static,
    ) -> Result<Self> {
        let total_bytes = expected_read_bytes(path, opts);
        let mut read_bytes = 0;
        weights::watch_reads(
            move |bytes| {
                read_bytes += bytes;
                progress(LoadProgress {
                    read_bytes,
                    total_bytes,
                })
            },
            || Self::load_quietly(path, opts),
        )
    }

    fn load_quietly(path: &Path, opts: &LoadOptions) -> Result<Self> {
        if !path.exists() {
            return Err(EngineError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let (model, bytes) = weights::measure_load(|| {
            if path.is_dir() {
                load_diffusers(path, opts)
            } else {
                load_single_file(path, opts)
            }
        });
        let mut model = model?;
        model.info.memory_bytes = bytes;
        // Hashed once per file (cached beside other hashes), as AUTOMATIC1111 does at load.
        model.info.hash = path
            .is_file()
            .then(|| hash::model_hash(path).ok())
            .flatten();
        Ok(model)
    }
}

/// How far a model load has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadProgress {
    /// Bytes of weights read so far, as stored in the files.
    pub read_bytes: u64,
    /// What the load is expected to read; 0 when the files could not be sized beforehand.
    pub total_bytes: u64,
}

impl LoadProgress {
    /// Between 0 and 1; `None` when the total is unknown.
    pub fn fraction(&self) -> Option<f32> {
        (self.total_bytes > 0)
            .then(|| (self.read_bytes as f64 / self.total_bytes as f64).min(1.0) as f32)
    }
}

/// The bytes of weights loading `path` reads: every component file of a diffusers folder, the
/// UNet (or its EMA copy), text encoder and VAE of a single file, plus a chosen external VAE.
/// Best effort: 0 when the files cannot be sized (the load itself reports why).
fn expected_read_bytes(path: &Path, opts: &LoadOptions) -> u64 {
    let open = |p: &Path| WeightFile::open(p).ok();
    let external = chosen_vae(path, opts);
    let external_bytes = external
        .as_deref()
        .and_then(|p| {
            if p.is_dir() {
                component_weights(p).ok().and_then(|w| open(&w))
            } else {
                open(p)
            }
        })
        .map(|f| f.stored_bytes(|_| true))
        .unwrap_or(0);
    let own = if path.is_dir() {
        let mut parts = vec!["unet", "text_encoder"];
        if external.is_none() {
            parts.push("vae");
        }
        parts
            .into_iter()
            .filter_map(|part| component_weights(&path.join(part)).ok())
            .filter_map(|w| open(&w))
            .map(|f| f.stored_bytes(|_| true))
            .sum()
    } else {
        let unet = if opts.ema {
            "model_ema."
        } else {
            detect::UNET_PREFIX
        };
        let with_vae = external.is_none();
        open(path)
            .map(|f| {
                f.stored_bytes(|n| {
                    n.starts_with(unet)
                        || n.starts_with("cond_stage_model.")
                        || (with_vae && n.starts_with(detect::VAE_PREFIX) && !n.contains(".loss."))
                })
            })
            .unwrap_or(0)
    };
    own + external_bytes
}

fn tensor_err<'a>(path: &'a Path, what: &str) -> impl Fn(candle_core::Error) -> EngineError + 'a {
    let what = what.to_string();
    move |e| EngineError::bad_model(path, format!("{what}: {e}"))
}

pub(crate) fn read_json(path: &Path) -> Result<String> {
    crate::regular_file::read_to_string(path, crate::regular_file::MAX_JSON_BYTES).map_err(
        |source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                EngineError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                EngineError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        },
    )
}

/// The one weights file of a diffusers component folder, preferring safetensors and full
/// precision (`diffusion_pytorch_model.safetensors`, `model.fp16.safetensors`, `*.bin`).
pub(crate) fn component_weights(dir: &Path) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| EngineError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            (name.ends_with(".safetensors") || name.ends_with(".bin")) && !name.contains(".index.")
        })
        .collect();
    found.sort_by_key(|p| {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        (!name.ends_with(".safetensors"), name.contains("fp16"), name)
    });
    found.into_iter().next().ok_or_else(|| {
        EngineError::bad_model(dir, "no .safetensors or .bin weights in this folder")
    })
}

#[derive(Deserialize)]
struct SchedulerJson {
    #[serde(flatten)]
    schedule: TrainingSchedule,
    #[serde(default)]
    prediction_type: Option<String>,
}

#[derive(Deserialize, Default)]
struct TokenizerJson {
    #[serde(default)]
    pad_token: Option<serde_json::Value>,
}

/// The external VAE a load should use, if any.
fn chosen_vae(model: &Path, opts: &LoadOptions) -> Option<PathBuf> {
    match &opts.vae {
        VaeChoice::Automatic => external_vae::sibling_vae(model),
        VaeChoice::Builtin => None,
        VaeChoice::File(path) => Some(path.clone()),
    }
}

/// A diffusers `vae/` folder: `config.json` and one weights file.
pub(crate) fn load_diffusers_vae(
    dir: &Path,
    dtype: DType,
    device: &Device,
    half: HalfWeights,
) -> Result<Vae> {
    let cfg_path = dir.join("config.json");
    let cfg = VaeConfig::from_diffusers_json(&read_json(&cfg_path)?)
        .map_err(|m| EngineError::bad_model(&cfg_path, m))?;
    let file = Arc::new(WeightFile::open(&component_weights(dir)?)?);
    let legacy = !file.contains("decoder.mid_block.attentions.0.to_q.weight");
    let vb = file.var_builder_storing(dtype, device, half, move |n| diffusers_vae_name(n, legacy));
    Vae::load(vb, &cfg).map_err(tensor_err(file.path(), "VAE"))
}

/// The stored name of a diffusers VAE tensor; folders written before diffusers 0.14 use the old
/// attention names.
pub(crate) fn diffusers_vae_name(name: &str, legacy: bool) -> String {
    if legacy {
        keymap::vae_legacy_attention(name).unwrap_or_else(|| name.to_string())
    } else {
        name.to_string()
    }
}

fn load_diffusers(dir: &Path, opts: &LoadOptions) -> Result<StableDiffusion> {
    let dtype = opts.compute_dtype();
    let device = &opts.device;
    if !dir.join("unet").is_dir() || !dir.join("vae").is_dir() || !dir.join("text_encoder").is_dir()
    {
        return Err(EngineError::bad_model(
            dir,
            "not a diffusers Stable Diffusion folder (expected unet/, vae/ and text_encoder/ beside model_index.json)",
        ));
    }
    let bad_cfg = |p: PathBuf| move |m: String| EngineError::bad_model(p.clone(), m);

    let unet_cfg_path = dir.join("unet/config.json");
    let unet_cfg = UNetConfig::from_diffusers_json(&read_json(&unet_cfg_path)?)
        .map_err(bad_cfg(unet_cfg_path))?;
    let clip_cfg_path = dir.join("text_encoder/config.json");
    let clip_cfg = ClipConfig::from_transformers_json(&read_json(&clip_cfg_path)?)
        .map_err(bad_cfg(clip_cfg_path))?;

    let sched_path = dir.join("scheduler/scheduler_config.json");
    let (schedule, folder_prediction) = if sched_path.exists() {
        let parsed: SchedulerJson = serde_json::from_str(&read_json(&sched_path)?)
            .map_err(|e| EngineError::bad_model(&sched_path, e.to_string()))?;
        let prediction = parsed
            .prediction_type
            .as_deref()
            .map(str::parse::<Prediction>)
            .transpose()
            .map_err(|m| EngineError::bad_model(&sched_path, m))?;
        parsed
            .schedule
            .validate()
            .map_err(|m| EngineError::bad_model(&sched_path, m))?;
        (parsed.schedule, prediction)
    } else {
        (TrainingSchedule::default(), None)
    };

    let unet_file = Arc::new(WeightFile::open(&component_weights(&dir.join("unet"))?)?);
    let unet_vb =
        unet_file.var_builder_storing(dtype, device, opts.half_weights, |n| n.to_string());
    let (unet, unet_slots) = adapters::slots::collect(|| UNet::load(unet_vb, &unet_cfg));
    let unet = unet.map_err(tensor_err(unet_file.path(), "UNet"))?;

    let (vae, vae_path) = match chosen_vae(dir, opts) {
        Some(path) => (external_vae::load(&path, dtype, device)?, Some(path)),
        None => (
            load_diffusers_vae(&dir.join("vae"), dtype, device, opts.half_weights)?,
            None,
        ),
    };
    let vae_fallback = {
        let (vae_path, dir, device) = (vae_path.clone(), dir.to_path_buf(), device.clone());
        vae_fallback::VaeFallback::new(move |dt| match &vae_path {
            Some(p) => external_vae::load(p, dt, &device),
            None => load_diffusers_vae(&dir.join("vae"), dt, &device, HalfWeights::Widen),
        })
    };

    let text_file = Arc::new(WeightFile::open(&component_weights(
        &dir.join("text_encoder"),
    )?)?);
    // transformers 4 saves the text model under `text_model.`, transformers 5 at the root.
    let text_prefix = if text_file.contains("text_model.embeddings.token_embedding.weight") {
        "text_model."
    } else {
        ""
    };
    let text_vb = text_file.var_builder_storing(dtype, device, opts.half_weights, move |n| {
        format!("{text_prefix}{n}")
    });
    let (clip, text_slots) = adapters::slots::collect(|| {
        ClipTextModel::load(text_vb, &clip_cfg, ClipLayout::HuggingFace)
    });
    let clip = clip.map_err(tensor_err(text_file.path(), "text encoder"))?;

    let tokenizer = folder_tokenizer(&dir.join("tokenizer"))?;
    let family =
        if unet_cfg.use_linear_projection || clip_cfg.activation == config::Activation::Gelu {
            Family::Sd2
        } else {
            Family::Sd1
        };
    let (prediction, prediction_source) = match (opts.prediction, folder_prediction) {
        (Some(p), _) => (p, detect::Source::Option),
        (None, Some(p)) => (p, detect::Source::File),
        (None, None) => (
            Prediction::Epsilon,
            detect::Source::Rule("no prediction_type in the scheduler config"),
        ),
    };
    let info = ModelInfo {
        path: dir.to_path_buf(),
        format: ModelFormat::DiffusersFolder,
        family,
        inpainting: unet_cfg.is_inpainting(),
        prediction,
        prediction_source,
        config: None,
        dtype,
        vae: vae_path,
        ema: false,
        memory_bytes: 0,
        hash: None,
    };
    let text = TextEncoder {
        tokenizer,
        model: clip,
    };
    Ok(StableDiffusion::from_parts(
        unet,
        vae,
        text,
        info,
        schedule,
        vae_fallback,
        device.clone(),
    )
    .with_adapters(adapters::Adapters::new(unet_slots, text_slots, unet_cfg)))
}

/// The folder's own `tokenizer.json` when it has one, else the bundled CLIP tokenizer (the
/// same vocabulary), padded with the folder's pad token.
fn folder_tokenizer(dir: &Path) -> Result<ClipTokenizer> {
    let cfg: TokenizerJson = ["tokenizer_config.json", "special_tokens_map.json"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists())
        .filter_map(|p| read_json(&p).ok())
        .filter_map(|t| serde_json::from_str::<TokenizerJson>(&t).ok())
        .find(|c| c.pad_token.is_some())
        .unwrap_or_default();
    let pad_text = match cfg.pad_token {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Object(o)) => o
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    };
    let json = dir.join("tokenizer.json");
    let mut tokenizer = if json.exists() {
        ClipTokenizer::from_file(&json, EOS)?
    } else {
        ClipTokenizer::bundled(EOS)?
    };
    if let Some(pad) = pad_text.and_then(|t| tokenizer.token_id(&t)) {
        tokenizer.set_pad(pad);
    }
    Ok(tokenizer)
}

fn load_single_file(path: &Path, opts: &LoadOptions) -> Result<StableDiffusion> {
    let dtype = opts.compute_dtype();
    let device = &opts.device;
    let file = Arc::new(WeightFile::open(path)?);
    let mut layout = detect::detect(&file).map_err(|m| EngineError::bad_model(path, m))?;
    let config = chosen_config(path, &opts.config);
    if let Some(yaml) = &config {
        let parsed = ldm_yaml::LdmConfig::read(yaml)?;
        layout.apply_yaml(parsed)?;
    }

    let unet_cfg = layout.unet.clone();
    let map_cfg = unet_cfg.clone();
    if opts.ema && !layout.has_ema {
        return Err(EngineError::bad_model(
            path,
            "the checkpoint holds no EMA weights (model_ema.*)",
        ));
    }
    let ema = opts.ema;
    let unet_vb = file.var_builder_storing(dtype, device, opts.half_weights, move |n| {
        let ldm = keymap::unet_to_ldm(n, &map_cfg);
        if ema {
            // LDM's EMA keeps each parameter under its name with the dots removed.
            format!("model_ema.diffusion_model{}", ldm.replace('.', ""))
        } else {
            format!("{}{}", detect::UNET_PREFIX, ldm)
        }
    });
    let (unet, unet_slots) = adapters::slots::collect(|| UNet::load(unet_vb, &unet_cfg));
    let unet = unet.map_err(tensor_err(path, "UNet"))?;

    let embedded_vae =
        |file: &Arc<WeightFile>, cfg: &VaeConfig, dt: DType, device: &Device, half: HalfWeights| {
            let levels = cfg.block_out_channels.len();
            let vb = file.var_builder_storing(dt, device, half, move |n| {
                format!("{}{}", detect::VAE_PREFIX, keymap::vae_to_ldm(n, levels))
            });
            Vae::load(vb, cfg).map_err(tensor_err(file.path(), "VAE"))
        };
    let (vae, vae_path) = match (chosen_vae(path, opts), &layout.vae) {
        (Some(external), _) => (
            external_vae::load(&external, dtype, device)?,
            Some(external),
        ),
        (None, Some(cfg)) => (
            embedded_vae(&file, cfg, dtype, device, opts.half_weights)?,
            None,
        ),
        (None, None) => {
            return Err(EngineError::bad_model(
                path,
                "the checkpoint has no VAE (first_stage_model.*); give one with --vae",
            ))
        }
    };

    let vae_fallback = {
        let (vae_path, file, cfg, device) = (
            vae_path.clone(),
            file.clone(),
            layout.vae.clone(),
            device.clone(),
        );
        vae_fallback::VaeFallback::new(move |dt| match (&vae_path, &cfg) {
            (Some(p), _) => external_vae::load(p, dt, &device),
            (None, Some(cfg)) => embedded_vae(&file, cfg, dt, &device, HalfWeights::Widen),
            (None, None) => Err(EngineError::bad_model(file.path(), "no VAE")),
        })
    };
    let prefix = layout.text_prefix.clone();
    let text_vb = file.var_builder_storing(dtype, device, opts.half_weights, move |n| {
        format!("{prefix}{n}")
    });
    let (clip, text_slots) =
        adapters::slots::collect(|| ClipTextModel::load(text_vb, &layout.clip, layout.clip_layout));
    let clip = clip.map_err(tensor_err(path, "text encoder"))?;
    // SD 2.x's OpenCLIP tokenizer pads with "!" (id 0), SD 1.x's with the end token.
    let pad = match layout.family {
        Family::Sd1 => EOS,
        Family::Sd2 => 0,
    };
    let tokenizer = ClipTokenizer::bundled(pad)?;

    // v-prediction cannot be read off the weights: see `prediction_choice`.
    let (prediction, prediction_source) = match (opts.prediction, layout.prediction_choice()) {
        (Some(p), _) => (p, detect::Source::Option),
        (None, detect::PredictionChoice::Known(p, source)) => (p, source),
        (None, detect::PredictionChoice::NeedsTestForward) => {
            let v = prediction_probe::predicts_v(&unet, &unet_cfg, device, dtype)
                .map_err(tensor_err(path, "UNet test forward"))?;
            let p = if v {
                Prediction::V
            } else {
                Prediction::Epsilon
            };
            (p, detect::Source::TestForward)
        }
    };
    let format = match file.kind() {
        weights::ContainerKind::Safetensors => ModelFormat::Safetensors,
        weights::ContainerKind::Pickle => ModelFormat::Ckpt,
    };
    let info = ModelInfo {
        path: path.to_path_buf(),
        format,
        family: layout.family,
        inpainting: unet_cfg.is_inpainting(),
        prediction,
        prediction_source,
        config,
        dtype,
        vae: vae_path,
        ema: opts.ema,
        memory_bytes: 0,
        hash: None,
    };
    let text = TextEncoder {
        tokenizer,
        model: clip,
    };
    Ok(StableDiffusion::from_parts(
        unet,
        vae,
        text,
        info,
        layout.schedule(),
        vae_fallback,
        device.clone(),
    )
    .with_adapters(adapters::Adapters::new(unet_slots, text_slots, unet_cfg)))
}
