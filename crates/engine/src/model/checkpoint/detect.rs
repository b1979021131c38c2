//! What a single-file checkpoint holds, read from its tensor names and shapes alone: the UNet,
//! VAE and text encoder configs, the SD family, and what it is when it is not a Stable
//! Diffusion 1.x/2.x checkpoint at all.

use crate::model::clip::ClipLayout;
use crate::model::config::{Activation, ClipConfig, UNetConfig, VaeConfig};
use crate::model::weights::WeightFile;

pub const UNET_PREFIX: &str = "model.diffusion_model.";
pub const VAE_PREFIX: &str = "first_stage_model.";
pub const SD1_TEXT_PREFIX: &str = "cond_stage_model.transformer.";
pub const SD2_TEXT_PREFIX: &str = "cond_stage_model.model.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// CLIP ViT-L text encoder (Hugging Face layout), conv projections in the transformers.
    Sd1,
    /// OpenCLIP ViT-H text encoder, penultimate layer, linear projections.
    Sd2,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Sd1 => "SD 1.x",
            Family::Sd2 => "SD 2.x",
        })
    }
}

#[derive(Debug, Clone)]
pub struct SingleFileLayout {
    pub family: Family,
    pub unet: UNetConfig,
    /// `None` when the file holds no VAE (one must come from elsewhere).
    pub vae: Option<VaeConfig>,
    pub clip: ClipConfig,
    pub clip_layout: ClipLayout,
    /// Prefix of the text model's tensors (`…text_model.` or the OpenCLIP root).
    pub text_prefix: String,
    /// The checkpoint marks itself as v-prediction (a `v_pred` key, as ComfyUI writes).
    pub marked_v_prediction: bool,
    /// A training checkpoint's EMA copy of the UNet (`model_ema.*`) is present.
    pub has_ema: bool,
    pub global_step: Option<i64>,
    /// Text encoder layers the file holds (SD 2.x files keep one more than they use).
    pub text_layers_held: usize,
    /// The LDM config YAML applied, if any.
    pub yaml: Option<crate::model::ldm_yaml::LdmConfig>,
}

/// What decided a setting of a single-file model, for `models inspect` and the PNG record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Read off the tensors (names, shapes, markers).
    File,
    /// The LDM config YAML beside the checkpoint or given with `--config`.
    Yaml,
    /// A rule of thumb where neither says (with the rule).
    Rule(&'static str),
    /// AUTOMATIC1111's test forward of the UNet, made at load.
    TestForward,
    /// The user's option (`--prediction`).
    Option,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File => f.write_str("file"),
            Source::Yaml => f.write_str("YAML"),
            Source::Rule(why) => write!(f, "rule: {why}"),
            Source::TestForward => f.write_str("test forward of the UNet"),
            Source::Option => f.write_str("option"),
        }
    }
}

/// How the prediction type of a single file is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PredictionChoice {
    Known(crate::sampler::Prediction, Source),
    /// An SD 2.x text-to-image file with nothing to say: the 512 ε base or the 768 v model. A
    /// test forward of its UNet tells them apart (AUTOMATIC1111's rule).
    NeedsTestForward,
}

impl SingleFileLayout {
    /// What the file (and its YAML, once applied) says about its prediction type.
    pub fn prediction_choice(&self) -> PredictionChoice {
        use crate::sampler::Prediction;
        if let Some(yaml) = &self.yaml {
            PredictionChoice::Known(yaml.prediction, Source::Yaml)
        } else if self.marked_v_prediction {
            PredictionChoice::Known(Prediction::V, Source::File)
        } else if self.family != Family::Sd2 || self.unet.in_channels != 4 {
            PredictionChoice::Known(
                Prediction::Epsilon,
                Source::Rule("SD 1.x and inpainting models predict noise"),
            )
        } else {
            PredictionChoice::NeedsTestForward
        }
    }

