//! Shapes of the three networks, read from diffusers `config.json` files or inferred from the
//! tensors of a single-file checkpoint. Anything SD 1.x/2.x-shaped is accepted, not only the
//! published sizes.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    QuickGelu,
    Gelu,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    /// Layers that are run; a checkpoint may hold more (SD 2.x keeps OpenCLIP's last layer,
    /// which Stable Diffusion skips).
    pub num_layers: usize,
    pub num_heads: usize,
    pub max_position_embeddings: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    /// Per down level: whether it has cross-attention transformers.
    pub down_attention: Vec<bool>,
    /// Per up level, in forward order (deepest first).
    pub up_attention: Vec<bool>,
    pub layers_per_block: usize,
    /// Attention heads per down level; up levels use them reversed, the mid block the last.
    pub heads: Vec<usize>,
    pub transformer_layers: usize,
    pub cross_attention_dim: usize,
    pub use_linear_projection: bool,
    pub norm_num_groups: usize,
    pub norm_eps: f64,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub scaling_factor: f64,
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
    pub mid_block_attention: bool,
}

impl VaeConfig {
    /// The VAE every SD 1.x and 2.x checkpoint uses, but for its widths.
    pub fn sd(block_out_channels: Vec<usize>, latent_channels: usize) -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            latent_channels,
            block_out_channels,
            layers_per_block: 2,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_attention: true,
        }
    }
}

/// A value that diffusers configs give either once for all levels or per level.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum PerLevel {
    One(usize),
    Each(Vec<usize>),
}

