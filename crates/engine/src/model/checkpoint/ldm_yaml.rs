//! The original LDM config YAML of a single-file checkpoint (`v2-inference-v.yaml`, kept beside
//! the checkpoint as `<name>.yaml`, as AUTOMATIC1111 and diffusers read it): the settings the
//! weights cannot tell — attention heads, prediction type, the text encoder's layer, the VAE's
//! scale and the training schedule — and the architecture, checked against the weights.

use std::path::{Path, PathBuf};

use serde_norway::Value;

use crate::model::config::{UNetConfig, VaeConfig};
use crate::sampler::schedule::BetaSchedule;
use crate::sampler::{Prediction, TrainingSchedule};

/// A config is a few kilobytes; anything larger is not one.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Bracket nesting accepted in a config.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Model classes whose configs describe an SD 1.x/2.x text-to-image or inpainting model.
const MODEL_TARGETS: [&str; 2] = [
    "ldm.models.diffusion.ddpm.LatentDiffusion",
    "ldm.models.diffusion.ddpm.LatentInpaintDiffusion",
];

/// `unet_config.params` keys that do not change the network as SD 1.x/2.x use it.
const INERT_UNET_KEYS: [&str; 8] = [
    "use_checkpoint",
    "use_fp16",
    "image_size",
    "legacy",
    "use_spatial_transformer",
    "num_heads_upsample",
    "dims",
    "dropout",
];

/// `model.params` entries that belong to models this engine does not run (depth-to-image,
/// unCLIP, the upscaler).
const UNSUPPORTED_MODEL_KEYS: [&str; 3] =
    ["depth_stage_config", "noise_aug_config", "low_scale_config"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextLayer {
    Last,
    Penultimate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoderKind {
    /// `FrozenCLIPEmbedder`: SD 1.x.
    Clip,
    /// `FrozenOpenCLIPEmbedder`: SD 2.x.
    OpenClip,
}

/// How the YAML sets attention heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heads {
    /// `num_heads`: the same count at every level.
    Count(usize),
    /// `num_head_channels`: heads of this width.
    Width(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LdmUNet {
    pub in_channels: usize,
    pub out_channels: usize,
    pub model_channels: usize,
    pub channel_mult: Vec<usize>,
    pub num_res_blocks: usize,
    pub attention_resolutions: Vec<usize>,
    pub heads: Heads,
    pub use_linear_in_transformer: bool,
    pub transformer_depth: usize,
    pub context_dim: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LdmVae {
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub z_channels: usize,
    pub num_res_blocks: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LdmConfig {
    pub path: PathBuf,
    pub prediction: Prediction,
    pub schedule: TrainingSchedule,
    pub scale_factor: Option<f64>,
    pub unet: LdmUNet,
    pub vae: Option<LdmVae>,
    pub text: Option<(TextEncoderKind, TextLayer)>,
}

/// A YAML error naming the key it is about.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {key}: {message}")]
pub struct YamlError {
    pub path: PathBuf,
    pub key: String,
    pub message: String,
}

/// Walks the YAML by key path, so every error says which key it is about.
struct Node<'a> {
    path: &'a Path,
    key: String,
    value: &'a Value,
}

impl<'a> Node<'a> {
    fn err(&self, message: impl Into<String>) -> YamlError {
        YamlError {
            path: self.path.to_path_buf(),
            key: self.key.clone(),
            message: message.into(),
        }
    }

    fn child(&self, name: &str) -> Option<Node<'a>> {
        let value = self.value.as_mapping()?.get(name)?;
        let key = if self.key.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.key)
        };
        Some(Node {
            path: self.path,
            key,
            value,
        })
    }

    fn req(&self, name: &str) -> Result<Node<'a>, YamlError> {
        self.child(name).ok_or_else(|| {
            let mut n = self.err("missing");
            n.key = format!("{}.{name}", self.key);
            n
        })
    }

    fn keys(&self) -> Vec<&'a str> {
        self.value
            .as_mapping()
            .map(|m| m.keys().filter_map(|k| k.as_str()).collect())
            .unwrap_or_default()
    }

    fn usize(&self) -> Result<usize, YamlError> {
        self.value
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .filter(|&v| v <= 1 << 20)
            .ok_or_else(|| {
                self.err(format!(
                    "expected a whole number, found {}",
                    show(self.value)
                ))
            })
    }

    fn int(&self) -> Result<i64, YamlError> {
        self.value.as_i64().ok_or_else(|| {
            self.err(format!(
                "expected a whole number, found {}",
                show(self.value)
            ))
        })
    }

    fn f64(&self) -> Result<f64, YamlError> {
        self.value
            .as_f64()
            .filter(|v| v.is_finite())
            .ok_or_else(|| self.err(format!("expected a number, found {}", show(self.value))))
    }

    fn bool(&self) -> Result<bool, YamlError> {
        self.value.as_bool().ok_or_else(|| {
            self.err(format!(
                "expected true or false, found {}",
                show(self.value)
            ))
        })
    }

    fn str(&self) -> Result<&'a str, YamlError> {
        self.value
            .as_str()
            .ok_or_else(|| self.err(format!("expected text, found {}", show(self.value))))
    }

    fn usizes(&self) -> Result<Vec<usize>, YamlError> {
        let seq = self
            .value
            .as_sequence()
            .filter(|s| s.len() <= 16)
            .ok_or_else(|| self.err("expected a list of up to 16 whole numbers"))?;
        seq.iter()
            .enumerate()
            .map(|(i, v)| {
                Node {
                    path: self.path,
                    key: format!("{}[{i}]", self.key),
                    value: v,
                }
                .usize()
            })
            .collect()
    }
}