    /// Applies an LDM config YAML: it wins over every guess from tensor shapes, and must agree
    /// with the weights where both speak.
    pub fn apply_yaml(
        &mut self,
        yaml: crate::model::ldm_yaml::LdmConfig,
    ) -> Result<(), crate::model::ldm_yaml::YamlError> {
        use crate::model::ldm_yaml::{TextEncoderKind, TextLayer, YamlError};
        yaml.apply_to_unet(&mut self.unet)?;
        if let Some(vae) = self.vae.as_mut() {
            yaml.apply_to_vae(vae)?;
        }
        if let Some((kind, layer)) = yaml.text {
            let file_kind = match self.family {
                Family::Sd1 => TextEncoderKind::Clip,
                Family::Sd2 => TextEncoderKind::OpenClip,
            };
            if kind != file_kind {
                return Err(YamlError {
                    path: yaml.path.clone(),
                    key: "model.params.cond_stage_config.target".into(),
                    message: format!(
                        "{kind:?} text encoder, but the checkpoint holds a {} one",
                        self.family
                    ),
                });
            }
            // The layers the file holds; SD 2.x files keep OpenCLIP's last layer too.
            let held = self.text_layers_held;
            let wanted = match layer {
                TextLayer::Last => held,
                TextLayer::Penultimate => held.saturating_sub(1),
            };
            if wanted == 0 {
                return Err(YamlError {
                    path: yaml.path.clone(),
                    key: "model.params.cond_stage_config.params.layer".into(),
                    message: "the text encoder has too few layers".into(),
                });
            }
            self.clip.num_layers = wanted;
        }
        self.yaml = Some(yaml);
        Ok(())
    }

    /// The training schedule: the YAML's, else SD 1.x/2.x's.
    pub fn schedule(&self) -> crate::sampler::TrainingSchedule {
        self.yaml
            .as_ref()
            .map(|y| y.schedule.clone())
            .unwrap_or_default()
    }

    /// What decided the attention heads: the YAML, or the rule the widths follow.
    fn heads_source(&self) -> Source {
        if self.yaml.is_some() {
            return Source::Yaml;
        }
        let u = &self.unet;
        let sd2 = u
            .heads
            .iter()
            .zip(&u.block_out_channels)
            .all(|(h, c)| c / h == 64);
        Source::Rule(if sd2 {
            "64-wide heads (SD 2.x)"
        } else {
            "8 heads per level (SD 1.x, and diffusers' default)"
        })
    }

    /// What decided the text encoder's layer: the YAML's `layer`, or the family's rule.
    fn text_layer_source(&self) -> Source {
        match (&self.yaml, self.clip_layout) {
            (Some(y), _) if y.text.is_some() => Source::Yaml,
            (_, ClipLayout::HuggingFace) => Source::Rule("SD 1.x: the last layer"),
            (_, ClipLayout::OpenClip) => Source::Rule("SD 2.x: the penultimate layer"),
        }
    }

    /// Each setting the weights cannot tell, its value and what decided it.
    pub fn decisions(&self) -> Vec<(&'static str, String, Source)> {
        let schedule = self.schedule();
        let yaml_or_rule = |rule| {
            if self.yaml.is_some() {
                Source::Yaml
            } else {
                Source::Rule(rule)
            }
        };
        let prediction = match self.prediction_choice() {
            PredictionChoice::Known(p, source) => (p.to_string(), source),
            PredictionChoice::NeedsTestForward => {
                ("decided at load".to_string(), Source::TestForward)
            }
        };
        vec![
            ("family", self.family.to_string(), Source::File),
            (
                "UNet input channels",
                self.unet.in_channels.to_string(),
                Source::File,
            ),
            (
                "attention heads per level",
                format!("{:?}", self.unet.heads),
                self.heads_source(),
            ),
            ("prediction", prediction.0, prediction.1),
            (
                "text encoder layers used",
                format!("{} of {}", self.clip.num_layers, self.text_layers_held),
                self.text_layer_source(),
            ),
            (
                "latent scale",
                self.vae
                    .as_ref()
                    .map(|v| v.scaling_factor.to_string())
                    .unwrap_or_else(|| "(no VAE)".into()),
                yaml_or_rule("SD 1.x/2.x: 0.18215"),
            ),
            (
                "training schedule",
                format!(
                    "{} steps, betas {}–{}",
                    schedule.num_train_timesteps, schedule.beta_start, schedule.beta_end
                ),
                yaml_or_rule("SD 1.x/2.x: 1000 steps, 0.00085–0.012"),
            ),
        ]
    }
}

