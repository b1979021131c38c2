//! What a model file is, from its header or pickle index alone: no tensor data is read.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::model::detect::{self, Family};
use crate::model::weights::{ContainerKind, WeightFile};
use crate::model::{component_weights, read_json, UNetConfig};

#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub path: PathBuf,
    /// "diffusers folder", "safetensors", "ckpt".
    pub container: String,
    /// "Stable Diffusion checkpoint", "VAE", or what else it looks like.
    pub kind: String,
    pub family: Option<String>,
    pub unet_in_channels: Option<usize>,
    pub inpainting: Option<bool>,
    /// The prediction type and how it is known.
    pub prediction: Option<String>,
    /// Storage dtype of most weights.
    pub dtype: String,
    /// Components present: UNet, VAE, text encoder, EMA.
    pub components: Vec<String>,
    pub tensors: usize,
    pub bytes: u64,
    /// The LDM config YAML applied (beside the file or given).
    pub config: Option<PathBuf>,
    /// What decided each setting the weights alone cannot tell: (setting, value, source).
    pub settings: Vec<Setting>,
    /// AUTOMATIC1111's legacy short hash (SHA-256 of 64 KiB at offset 1 MiB, 8 hex digits),
    /// which needs no full read; `None` for folders.
    pub legacy_hash: Option<String>,
}

/// AUTOMATIC1111's original `model_hash`.
pub fn legacy_hash(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = crate::regular_file::open(path).map_err(io)?;
    f.seek(SeekFrom::Start(0x100000)).map_err(io)?;
    let mut buf = Vec::with_capacity(0x10000);
    f.take(0x10000).read_to_end(&mut buf).map_err(io)?;
    let digest = Sha256::digest(&buf);
    Ok(digest.iter().take(4).map(|b| format!("{b:02x}")).collect())
}

/// One setting of a model, its value and what decided it (file, YAML, rule, test forward).
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub setting: String,
    pub value: String,
    pub source: String,
}

/// `inspect_with`, taking `<name>.yaml` beside a single file when there is one.
pub fn inspect(path: &Path) -> Result<Inspection> {
    inspect_with(path, &crate::model::ConfigChoice::Automatic)
}

