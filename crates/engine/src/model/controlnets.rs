//! ControlNet files as users have them — diffusers folders (`config.json` + weights) and
//! original single files (`control_model.*` or unprefixed names, `.safetensors` or `.pth`
//! through our pickle reader) — checked against the model they steer, and the ones the last
//! job used kept loaded.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use candle_core::{DType, Device};

use crate::error::{EngineError, Result};
use crate::model::config::UNetConfig;
use crate::model::controlnet::{ControlNet, ControlNetConfig, DEFAULT_EMBEDDING_CHANNELS};
use crate::model::detect::{self, Family, UNetHalves};
use crate::model::keymap;
use crate::model::weights::{HalfWeights, WeightFile};

/// Most ControlNets one job applies at once (AUTOMATIC1111's extension offers 3 units by
/// default, up to 10); each is as large as the UNet's encoder.
pub const MAX_CONTROLNETS: usize = 4;
/// Most hint-encoder convolutions a file may name before it is refused (published files: 8).
const MAX_HINT_CONVS: usize = 16;

/// The prefix under which a single file keeps its ControlNet: AUTOMATIC1111's extension and
/// lllyasviel's files use both.
fn single_file_prefix(w: &WeightFile) -> Option<&'static str> {
    ["control_model.", ""]
        .into_iter()
        .find(|p| w.contains(&format!("{p}input_hint_block.0.weight")))
}

/// Why a single file is not a ControlNet, in a user's words.
fn not_controlnet_reason(w: &WeightFile) -> String {
    let any = |p: &str| w.names().any(|n| n.starts_with(p));
    if w.contains("controlnet_cond_embedding.conv_in.weight") {
        "a diffusers ControlNet's weights alone: give its folder (with config.json)".into()
    } else if any(detect::UNET_PREFIX) {
        "a Stable Diffusion checkpoint, not a ControlNet".into()
    } else if any("adapter.") || any("body.") {
        "a T2I-Adapter, not a ControlNet (T2I-Adapters are not supported)".into()
    } else if any("lora_") || w.names().any(|n| n.contains("lora_down")) {
        "a LoRA, not a ControlNet".into()
    } else {
        "not a ControlNet (no input_hint_block / controlnet_cond_embedding tensors)".into()
    }
}

/// Hint-encoder widths and input channels from the convolutions `input_hint_block.0, 2, 4…`.
fn detect_hint(
    w: &WeightFile,
    prefix: &str,
) -> std::result::Result<(usize, Vec<usize>, usize), String> {
    let conv = |k: usize| format!("{prefix}input_hint_block.{k}.weight");
    let convs = (0..=MAX_HINT_CONVS)
        .take_while(|i| w.contains(&conv(2 * i)))
        .count();
    if convs > MAX_HINT_CONVS {
        return Err(format!(
            "the hint encoder has more than {MAX_HINT_CONVS} convolutions"
        ));
    }
    // conv_in, pairs of (same width, stride 2), conv_out.
    if convs < 2 || convs % 2 != 0 {
        return Err(format!(
            "the hint encoder has {convs} convolutions; a ControlNet's has an even number"
        ));
    }
    let conditioning = detect::dim(w, &conv(0), 4, 1)?;
    let mut widths = vec![detect::dim(w, &conv(0), 4, 0)?];
    for level in 1..convs / 2 {
        widths.push(detect::dim(w, &conv(4 * level), 4, 0)?);
    }
    let blocks = convs - 2;
    Ok((conditioning, widths, blocks))
}

/// diffusers' ControlNet name → the original layout's (under the file's prefix).
fn original_name(name: &str, unet: &UNetConfig, blocks: usize) -> String {
    let idx = |rest: &str| -> Option<(usize, String)> {
        let (n, tail) = rest.split_once('.')?;
        Some((n.parse().ok()?, tail.to_string()))
    };
    if let Some(rest) = name.strip_prefix("controlnet_cond_embedding.") {
        if let Some(tail) = rest.strip_prefix("conv_in.") {
            return format!("input_hint_block.0.{tail}");
        }
        if let Some(tail) = rest.strip_prefix("conv_out.") {
            return format!("input_hint_block.{}.{tail}", 2 * (blocks + 1));
        }
        if let Some((k, tail)) = rest.strip_prefix("blocks.").and_then(idx) {
            return format!("input_hint_block.{}.{tail}", 2 * (k + 1));
        }
    }
    if let Some((k, tail)) = name.strip_prefix("controlnet_down_blocks.").and_then(idx) {
        return format!("zero_convs.{k}.0.{tail}");
    }
    if let Some(tail) = name.strip_prefix("controlnet_mid_block.") {
        return format!("middle_block_out.0.{tail}");
    }
    keymap::unet_to_ldm(name, unet)
}

#[derive(serde::Deserialize)]
struct ControlJson {
    #[serde(rename = "_class_name", default)]
    class_name: Option<String>,
    #[serde(default = "three")]
    conditioning_channels: usize,
    #[serde(default)]
    conditioning_embedding_out_channels: Option<Vec<usize>>,
    #[serde(default)]
    global_pool_conditions: bool,
    #[serde(default)]
    controlnet_conditioning_channel_order: Option<String>,
}