/// A one-line description of what a file that is not an SD 1.x/2.x checkpoint looks like.
pub fn not_sd_reason(w: &WeightFile) -> String {
    let any = |p: &str| w.names().any(|n| n.starts_with(p));
    if any("conditioner.embedders") {
        "this looks like an SDXL checkpoint; only SD 1.x and 2.x are supported".into()
    } else if any("lora_unet_")
        || any("lora_te")
        || w.names()
            .any(|n| n.contains(".lora_down.") || n.contains("lora_A"))
    {
        "this is a LoRA, not a full model; open a Stable Diffusion checkpoint instead".into()
    } else if w.contains("encoder.conv_in.weight") && w.contains("decoder.conv_in.weight") {
        "this is a VAE on its own, not a full model; use it as an external VAE".into()
    } else if any("first_stage_model.") && !any(UNET_PREFIX) {
        "the checkpoint has a VAE but no UNet (model.diffusion_model.*)".into()
    } else if any("encoder.layers.") && any("decoder.layers.") {
        "this is TAESD, the tiny preview autoencoder, not a full model".into()
    } else {
        let mut names: Vec<&str> = w.names().collect();
        names.sort();
        names.truncate(3);
        format!("not a Stable Diffusion 1.x/2.x checkpoint (no model.diffusion_model.* tensors; it holds e.g. {})", names.join(", "))
    }
}

pub fn detect(w: &WeightFile) -> Result<SingleFileLayout, String> {
    let sdxl = w.names().any(|n| n.starts_with("conditioner.embedders"));
    if sdxl || !w.contains(&format!("{UNET_PREFIX}input_blocks.0.0.weight")) {
        return Err(not_sd_reason(w));
    }
    let (clip, clip_layout, text_prefix) = detect_text(w)?;
    let family = match clip_layout {
        ClipLayout::HuggingFace => Family::Sd1,
        ClipLayout::OpenClip => Family::Sd2,
    };
    let unet = detect_unet(w, family)?;
    if unet.cross_attention_dim != clip.hidden_size {
        return Err(format!(
            "the UNet expects {}-wide text embeddings but the text encoder makes {}",
            unet.cross_attention_dim, clip.hidden_size
        ));
    }
    let vae = detect_vae(w, VAE_PREFIX).ok();
    let text_layers_held = match clip_layout {
        ClipLayout::HuggingFace => clip.num_layers,
        ClipLayout::OpenClip => clip.num_layers + 1,
    };
    Ok(SingleFileLayout {
        text_layers_held,
        yaml: None,
        family,
        unet,
        vae,
        clip,
        clip_layout,
        text_prefix,
        marked_v_prediction: w.contains("v_pred"),
        has_ema: w.contains("model_ema.diffusion_modelinput_blocks00weight"),
        global_step: w.global_step(),
    })
}

fn shape<'a>(w: &'a WeightFile, name: &str) -> Result<&'a [usize], String> {
    w.shape(name)
        .ok_or_else(|| format!("the checkpoint has no tensor {name}"))
}

/// Size `i` of tensor `name`, which must have exactly `rank` dimensions: a damaged or foreign
/// file with a tensor of another rank under a known name is refused, not indexed blindly.
pub(crate) fn dim(w: &WeightFile, name: &str, rank: usize, i: usize) -> Result<usize, String> {
    let s = shape(w, name)?;
    if s.len() != rank {
        return Err(format!(
            "{name} has {} dimensions ({s:?}); a Stable Diffusion model's has {rank}",
            s.len()
        ));
    }
    Ok(s[i])
}

