//! VAEs kept apart from checkpoints, as AUTOMATIC1111 users keep them: `.vae.pt`,
//! `.vae.ckpt`, `.vae.safetensors` (original LDM names, with or without `first_stage_model.`,
//! possibly under `state_dict`), diffusers-named VAE files, and diffusers `vae/` folders.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};

use crate::error::{EngineError, Result};
use crate::model::config::VaeConfig;
use crate::model::detect::{detect_vae, not_sd_reason, VAE_PREFIX};
use crate::model::keymap;
use crate::model::vae::Vae;
use crate::model::weights::{HalfWeights, WeightFile};

/// Which VAE a job decodes with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VaeChoice {
    /// A `NAME.vae.{pt,ckpt,safetensors}` beside the checkpoint if there is one, else its own.
    #[default]
    Automatic,
    /// The checkpoint's own VAE, even when a sibling file exists.
    Builtin,
    File(PathBuf),
}

/// The VAE file AUTOMATIC1111 would pick up beside a single-file checkpoint.
pub fn sibling_vae(checkpoint: &Path) -> Option<PathBuf> {
    if checkpoint.is_dir() {
        return None;
    }
    let stem = checkpoint.file_stem()?.to_str()?;
    let dir = checkpoint.parent()?;
    ["vae.pt", "vae.ckpt", "vae.safetensors"]
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
}

enum Naming {
    Ldm { prefix: &'static str },
    Diffusers,
}

fn naming(w: &WeightFile) -> Option<Naming> {
    if w.contains(&format!("{VAE_PREFIX}decoder.up.0.block.0.conv1.weight")) {
        Some(Naming::Ldm { prefix: VAE_PREFIX })
    } else if w.contains("decoder.up.0.block.0.conv1.weight") {
        Some(Naming::Ldm { prefix: "" })
    } else if w.contains("decoder.up_blocks.0.resnets.0.conv1.weight") {
        Some(Naming::Diffusers)
    } else {
        None
    }
}

fn count(w: &WeightFile, prefix: &str, suffix: &str) -> usize {
    (0..)
        .take_while(|i| w.contains(&format!("{prefix}{i}{suffix}")))
        .count()
}

/// A diffusers-named VAE file without its config: the shape read off the tensors.
fn diffusers_config(w: &WeightFile) -> std::result::Result<VaeConfig, String> {
    let levels = count(w, "encoder.down_blocks.", ".resnets.0.conv1.weight");
    let channels: Vec<usize> = (0..levels)
        .filter_map(|i| {
            w.shape(&format!("encoder.down_blocks.{i}.resnets.0.conv1.weight"))
                .map(|s| s[0])
        })
        .collect();
    let latent = w
        .shape("decoder.conv_in.weight")
        .map(|s| s[1])
        .ok_or("no decoder.conv_in.weight")?;
    if channels.is_empty() {
        return Err("cannot make out the VAE's levels".into());
    }
    let mut cfg = VaeConfig::sd(channels, latent);
    cfg.layers_per_block = count(w, "encoder.down_blocks.0.resnets.", ".conv1.weight");
    Ok(cfg)
}

pub fn load(path: &Path, dtype: DType, device: &Device) -> Result<Vae> {
    if !path.exists() {
        return Err(EngineError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_dir() {
        let dir = if path.join("config.json").is_file() {
            path.to_path_buf()
        } else {
            path.join("vae")
        };
        return crate::model::load_diffusers_vae(&dir, dtype, device, HalfWeights::Widen);
    }
    let file = Arc::new(WeightFile::open(path)?);
    let bad = |m: String| EngineError::bad_model(path, m);
    let (vb, cfg) = match naming(&file) {
        Some(Naming::Ldm { prefix }) => {
            let cfg = detect_vae(&file, prefix).map_err(bad)?;
            let levels = cfg.block_out_channels.len();
            (
                file.var_builder(dtype, device, move |n| {
                    format!("{prefix}{}", keymap::vae_to_ldm(n, levels))
                }),
                cfg,
            )
        }
        Some(Naming::Diffusers) => {
            let cfg = diffusers_config(&file).map_err(bad)?;
            let legacy = !file.contains("decoder.mid_block.attentions.0.to_q.weight");
            (
                file.var_builder(dtype, device, move |n| {
                    crate::model::diffusers_vae_name(n, legacy)
                }),
                cfg,
            )
        }
        None => {
            let reason = not_sd_reason(&file);
            return Err(bad(format!("not a VAE file ({reason})")));
        }
    };
    Vae::load(vb, &cfg).map_err(|e| EngineError::bad_model(path, format!("VAE: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_files_follow_automatic1111_names() {
        let dir = std::env::temp_dir().join(format!("pentimento-sibling-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ckpt = dir.join("final-pruned.ckpt");
        std::fs::write(&ckpt, b"x").unwrap();
        assert_eq!(sibling_vae(&ckpt), None);
        std::fs::write(dir.join("final-pruned.vae.safetensors"), b"x").unwrap();
        assert_eq!(
            sibling_vae(&ckpt),
            Some(dir.join("final-pruned.vae.safetensors"))
        );
        std::fs::write(dir.join("final-pruned.vae.pt"), b"x").unwrap();
        assert_eq!(sibling_vae(&ckpt), Some(dir.join("final-pruned.vae.pt")));
        assert_eq!(sibling_vae(&dir.join("other.ckpt")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