pub fn inspect_with(path: &Path, config: &crate::model::ConfigChoice) -> Result<Inspection> {
    if !path.exists() {
        return Err(EngineError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_dir() {
        return inspect_folder(path);
    }
    let w = WeightFile::open(path)?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let container = match w.kind() {
        ContainerKind::Safetensors => "safetensors",
        ContainerKind::Pickle => "ckpt",
    };
    let mut out = Inspection {
        path: path.to_path_buf(),
        container: container.into(),
        kind: String::new(),
        family: None,
        unet_in_channels: None,
        inpainting: None,
        prediction: None,
        dtype: format!("{:?}", w.storage_dtype()).to_lowercase(),
        components: vec![],
        tensors: w.names().count(),
        bytes,
        config: None,
        settings: vec![],
        legacy_hash: legacy_hash(path).ok(),
    };
    match detect::detect(&w) {
        Ok(mut layout) => {
            if let Some(yaml) = crate::model::chosen_config(path, config) {
                layout.apply_yaml(crate::model::ldm_yaml::LdmConfig::read(&yaml)?)?;
                out.config = Some(yaml);
            }
            out.settings = layout
                .decisions()
                .into_iter()
                .map(|(setting, value, source)| Setting {
                    setting: setting.into(),
                    value,
                    source: source.to_string(),
                })
                .collect();
            out.kind = "Stable Diffusion checkpoint".into();
            out.family = Some(layout.family.to_string());
            out.unet_in_channels = Some(layout.unet.in_channels);
            out.inpainting = Some(layout.unet.is_inpainting());
            out.prediction = Some(match layout.prediction_choice() {
                detect::PredictionChoice::Known(p, source) => format!("{p} ({source})"),
                detect::PredictionChoice::NeedsTestForward => {
                    "decided at load by a test forward of the UNet (AUTOMATIC1111's rule); --prediction overrides".into()
                }
            });
            out.components.push("UNet".into());
            if layout.vae.is_some() {
                out.components.push("VAE".into());
            }
            out.components.push(format!(
                "text encoder ({})",
                match layout.family {
                    Family::Sd1 => "CLIP ViT-L layout",
                    Family::Sd2 => "OpenCLIP layout",
                }
            ));
            if layout.has_ema {
                out.components.push("EMA UNet (model_ema.*)".into());
            }
        }
        Err(reason) => {
            let vae_only = [
                "first_stage_model.decoder.conv_in.weight",
                "decoder.conv_in.weight",
            ]
            .iter()
            .any(|k| w.contains(k))
                && !w.names().any(|n| n.starts_with(detect::UNET_PREFIX));
            if vae_only {
                out.kind = "VAE".into();
                out.components.push("VAE".into());
            } else {
                out.kind = reason;
            }
        }
    }
    Ok(out)
}

fn inspect_folder(dir: &Path) -> Result<Inspection> {
    let unet_cfg = read_json(&dir.join("unet/config.json"))
        .ok()
        .and_then(|t| UNetConfig::from_diffusers_json(&t).ok());
    let mut components = vec![];
    let mut bytes = 0;
    let mut tensors = 0;
    let mut dtype = String::from("unknown");
    for (sub, name) in [
        ("unet", "UNet"),
        ("vae", "VAE"),
        ("text_encoder", "text encoder"),
        ("tokenizer", "tokenizer"),
    ] {
        let d = dir.join(sub);
        if !d.is_dir() {
            continue;
        }
        components.push(name.to_string());
        if let Ok(weights) = component_weights(&d) {
            bytes += std::fs::metadata(&weights).map(|m| m.len()).unwrap_or(0);
            if let Ok(w) = WeightFile::open(&weights) {
                tensors += w.names().count();
                if sub == "unet" {
                    dtype = format!("{:?}", w.storage_dtype()).to_lowercase();
                }
            }
        }
    }
    let prediction = read_json(&dir.join("scheduler/scheduler_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v.get("prediction_type")
                .and_then(|p| p.as_str())
                .map(str::to_string)
        })
        .map(|p| format!("{p} (scheduler config)"));
    let family = unet_cfg.as_ref().map(|c| {
        if c.use_linear_projection {
            "SD 2.x"
        } else {
            "SD 1.x"
        }
        .to_string()
    });
    Ok(Inspection {
        path: dir.to_path_buf(),
        container: "diffusers folder".into(),
        kind: if unet_cfg.is_some() {
            "Stable Diffusion checkpoint".into()
        } else {
            "not a diffusers Stable Diffusion folder".into()
        },
        family,
        unet_in_channels: unet_cfg.as_ref().map(|c| c.in_channels),
        inpainting: unet_cfg.as_ref().map(|c| c.is_inpainting()),
        prediction,
        dtype,
        components,
        tensors,
        bytes,
        config: None,
        settings: vec![],
        legacy_hash: None,
    })
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "file:        {}", self.path.display())?;
        writeln!(f, "container:   {}", self.container)?;
        writeln!(f, "kind:        {}", self.kind)?;
        if let Some(family) = &self.family {
            writeln!(f, "family:      {family}")?;
        }
        if let (Some(ch), Some(inpainting)) = (self.unet_in_channels, self.inpainting) {
            writeln!(
                f,
                "UNet input:  {ch} channels{}",
                if inpainting { " (inpainting)" } else { "" }
            )?;
        }
        if let Some(p) = &self.prediction {
            writeln!(f, "prediction:  {p}")?;
        }
        writeln!(f, "dtype:       {}", self.dtype)?;
        writeln!(
            f,
            "components:  {}",
            if self.components.is_empty() {
                "-".into()
            } else {
                self.components.join(", ")
            }
        )?;
        writeln!(f, "tensors:     {}", self.tensors)?;
        writeln!(
            f,
            "size:        {} ({} bytes)",
            human_size(self.bytes),
            self.bytes
        )?;
        if let Some(h) = &self.legacy_hash {
            writeln!(f, "legacy hash: {h}")?;
        }
        if let Some(c) = &self.config {
            writeln!(f, "config:      {}", c.display())?;
        }
        if !self.settings.is_empty() {
            writeln!(f, "settings (value, decided by):")?;
            for s in &self.settings {
                writeln!(f, "  {:<27} {:<28} {}", s.setting, s.value, s.source)?;
            }
        }
        Ok(())
    }
}

pub fn human_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}