/// Heads of CLIP's text attention. Every published SD text encoder uses 64-wide heads
/// (768/12, 1024/16); narrower test-size encoders use 16-wide heads.
fn text_heads(width: usize) -> usize {
    if width.is_multiple_of(64) {
        width / 64
    } else if width.is_multiple_of(16) {
        width / 16
    } else {
        1
    }
}

pub(crate) fn count(w: &WeightFile, prefix: &str, suffix: &str) -> usize {
    (0..)
        .take_while(|i| w.contains(&format!("{prefix}{i}{suffix}")))
        .count()
}

fn detect_text(w: &WeightFile) -> Result<(ClipConfig, ClipLayout, String), String> {
    for prefix in [
        format!("{SD1_TEXT_PREFIX}text_model."),
        SD1_TEXT_PREFIX.to_string(),
    ] {
        let tok = format!("{prefix}embeddings.token_embedding.weight");
        if let Some(&[vocab, width]) = w.shape(&tok) {
            let positions = dim(
                w,
                &format!("{prefix}embeddings.position_embedding.weight"),
                2,
                0,
            )?;
            let layers = count(
                w,
                &format!("{prefix}encoder.layers."),
                ".layer_norm1.weight",
            );
            let inter = dim(w, &format!("{prefix}encoder.layers.0.mlp.fc1.weight"), 2, 0)?;
            let cfg = ClipConfig {
                vocab_size: vocab,
                hidden_size: width,
                intermediate_size: inter,
                num_layers: layers,
                num_heads: text_heads(width),
                max_position_embeddings: positions,
                activation: Activation::QuickGelu,
                layer_norm_eps: 1e-5,
            };
            return Ok((cfg, ClipLayout::HuggingFace, prefix));
        }
    }
    let tok = format!("{SD2_TEXT_PREFIX}token_embedding.weight");
    if let Some(&[vocab, width]) = w.shape(&tok) {
        let positions = dim(w, &format!("{SD2_TEXT_PREFIX}positional_embedding"), 2, 0)?;
        let blocks = count(
            w,
            &format!("{SD2_TEXT_PREFIX}transformer.resblocks."),
            ".ln_1.weight",
        );
        if blocks < 2 {
            return Err("the OpenCLIP text encoder has fewer than two layers".into());
        }
        let inter = dim(
            w,
            &format!("{SD2_TEXT_PREFIX}transformer.resblocks.0.mlp.c_fc.weight"),
            2,
            0,
        )?;
        let cfg = ClipConfig {
            vocab_size: vocab,
            hidden_size: width,
            intermediate_size: inter,
            // SD 2.x conditions on the penultimate layer.
            num_layers: blocks - 1,
            num_heads: text_heads(width),
            max_position_embeddings: positions,
            activation: Activation::Gelu,
            layer_norm_eps: 1e-5,
        };
        return Ok((cfg, ClipLayout::OpenClip, SD2_TEXT_PREFIX.to_string()));
    }
    Err("the checkpoint has a UNet but no text encoder (cond_stage_model.*)".into())
}

fn detect_unet(w: &WeightFile, family: Family) -> Result<UNetConfig, String> {
    detect_unet_at(w, UNET_PREFIX, family, UNetHalves::Both)
}

/// Whether a file holds a whole UNet or only its encoder (a ControlNet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UNetHalves {
    Both,
    EncoderOnly,
}