fn three() -> usize {
    3
}

fn config_from_json(text: &str) -> std::result::Result<ControlNetConfig, String> {
    let extra: ControlJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
    match extra.class_name.as_deref() {
        None | Some("ControlNetModel") => {}
        Some(other) => return Err(format!("a {other}, not a ControlNetModel")),
    }
    let bgr = match extra.controlnet_conditioning_channel_order.as_deref() {
        None | Some("rgb") => false,
        Some("bgr") => true,
        Some(other) => return Err(format!("unknown channel order {other:?}")),
    };
    let cfg = ControlNetConfig {
        unet: UNetConfig::encoder_from_diffusers_json(text)?,
        conditioning_channels: extra.conditioning_channels,
        embedding_channels: extra
            .conditioning_embedding_out_channels
            .unwrap_or_else(|| DEFAULT_EMBEDDING_CHANNELS.to_vec()),
        global_pool_conditions: extra.global_pool_conditions,
        bgr,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Refuses a ControlNet made for another kind of model, before a byte of weights is read.
fn check_fits(cfg: &ControlNetConfig, base: &UNetConfig) -> std::result::Result<(), String> {
    let c = &cfg.unet;
    let family = |u: &UNetConfig| match u.cross_attention_dim {
        768 => "SD 1.x".to_string(),
        1024 => "SD 2.x".to_string(),
        d => format!("{d}-wide text embeddings"),
    };
    if cfg.conditioning_channels != 3 {
        return Err(format!(
            "this ControlNet takes {}-channel conditions; its conditions here are RGB images",
            cfg.conditioning_channels
        ));
    }
    if c.cross_attention_dim != base.cross_attention_dim {
        return Err(format!(
            "this ControlNet is for {}, the model is {}",
            family(c),
            family(base)
        ));
    }
    // SD 2.x's transformers project with linear layers, SD 1.x's with 1×1 convolutions: a
    // ControlNet trained beside one family does not steer the other.
    if c.use_linear_projection != base.use_linear_projection {
        let name = |linear: bool| if linear { "SD 2.x" } else { "SD 1.x" };
        return Err(format!(
            "this ControlNet is for {} (its transformers project {}), the model is {}",
            name(c.use_linear_projection),
            if c.use_linear_projection {
                "with linear layers"
            } else {
                "with convolutions"
            },
            name(base.use_linear_projection)
        ));
    }
    let shape = |u: &UNetConfig| {
        format!(
            "levels {:?}, {} layers each, attention {:?}, {} transformer layers",
            u.block_out_channels, u.layers_per_block, u.down_attention, u.transformer_layers
        )
    };
    if shape(c) != shape(base) {
        return Err(format!(
            "this ControlNet's encoder ({}) does not match the model's ({})",
            shape(c),
            shape(base)
        ));
    }
    // An inpainting UNet takes 9 channels; its ControlNets see the 4 latent channels.
    if c.in_channels != base.out_channels {
        return Err(format!(
            "this ControlNet takes {} latent channels, the model has {}",
            c.in_channels, base.out_channels
        ));
    }
    Ok(())
}

/// Loads the ControlNet at `path` (a diffusers folder or a single file) for a model whose UNet
/// is `base`, computing in `dtype` on `device`.
pub fn load(path: &Path, base: &UNetConfig, dtype: DType, device: &Device) -> Result<ControlNet> {
    if !path.exists() {
        return Err(EngineError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let bad = |m: String| EngineError::bad_model(path, m);
    let (cfg, file, rename): (_, _, Rename) = if path.is_dir() {
        let cfg_path = path.join("config.json");
        let cfg = config_from_json(&crate::model::read_json(&cfg_path)?)
            .map_err(|m| EngineError::bad_model(&cfg_path, m))?;
        let file = Arc::new(WeightFile::open(&crate::model::component_weights(path)?)?);
        (cfg, file, Box::new(|n: &str| n.to_string()))
    } else {
        let file = Arc::new(WeightFile::open(path)?);
        let prefix = single_file_prefix(&file).ok_or_else(|| bad(not_controlnet_reason(&file)))?;
        let (conditioning, widths, blocks) = detect_hint(&file, prefix).map_err(bad)?;
        let family = if base.use_linear_projection {
            Family::Sd2
        } else {
            Family::Sd1
        };
        let mut unet =
            detect::detect_unet_at(&file, prefix, family, UNetHalves::EncoderOnly).map_err(bad)?;
        // Head counts are not stored in the weights; a ControlNet is a copy of its model's
        // encoder, so it has its model's.
        if unet.block_out_channels == base.block_out_channels {
            unet.heads = base.heads.clone();
        }
        let cfg = ControlNetConfig {
            unet,
            conditioning_channels: conditioning,
            embedding_channels: widths,
            global_pool_conditions: false,
            bgr: false,
        };
        cfg.validate().map_err(bad)?;
        let map_cfg = cfg.unet.clone();
        let prefix = prefix.to_string();
        let rename = move |n: &str| format!("{prefix}{}", original_name(n, &map_cfg, blocks));
        (cfg, file, Box::new(rename))
    };
    check_fits(&cfg, base).map_err(bad)?;
    // Half-precision files stay half on the CPU (widened per layer: the same numbers).
    let vb = file.var_builder_storing(dtype, device, HalfWeights::Keep, rename);
    ControlNet::load(vb, &cfg).map_err(|e| bad(format!("ControlNet: {e}")))
}

/// The file's tensor name for each of diffusers' names.
type Rename = Box<dyn Fn(&str) -> String + Send + Sync>;

/// A file's identity for the cache: a changed file is read again.
fn stamp(path: &Path) -> (u64, Option<SystemTime>) {
    let meta = std::fs::metadata(path).ok();
    let weights = if path.is_dir() {
        crate::model::component_weights(path)
            .ok()
            .and_then(|p| std::fs::metadata(p).ok())
    } else {
        None
    };
    let m = weights.or(meta);
    (
        m.as_ref().map_or(0, |m| m.len()),
        m.and_then(|m| m.modified().ok()),
    )
}

struct Loaded {
    path: PathBuf,
    stamp: (u64, Option<SystemTime>),
    net: Arc<ControlNet>,
}

/// The ControlNets the last job used, kept loaded for the next (a painter reruns with the same
/// ones); the others are dropped, so memory holds only what is in use.
#[derive(Default)]
pub struct ControlNets {
    loaded: Mutex<Vec<Loaded>>,
}

impl ControlNets {
    /// The networks at `paths`, loading those not already held; everything else is freed.
    pub fn take(
        &self,
        paths: &[PathBuf],
        base: &UNetConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Vec<Arc<ControlNet>>> {
        if paths.len() > MAX_CONTROLNETS {
            return Err(EngineError::InvalidParams(format!(
                "{} ControlNets (at most {MAX_CONTROLNETS} at once)",
                paths.len()
            )));
        }
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| EngineError::Internal("ControlNet cache poisoned".into()))?;
        let mut kept: Vec<Loaded> = vec![];
        let mut nets = vec![];
        for path in paths {
            let stamp = stamp(path);
            let held = kept
                .iter()
                .chain(loaded.iter())
                .find(|l| &l.path == path && l.stamp == stamp)
                .map(|l| l.net.clone());
            let net = match held {
                Some(net) => net,
                None => {
                    // Free what the job no longer uses before reading a new network.
                    loaded.retain(|l| paths.contains(&l.path));
                    Arc::new(load(path, base, dtype, device)?)
                }
            };
            if !kept.iter().any(|l| &l.path == path) {
                kept.push(Loaded {
                    path: path.clone(),
                    stamp,
                    net: net.clone(),
                });
            }
            nets.push(net);
        }
        *loaded = kept;
        Ok(nets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_encoder_names_map_to_the_original_layout() {
        let cfg = crate::model::config::UNetConfig::from_diffusers_json(
            r#"{"block_out_channels":[32,64],"down_block_types":["CrossAttnDownBlock2D","DownBlock2D"],
                "up_block_types":["UpBlock2D","CrossAttnUpBlock2D"],"cross_attention_dim":32}"#,
        )
        .unwrap();
        let cases = [
            (
                "controlnet_cond_embedding.conv_in.weight",
                "input_hint_block.0.weight",
            ),
            (
                "controlnet_cond_embedding.blocks.0.bias",
                "input_hint_block.2.bias",
            ),
            (
                "controlnet_cond_embedding.blocks.5.weight",
                "input_hint_block.12.weight",
            ),
            (
                "controlnet_cond_embedding.conv_out.weight",
                "input_hint_block.14.weight",
            ),
            ("controlnet_down_blocks.11.weight", "zero_convs.11.0.weight"),
            ("controlnet_mid_block.bias", "middle_block_out.0.bias"),
            ("conv_in.weight", "input_blocks.0.0.weight"),
            ("time_embedding.linear_2.bias", "time_embed.2.bias"),
        ];
        for (ours, theirs) in cases {
            assert_eq!(original_name(ours, &cfg, 6), theirs);
        }
    }

    #[test]
    fn configs_of_other_models_are_refused() {
        let base = r#"{"block_out_channels":[32,64],"down_block_types":["CrossAttnDownBlock2D","DownBlock2D"],"cross_attention_dim":32"#;
        assert!(config_from_json(&format!("{base}}}")).is_ok());
        for bad in [
            format!(r#"{base},"_class_name":"T2IAdapter"}}"#),
            format!(r#"{base},"controlnet_conditioning_channel_order":"../etc"}}"#),
            format!(r#"{base},"conditioning_embedding_out_channels":[]}}"#),
            format!(r#"{base},"conditioning_embedding_out_channels":[16,0]}}"#),
            format!(r#"{base},"conditioning_channels":100000}}"#),
            format!(r#"{base},"addition_embed_type":"text_time"}}"#),
            r#"{"block_out_channels":[32,64]}"#.to_string(),
            "[".repeat(100_000),
        ] {
            assert!(
                config_from_json(&bad).is_err(),
                "{}",
                &bad[..bad.len().min(80)]
            );
        }
    }
}