impl PerLevel {
    fn expand(&self, levels: usize) -> Result<Vec<usize>, String> {
        match self {
            PerLevel::One(v) => Ok(vec![*v; levels]),
            PerLevel::Each(v) if v.len() == levels => Ok(v.clone()),
            PerLevel::Each(v) => Err(format!("{} values given for {levels} levels", v.len())),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawUNet {
    #[serde(default = "four")]
    in_channels: usize,
    #[serde(default = "four")]
    out_channels: usize,
    block_out_channels: Vec<usize>,
    down_block_types: Vec<String>,
    /// Absent in a ControlNet's config (it has no up levels).
    #[serde(default)]
    up_block_types: Option<Vec<String>>,
    #[serde(default = "two")]
    layers_per_block: usize,
    #[serde(default)]
    attention_head_dim: Option<PerLevel>,
    #[serde(default)]
    num_attention_heads: Option<PerLevel>,
    #[serde(default)]
    transformer_layers_per_block: Option<PerLevel>,
    cross_attention_dim: usize,
    #[serde(default)]
    use_linear_projection: bool,
    #[serde(default = "thirty_two")]
    norm_num_groups: usize,
    #[serde(default = "eps5")]
    norm_eps: f64,
    #[serde(default = "yes")]
    flip_sin_to_cos: bool,
    #[serde(default)]
    freq_shift: f64,
    #[serde(default)]
    mid_block_type: Option<String>,
    #[serde(default)]
    class_embed_type: Option<String>,
    #[serde(default)]
    addition_embed_type: Option<String>,
}

fn four() -> usize {
    4
}
fn two() -> usize {
    2
}
fn thirty_two() -> usize {
    32
}
fn eps5() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}

impl UNetConfig {
    pub fn from_diffusers_json(text: &str) -> Result<Self, String> {
        Self::from_json(text, false)
    }

    /// A ControlNet's `config.json`: the encoder's fields of a UNet config (the up levels
    /// mirror the down levels).
    pub fn encoder_from_diffusers_json(text: &str) -> Result<Self, String> {
        Self::from_json(text, true)
    }

    fn from_json(text: &str, encoder_only: bool) -> Result<Self, String> {
        let raw: RawUNet = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if raw.class_embed_type.is_some() || raw.addition_embed_type.is_some() {
            return Err("UNets with class or added embeddings (SDXL, upscalers) are not Stable Diffusion 1.x/2.x".into());
        }
        let levels = raw.block_out_channels.len();
        let up_block_types = match (raw.up_block_types, encoder_only) {
            (Some(up), false) => up,
            (None, false) => return Err("up_block_types is missing".into()),
            (_, true) => raw
                .down_block_types
                .iter()
                .rev()
                .map(|t| t.replace("Down", "Up"))
                .collect(),
        };
        if raw.down_block_types.len() != levels || up_block_types.len() != levels {
            return Err("block types and block_out_channels disagree in length".into());
        }
        let down_attention = raw
            .down_block_types
            .iter()
            .map(|t| match t.as_str() {
                "CrossAttnDownBlock2D" => Ok(true),
                "DownBlock2D" => Ok(false),
                other => Err(format!("unsupported down block {other}")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let up_attention = up_block_types
            .iter()
            .map(|t| match t.as_str() {
                "CrossAttnUpBlock2D" => Ok(true),
                "UpBlock2D" => Ok(false),
                other => Err(format!("unsupported up block {other}")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        match raw.mid_block_type.as_deref() {
            None | Some("UNetMidBlock2DCrossAttn") => {}
            Some(other) => return Err(format!("unsupported mid block {other}")),
        }
        // diffusers' historical naming: for SD 1.x/2.x configs `attention_head_dim` holds the
        // number of heads, unless `num_attention_heads` is given.
        let heads = match (&raw.num_attention_heads, &raw.attention_head_dim) {
            (Some(h), _) => h.expand(levels)?,
            (None, Some(h)) => h.expand(levels)?,
            (None, None) => vec![8; levels],
        };
        let transformer_layers = match &raw.transformer_layers_per_block {
            None => 1,
            Some(t) => {
                let per = t.expand(levels)?;
                if per.iter().any(|&d| d != per[0]) {
                    return Err("per-level transformer depth is not supported".into());
                }
                per[0]
            }
        };
        let cfg = Self {
            in_channels: raw.in_channels,
            out_channels: raw.out_channels,
            block_out_channels: raw.block_out_channels,
            down_attention,
            up_attention,
            layers_per_block: raw.layers_per_block,
            heads,
            transformer_layers,
            cross_attention_dim: raw.cross_attention_dim,
            use_linear_projection: raw.use_linear_projection,
            norm_num_groups: raw.norm_num_groups,
            norm_eps: raw.norm_eps,
            flip_sin_to_cos: raw.flip_sin_to_cos,
            freq_shift: raw.freq_shift,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.norm_num_groups == 0 {
            return Err("norm_num_groups is 0".into());
        }
        positive("norm_eps", self.norm_eps)?;
        for (level, (&ch, &h)) in self.block_out_channels.iter().zip(&self.heads).enumerate() {
            if h == 0 || ch % h != 0 {
                return Err(format!(
                    "level {level}: {ch} channels cannot be split into {h} heads"
                ));
            }
            if ch % self.norm_num_groups != 0 {
                return Err(format!(
                    "level {level}: {ch} channels are not divisible into {} groups",
                    self.norm_num_groups
                ));
            }
        }
        if self.block_out_channels.is_empty() {
            return Err("no UNet levels".into());
        }
        Ok(())
    }

    pub fn is_inpainting(&self) -> bool {
        self.in_channels == 9
    }
}

#[derive(Debug, Deserialize)]
struct RawVae {
    #[serde(default = "three")]
    in_channels: usize,
    #[serde(default = "three")]
    out_channels: usize,
    #[serde(default = "four")]
    latent_channels: usize,
    block_out_channels: Vec<usize>,
    #[serde(default = "one")]
    layers_per_block: usize,
    #[serde(default = "thirty_two")]
    norm_num_groups: usize,
    #[serde(default = "sd_scale")]
    scaling_factor: f64,
    #[serde(default = "yes")]
    use_quant_conv: bool,
    #[serde(default = "yes")]
    use_post_quant_conv: bool,
    #[serde(default = "yes")]
    mid_block_add_attention: bool,
}

fn three() -> usize {
    3
}
fn one() -> usize {
    1
}
fn sd_scale() -> f64 {
    0.18215
}

impl VaeConfig {
    pub fn from_diffusers_json(text: &str) -> Result<Self, String> {
        let raw: RawVae = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if raw.block_out_channels.is_empty() {
            return Err("no VAE levels (block_out_channels is empty)".into());
        }
        if raw.norm_num_groups == 0
            || raw
                .block_out_channels
                .iter()
                .any(|c| *c == 0 || !c.is_multiple_of(raw.norm_num_groups))
        {
            return Err(format!(
                "channels {:?} cannot be split into {} groups",
                raw.block_out_channels, raw.norm_num_groups
            ));
        }
        // The latents are divided by it: zero, tiny or non-finite scales give nothing usable.
        if !(raw.scaling_factor.is_finite() && raw.scaling_factor.abs() >= 1e-6) {
            return Err(format!(
                "scaling_factor {} is not usable",
                raw.scaling_factor
            ));
        }
        Ok(Self {
            in_channels: raw.in_channels,
            out_channels: raw.out_channels,
            latent_channels: raw.latent_channels,
            block_out_channels: raw.block_out_channels,
            layers_per_block: raw.layers_per_block,
            norm_num_groups: raw.norm_num_groups,
            scaling_factor: raw.scaling_factor,
            use_quant_conv: raw.use_quant_conv,
            use_post_quant_conv: raw.use_post_quant_conv,
            mid_block_attention: raw.mid_block_add_attention,
        })
    }
}

#[derive(Debug, Deserialize)]
struct RawClip {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "seventy_seven")]
    max_position_embeddings: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
    #[serde(default = "eps5")]
    layer_norm_eps: f64,
}

fn seventy_seven() -> usize {
    77
}
fn quick_gelu() -> String {
    "quick_gelu".into()
}

impl ClipConfig {
    pub fn from_transformers_json(text: &str) -> Result<Self, String> {
        let raw: RawClip = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let activation = match raw.hidden_act.as_str() {
            "quick_gelu" => Activation::QuickGelu,
            "gelu" => Activation::Gelu,
            other => return Err(format!("unsupported text encoder activation {other}")),
        };
        if raw.num_hidden_layers == 0 {
            return Err("the text encoder has no layers (num_hidden_layers is 0)".into());
        }
        positive("layer_norm_eps", raw.layer_norm_eps)?;
        if raw.num_attention_heads == 0 || !raw.hidden_size.is_multiple_of(raw.num_attention_heads)
        {
            return Err(format!(
                "hidden size {} cannot be split into {} heads",
                raw.hidden_size, raw.num_attention_heads
            ));
        }
        Ok(Self {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            max_position_embeddings: raw.max_position_embeddings,
            activation,
            layer_norm_eps: raw.layer_norm_eps,
        })
    }
}

/// A normalisation epsilon: finite and above zero (it is added under a square root).
fn positive(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{name} {value} is not a positive number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd2_style_head_lists_are_read_per_level() {
        let json = r#"{"block_out_channels":[320,640,1280,1280],
            "down_block_types":["CrossAttnDownBlock2D","CrossAttnDownBlock2D","CrossAttnDownBlock2D","DownBlock2D"],
            "up_block_types":["UpBlock2D","CrossAttnUpBlock2D","CrossAttnUpBlock2D","CrossAttnUpBlock2D"],
            "attention_head_dim":[5,10,20,20],"cross_attention_dim":1024,"use_linear_projection":true}"#;
        let cfg = UNetConfig::from_diffusers_json(json).unwrap();
        assert_eq!(cfg.heads, vec![5, 10, 20, 20]);
        assert_eq!(cfg.down_attention, vec![true, true, true, false]);
        assert_eq!(cfg.up_attention, vec![false, true, true, true]);
        assert!(cfg.use_linear_projection);
    }

    #[test]
    fn heads_that_do_not_divide_channels_are_rejected() {
        let json = r#"{"block_out_channels":[32,64],"down_block_types":["CrossAttnDownBlock2D","DownBlock2D"],
            "up_block_types":["UpBlock2D","CrossAttnUpBlock2D"],"attention_head_dim":5,"cross_attention_dim":32}"#;
        assert!(UNetConfig::from_diffusers_json(json).is_err());
    }
}