/// A value quoted in an error: at most 40 characters of it.
fn clip(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{:?}…", &s[..i]),
        None => format!("{s:?}"),
    }
}

fn show(v: &Value) -> String {
    let s = serde_norway::to_string(v).unwrap_or_default();
    let s = s.trim();
    if s.len() > 40 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(40).map(|c| c.0).unwrap_or(s.len())]
        )
    } else {
        s.to_string()
    }
}

impl LdmConfig {
    /// Reads and checks a config file.
    pub fn read(path: &Path) -> Result<Self, YamlError> {
        let top_err = |message: String| YamlError {
            path: path.to_path_buf(),
            key: "(file)".into(),
            message,
        };
        use std::io::Read;
        // Only regular files: opening a pipe would wait for a writer, a device never ends.
        let meta = std::fs::metadata(path).map_err(|e| top_err(format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(top_err("not a regular file".into()));
        }
        // Read at most one byte past the limit, whatever the size said.
        let file = std::fs::File::open(path).map_err(|e| top_err(format!("cannot read: {e}")))?;
        let mut bytes = vec![];
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| top_err(format!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(top_err(format!(
                "more than {MAX_CONFIG_BYTES} bytes; an LDM config is a few kilobytes"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|_| top_err("not UTF-8 text".into()))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, YamlError> {
        // The YAML parser's time grows with the square of flow nesting (`{a: {a: …}}`);
        // an LDM config nests five levels.
        let mut depth = 0usize;
        let mut deepest = 0usize;
        for b in text.bytes() {
            match b {
                b'{' | b'[' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if deepest > MAX_FLOW_DEPTH {
            return Err(YamlError {
                path: path.to_path_buf(),
                key: "(file)".into(),
                message: format!(
                    "brackets nested {deepest} deep (at most {MAX_FLOW_DEPTH}); an LDM config nests a few levels"
                ),
            });
        }
        let value: Value = serde_norway::from_str(text).map_err(|e| YamlError {
            path: path.to_path_buf(),
            key: "(file)".into(),
            message: format!("not valid YAML ({e})"),
        })?;
        let root = Node {
            path,
            key: String::new(),
            value: &value,
        };
        let model = root.req("model")?;
        let target = model.req("target")?;
        let target_name = target.str()?;
        if !MODEL_TARGETS.contains(&target_name) {
            return Err(target.err(format!(
                "{} is not a Stable Diffusion 1.x/2.x model class (SDXL, depth, unCLIP and upscaler configs are not supported)",
                clip(target_name)
            )));
        }
        let params = model.req("params")?;
        for key in UNSUPPORTED_MODEL_KEYS {
            if let Some(n) = params.child(key) {
                return Err(n.err("belongs to a model this app does not run"));
            }
        }
        let prediction = match params.child("parameterization") {
            None => Prediction::Epsilon,
            Some(n) => match n.str()? {
                "eps" => Prediction::Epsilon,
                "v" => Prediction::V,
                other => return Err(n.err(format!("{} is not eps or v", clip(other)))),
            },
        };
        let mut schedule = TrainingSchedule::default();
        if let Some(n) = params.child("linear_start") {
            schedule.beta_start = n.f64()?;
        }
        if let Some(n) = params.child("linear_end") {
            schedule.beta_end = n.f64()?;
        }
        if let Some(n) = params.child("timesteps") {
            schedule.num_train_timesteps = n.usize()?;
            if !(2..=10_000).contains(&schedule.num_train_timesteps) {
                return Err(n.err("expected between 2 and 10000 timesteps"));
            }
        }
        if !(0.0..1.0).contains(&schedule.beta_start)
            || !(0.0..1.0).contains(&schedule.beta_end)
            || schedule.beta_start >= schedule.beta_end
        {
            return Err(params.err(format!(
                "linear_start {} and linear_end {} are not a schedule (0 ≤ start < end < 1)",
                schedule.beta_start, schedule.beta_end
            )));
        }
        if let Some(n) = params.child("beta_schedule") {
            schedule.beta_schedule = match n.str()? {
                "linear" => BetaSchedule::ScaledLinear, // LDM's "linear" is linear in √β
                other => return Err(n.err(format!("unsupported beta schedule {}", clip(other)))),
            };
        }
        let scale_factor = match params.child("scale_factor") {
            Some(n) => {
                let v = n.f64()?;
                if !(v > 0.0 && v < 100.0) {
                    return Err(n.err(format!("{v} is not a latent scale")));
                }
                Some(v)
            }
            None => None,
        };
        let unet = read_unet(&params.req("unet_config")?.req("params")?)?;
        let vae = match params.child("first_stage_config") {
            Some(n) => Some(read_vae(&n.req("params")?.req("ddconfig")?)?),
            None => None,
        };
        let text = match params.child("cond_stage_config") {
            Some(n) => Some(read_text(&n)?),
            None => None,
        };
        Ok(Self {
            path: path.to_path_buf(),
            prediction,
            schedule,
            scale_factor,
            unet,
            vae,
            text,
        })
    }

    /// The attention heads per level, for these block widths.
    pub fn heads(&self, block_out_channels: &[usize]) -> Result<Vec<usize>, String> {
        block_out_channels
            .iter()
            .map(|&ch| match self.unet.heads {
                Heads::Count(n) if n > 0 && ch % n == 0 => Ok(n),
                Heads::Width(w) if w > 0 && ch % w == 0 => Ok(ch / w),
                Heads::Count(n) => Err(format!("num_heads {n} does not divide {ch} channels")),
                Heads::Width(w) => Err(format!(
                    "num_head_channels {w} does not divide {ch} channels"
                )),
            })
            .collect()
    }

    /// Checks the YAML's UNet against the one the weights hold and sets what only the YAML
    /// knows (heads). Errors name the key that disagrees.
    pub fn apply_to_unet(&self, unet: &mut UNetConfig) -> Result<(), YamlError> {
        let u = &self.unet;
        let key = |k: &str| format!("model.params.unet_config.params.{k}");
        let err = |k: &str, message: String| YamlError {
            path: self.path.clone(),
            key: key(k),
            message,
        };
        let widths: Vec<usize> = u
            .channel_mult
            .iter()
            .map(|m| m * u.model_channels)
            .collect();
        if widths != unet.block_out_channels {
            return Err(err(
                "channel_mult",
                format!(
                    "model_channels × channel_mult = {widths:?}, but the checkpoint's UNet levels are {:?} wide",
                    unet.block_out_channels
                ),
            ));
        }
        let checks = [
            ("in_channels", u.in_channels, unet.in_channels),
            ("out_channels", u.out_channels, unet.out_channels),
            ("num_res_blocks", u.num_res_blocks, unet.layers_per_block),
            (
                "transformer_depth",
                u.transformer_depth,
                unet.transformer_layers,
            ),
            ("context_dim", u.context_dim, unet.cross_attention_dim),
        ];
        for (k, yaml, file) in checks {
            if yaml != file {
                return Err(err(k, format!("{yaml}, but the checkpoint has {file}")));
            }
        }
        if u.use_linear_in_transformer != unet.use_linear_projection {
            return Err(err(
                "use_linear_in_transformer",
                format!(
                    "{}, but the checkpoint's transformers use {} projections",
                    u.use_linear_in_transformer,
                    if unet.use_linear_projection {
                        "linear"
                    } else {
                        "1×1 convolution"
                    }
                ),
            ));
        }
        // Attention at a level whose downsampling factor (1, 2, 4, …) is listed.
        let attention: Vec<bool> = (0..widths.len())
            .map(|level| u.attention_resolutions.contains(&(1 << level)))
            .collect();
        if attention != unet.down_attention {
            return Err(err(
                "attention_resolutions",
                format!(
                    "{:?} puts attention at levels {:?}, but the checkpoint has it at {:?}",
                    u.attention_resolutions,
                    levels(&attention),
                    levels(&unet.down_attention)
                ),
            ));
        }
        let heads_key = match u.heads {
            Heads::Count(_) => "num_heads",
            Heads::Width(_) => "num_head_channels",
        };
        unet.heads = self
            .heads(&unet.block_out_channels)
            .map_err(|m| err(heads_key, m))?;
        Ok(())
    }

    /// Checks the YAML's VAE against the weights' and sets its latent scale.
    pub fn apply_to_vae(&self, vae: &mut VaeConfig) -> Result<(), YamlError> {
        if let Some(v) = &self.vae {
            let key = "model.params.first_stage_config.params.ddconfig";
            let err = |k: &str, message: String| YamlError {
                path: self.path.clone(),
                key: format!("{key}.{k}"),
                message,
            };
            let widths: Vec<usize> = v.ch_mult.iter().map(|m| m * v.ch).collect();
            if widths != vae.block_out_channels {
                return Err(err(
                    "ch_mult",
                    format!(
                        "ch × ch_mult = {widths:?}, but the checkpoint's VAE levels are {:?} wide",
                        vae.block_out_channels
                    ),
                ));
            }
            if v.z_channels != vae.latent_channels {
                return Err(err(
                    "z_channels",
                    format!(
                        "{}, but the checkpoint's VAE has {}",
                        v.z_channels, vae.latent_channels
                    ),
                ));
            }
            if v.num_res_blocks != vae.layers_per_block {
                return Err(err(
                    "num_res_blocks",
                    format!(
                        "{}, but the checkpoint's VAE has {}",
                        v.num_res_blocks, vae.layers_per_block
                    ),
                ));
            }
        }
        if let Some(s) = self.scale_factor {
            vae.scaling_factor = s;
        }
        Ok(())
    }
}

fn levels(flags: &[bool]) -> Vec<usize> {
    flags
        .iter()
        .enumerate()
        .filter(|(_, &f)| f)
        .map(|(i, _)| i)
        .collect()
}

fn read_unet(p: &Node) -> Result<LdmUNet, YamlError> {
    let known = [
        "in_channels",
        "out_channels",
        "model_channels",
        "channel_mult",
        "num_res_blocks",
        "attention_resolutions",
        "num_heads",
        "num_head_channels",
        "use_linear_in_transformer",
        "transformer_depth",
        "context_dim",
    ];
    for k in p.keys() {
        if !known.contains(&k) && !INERT_UNET_KEYS.contains(&k) {
            let n = p.req(k)?;
            // Keys that say what SD 1.x/2.x already are pass; any other value changes the
            // network (class conditioning, SDXL's per-level depths, …).
            let neutral = matches!(
                (k, n.value),
                (
                    "use_scale_shift_norm" | "resblock_updown" | "use_new_attention_order",
                    Value::Bool(false)
                ) | ("conv_resample", Value::Bool(true))
                    | (
                        "num_classes"
                            | "adm_in_channels"
                            | "disable_self_attentions"
                            | "num_attention_blocks",
                        Value::Null
                    )
            );
            if !neutral {
                return Err(n.err(format!(
                    "unsupported UNet setting {} (not part of SD 1.x/2.x)",
                    show(n.value)
                )));
            }
        }
    }
    if let Some(n) = p.child("use_spatial_transformer") {
        if !n.bool()? {
            return Err(n.err("SD 1.x/2.x UNets use spatial transformers"));
        }
    }
    let num_heads = p
        .child("num_heads")
        .map(|n| n.int().map(|v| (n, v)))
        .transpose()?;
    let head_channels = p
        .child("num_head_channels")
        .map(|n| n.int().map(|v| (n, v)))
        .transpose()?;
    // LDM: num_head_channels = -1 (or absent) means "use num_heads".
    let heads = match (head_channels, num_heads) {
        (Some((n, w)), _) if w != -1 => Heads::Width(
            usize::try_from(w)
                .ok()
                .filter(|&w| w > 0)
                .ok_or_else(|| n.err("expected a positive width or -1"))?,
        ),
        (_, Some((n, h))) if h != -1 => Heads::Count(
            usize::try_from(h)
                .ok()
                .filter(|&h| h > 0)
                .ok_or_else(|| n.err("expected a positive count or -1"))?,
        ),
        _ => return Err(p.err("neither num_heads nor num_head_channels is set")),
    };
    let transformer_depth = match p.child("transformer_depth") {
        None => 1,
        Some(n) => n.usize()?,
    };
    let channel_mult = p.req("channel_mult")?.usizes()?;
    if channel_mult.is_empty() {
        return Err(p.req("channel_mult")?.err("no levels"));
    }
    Ok(LdmUNet {
        in_channels: p.req("in_channels")?.usize()?,
        out_channels: p.req("out_channels")?.usize()?,
        model_channels: p.req("model_channels")?.usize()?,
        channel_mult,
        num_res_blocks: p.req("num_res_blocks")?.usize()?,
        attention_resolutions: p.req("attention_resolutions")?.usizes()?,
        heads,
        use_linear_in_transformer: match p.child("use_linear_in_transformer") {
            None => false,
            Some(n) => n.bool()?,
        },
        transformer_depth,
        context_dim: p.req("context_dim")?.usize()?,
    })
}

fn read_vae(d: &Node) -> Result<LdmVae, YamlError> {
    Ok(LdmVae {
        ch: d.req("ch")?.usize()?,
        ch_mult: d.req("ch_mult")?.usizes()?,
        z_channels: d.req("z_channels")?.usize()?,
        num_res_blocks: d.req("num_res_blocks")?.usize()?,
    })
}

fn read_text(c: &Node) -> Result<(TextEncoderKind, TextLayer), YamlError> {
    let target = c.req("target")?;
    let kind = match target.str()?.rsplit('.').next().unwrap_or("") {
        "FrozenCLIPEmbedder" => TextEncoderKind::Clip,
        "FrozenOpenCLIPEmbedder" => TextEncoderKind::OpenClip,
        other => {
            return Err(target.err(format!(
                "{} is not the text encoder of SD 1.x (FrozenCLIPEmbedder) or 2.x (FrozenOpenCLIPEmbedder)",
                clip(other)
            )))
        }
    };
    let layer = match c.child("params").and_then(|p| p.child("layer")) {
        None => match kind {
            TextEncoderKind::Clip => TextLayer::Last,
            // open_clip's embedder defaults to the last layer; SD 2.x configs all say penultimate.
            TextEncoderKind::OpenClip => TextLayer::Last,
        },
        Some(n) => match n.str()? {
            "last" => TextLayer::Last,
            "penultimate" => TextLayer::Penultimate,
            other => return Err(n.err(format!("{} is not last or penultimate", clip(other)))),
        },
    };
    Ok((kind, layer))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"
model:
  base_learning_rate: 1.0e-4
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    parameterization: "v"
    linear_start: 0.00085
    linear_end: 0.0120
    timesteps: 1000
    scale_factor: 0.18215
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        use_checkpoint: True
        use_fp16: True
        image_size: 32
        in_channels: 4
        out_channels: 4
        model_channels: 320
        attention_resolutions: [ 4, 2, 1 ]
        num_res_blocks: 2
        channel_mult: [ 1, 2, 4, 4 ]
        num_head_channels: 64
        use_linear_in_transformer: True
        transformer_depth: 1
        context_dim: 1024
        legacy: False
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: 4
        ddconfig:
          double_z: true
          z_channels: 4
          resolution: 256
          in_channels: 3
          out_ch: 3
          ch: 128
          ch_mult: [1, 2, 4, 4]
          num_res_blocks: 2
          attn_resolutions: []
          dropout: 0.0
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder
      params:
        freeze: True
        layer: "penultimate"
"#;

    fn sd21_unet() -> UNetConfig {
        UNetConfig {
            in_channels: 4,
            out_channels: 4,
            block_out_channels: vec![320, 640, 1280, 1280],
            down_attention: vec![true, true, true, false],
            up_attention: vec![false, true, true, true],
            layers_per_block: 2,
            heads: vec![8; 4],
            transformer_layers: 1,
            cross_attention_dim: 1024,
            use_linear_projection: true,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
        }
    }

    #[test]
    fn reads_stabilitys_v2_inference_v() {
        let c = LdmConfig::parse(Path::new("v.yaml"), V2).unwrap();
        assert_eq!(c.prediction, Prediction::V);
        assert_eq!(c.unet.heads, Heads::Width(64));
        assert_eq!(
            c.text,
            Some((TextEncoderKind::OpenClip, TextLayer::Penultimate))
        );
        let mut u = sd21_unet();
        c.apply_to_unet(&mut u).unwrap();
        assert_eq!(u.heads, vec![5, 10, 20, 20]);
    }

    #[test]
    fn contradictions_name_the_key() {
        let c = LdmConfig::parse(
            Path::new("v.yaml"),
            &V2.replace("context_dim: 1024", "context_dim: 768"),
        )
        .unwrap();
        let e = c.apply_to_unet(&mut sd21_unet()).unwrap_err();
        assert_eq!(e.key, "model.params.unet_config.params.context_dim");
        let c =
            LdmConfig::parse(Path::new("v.yaml"), &V2.replace("[ 4, 2, 1 ]", "[ 4, 2 ]")).unwrap();
        let e = c.apply_to_unet(&mut sd21_unet()).unwrap_err();
        assert!(e.key.ends_with("attention_resolutions"), "{e}");
        let c = LdmConfig::parse(
            Path::new("v.yaml"),
            &V2.replace("num_head_channels: 64", "num_head_channels: 96"),
        )
        .unwrap();
        let e = c.apply_to_unet(&mut sd21_unet()).unwrap_err();
        assert!(e.key.ends_with("num_head_channels"), "{e}");
    }

    #[test]
    fn unknown_and_bad_values_are_errors_naming_the_key() {
        let cases = [
            (
                "parameterization: \"v\"",
                "parameterization: \"x0\"",
                "model.params.parameterization",
            ),
            (
                "layer: \"penultimate\"",
                "layer: \"hidden\"",
                "model.params.cond_stage_config.params.layer",
            ),
            (
                "legacy: False",
                "legacy: False\n        num_classes: 1000",
                "model.params.unet_config.params.num_classes",
            ),
            (
                "model_channels: 320",
                "model_channels: -3",
                "model.params.unet_config.params.model_channels",
            ),
            (
                "scale_factor: 0.18215",
                "scale_factor: .nan",
                "model.params.scale_factor",
            ),
            (
                "ldm.models.diffusion.ddpm.LatentDiffusion",
                "sgm.models.diffusion.DiffusionEngine",
                "model.target",
            ),
            (
                "channel_mult: [ 1, 2, 4, 4 ]",
                "channel_mult: 4",
                "model.params.unet_config.params.channel_mult",
            ),
        ];
        for (from, to, key) in cases {
            let e = LdmConfig::parse(Path::new("x.yaml"), &V2.replace(from, to)).unwrap_err();
            assert_eq!(e.key, key, "{to}: {e}");
        }
        assert!(LdmConfig::parse(
            Path::new("x.yaml"),
            &V2.replace("unet_config:", "unet_cfg:")
        )
        .is_err());
    }

    #[test]
    fn hostile_yaml_is_refused() {
        // Alias expansion ("billion laughs") and deep nesting stop inside the parser.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            bomb += &format!(
                "{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n",
                (b'a' + i) as char,
                (b'a' + i) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char,
                (b'a' + i - 1) as char
            );
        }
        assert!(LdmConfig::parse(Path::new("x.yaml"), &bomb).is_err());
        let deep = "[".repeat(100_000);
        assert!(LdmConfig::parse(Path::new("x.yaml"), &deep).is_err());
        assert!(LdmConfig::parse(Path::new("x.yaml"), "").is_err());
        assert!(LdmConfig::parse(Path::new("x.yaml"), "model: [1, 2]").is_err());
    }
}