/// The shape of an LDM UNet (or its encoder) whose tensors are named under `p`.
pub fn detect_unet_at(
    w: &WeightFile,
    p: &str,
    family: Family,
    halves: UNetHalves,
) -> Result<UNetConfig, String> {
    let in_channels = dim(w, &format!("{p}input_blocks.0.0.weight"), 4, 1)?;
    let out_channels = match halves {
        UNetHalves::Both => dim(w, &format!("{p}out.2.weight"), 4, 0)?,
        UNetHalves::EncoderOnly => in_channels,
    };

    // Walk the input blocks: resnets until a downsampler closes each level.
    let mut levels: Vec<(usize, bool)> = vec![];
    let mut layers_in_level = 0;
    let mut layers_per_block = None;
    let mut n = 1;
    loop {
        if w.contains(&format!("{p}input_blocks.{n}.0.op.weight")) {
            layers_per_block.get_or_insert(layers_in_level);
            layers_in_level = 0;
        } else if w.contains(&format!("{p}input_blocks.{n}.0.in_layers.2.weight")) {
            let width = dim(
                w,
                &format!("{p}input_blocks.{n}.0.in_layers.2.weight"),
                4,
                0,
            )?;
            let attn = w.contains(&format!("{p}input_blocks.{n}.1.proj_in.weight"));
            if layers_in_level == 0 {
                levels.push((width, attn));
            }
            layers_in_level += 1;
        } else {
            break;
        }
        n += 1;
    }
    let layers_per_block = layers_per_block.unwrap_or(layers_in_level);
    if levels.is_empty() || layers_per_block == 0 {
        return Err("cannot make out the UNet's levels".into());
    }
    let block_out_channels: Vec<usize> = levels.iter().map(|l| l.0).collect();
    let down_attention: Vec<bool> = levels.iter().map(|l| l.1).collect();
    let per = layers_per_block + 1;
    let up_attention = match halves {
        UNetHalves::Both => (0..levels.len())
            .map(|i| w.contains(&format!("{p}output_blocks.{}.1.proj_in.weight", i * per)))
            .collect(),
        UNetHalves::EncoderOnly => down_attention.iter().rev().copied().collect(),
    };

    let (attn_block, _) = (1..n)
        .map(|k| (k, format!("{p}input_blocks.{k}.1.")))
        .find(|(_, pre)| w.contains(&format!("{pre}proj_in.weight")))
        .unwrap_or((0, String::new()));
    let attn = if attn_block > 0 {
        format!("{p}input_blocks.{attn_block}.1.")
    } else {
        format!("{p}middle_block.1.")
    };
    let proj_in = shape(w, &format!("{attn}proj_in.weight"))?;
    let use_linear_projection = proj_in.len() == 2;
    let cross_attention_dim = dim(
        w,
        &format!("{attn}transformer_blocks.0.attn2.to_k.weight"),
        2,
        1,
    )?;
    let transformer_layers = count(w, &format!("{attn}transformer_blocks."), ".norm1.weight");

    // Head counts are not stored in the weights. LDM's configs: SD 1.x has 8 heads at every
    // level, SD 2.x 64-wide heads (5, 10, 20, 20). A model whose widths cannot all be cut into
    // 64-wide heads (only test-size models) keeps diffusers' default of 8 heads everywhere.
    let sd2_heads = family == Family::Sd2 && block_out_channels.iter().all(|c| c % 64 == 0);
    let heads = block_out_channels
        .iter()
        .map(|&c| if sd2_heads { c / 64 } else { 8 })
        .collect();
    let cfg = UNetConfig {
        in_channels,
        out_channels,
        block_out_channels,
        down_attention,
        up_attention,
        layers_per_block,
        heads,
        transformer_layers,
        cross_attention_dim,
        use_linear_projection,
        norm_num_groups: 32,
        norm_eps: 1e-5,
        flip_sin_to_cos: true,
        freq_shift: 0.0,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// An LDM VAE under `prefix` (`first_stage_model.` in a checkpoint, empty in a `.vae.pt`).
pub fn detect_vae(w: &WeightFile, prefix: &str) -> Result<VaeConfig, String> {
    let levels = count(
        w,
        &format!("{prefix}encoder.down."),
        ".block.0.conv1.weight",
    );
    if levels == 0 {
        return Err("the checkpoint has no VAE (first_stage_model.*)".into());
    }
    let channels = (0..levels)
        .map(|i| {
            dim(
                w,
                &format!("{prefix}encoder.down.{i}.block.0.conv1.weight"),
                4,
                0,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let latent_channels = dim(w, &format!("{prefix}decoder.conv_in.weight"), 4, 1)?;
    let mut cfg = VaeConfig::sd(channels, latent_channels);
    cfg.layers_per_block = count(
        w,
        &format!("{prefix}encoder.down.0.block."),
        ".conv1.weight",
    );
    Ok(cfg)
}
