//! The options of `pentimento generate` (and `grid`) as the user types them: clap's view,
//! nothing decided yet. `plan` turns them into a job.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use pentimento::engine::inpaint::canvas::Margins;
use pentimento::engine::inpaint::{MaskedContent, DEFAULT_RESAMPLING};
use pentimento::engine::sampler::Prediction;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
    Metal,
}

/// The precision the networks compute in.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DtypeArg {
    F32,
    F16,
    Bf16,
}

impl DtypeArg {
    pub fn dtype(self) -> candle_core::DType {
        match self {
            DtypeArg::F32 => candle_core::DType::F32,
            DtypeArg::F16 => candle_core::DType::F16,
            DtypeArg::Bf16 => candle_core::DType::BF16,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SpacingArg {
    Leading,
    Trailing,
    Linspace,
}

impl From<SpacingArg> for pentimento::engine::sampler::schedule::TimestepSpacing {
    fn from(a: SpacingArg) -> Self {
        match a {
            SpacingArg::Leading => Self::Leading,
            SpacingArg::Trailing => Self::Trailing,
            SpacingArg::Linspace => Self::Linspace,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RngArg {
    /// PyTorch's CPU generator, as diffusers with `torch.Generator().manual_seed(seed)`.
    Cpu,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PredictionArg {
    Epsilon,
    V,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AreaArg {
    Whole,
    Masked,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MaskedContentArg {
    Original,
    Fill,
    LatentNoise,
    LatentNothing,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A diffusers folder or a single-file .safetensors / .ckpt checkpoint.
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt (required unless --params-from gives one).
    #[arg(long)]
    pub prompt: Option<String>,
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Seed of the initial noise, or -1 for a random one (said in the output and the PNG)
    /// [default: 0].
    #[arg(long, allow_hyphen_values = true, value_parser = parse_seed)]
    pub seed: Option<u64>,
    /// Sampling steps [default: 20].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale [default: 7.5].
    #[arg(long)]
    pub cfg: Option<f64>,
    /// AUTOMATIC1111's sampler name, case-insensitive (see `pentimento samplers`) [default: Euler].
    #[arg(long)]
    pub sampler: Option<String>,
    /// Start from the parameters stored in a PNG (Pentimento, AUTOMATIC1111, Forge, Krita,
    /// InvokeAI, ComfyUI); the other options given override them.
    #[arg(long, value_name = "FILE.png")]
    pub params_from: Option<PathBuf>,
    /// Jobs to run one after another; image i uses seed + i.
    #[arg(long, default_value_t = 1)]
    pub batch_count: usize,
    /// Images sampled together in one UNet batch (faster per image, more memory); image i of
    /// the batch starts from seed + i's noise, as alone (the pixels may differ by rounding,
    /// 1/255 here and there: products over a batch sum in another order).
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Blend the noise of this seed into the seed's (AUTOMATIC1111's variation seed); -1 for a
    /// random one.
    #[arg(long, allow_hyphen_values = true, value_parser = parse_seed)]
    pub variation_seed: Option<u64>,
    /// How far toward the variation seed's noise, 0 to 1 (needs a variation seed).
    #[arg(long)]
    pub variation_strength: Option<f64>,
    /// Image width (multiple of 8); default 512, or the init image's width.
    #[arg(long)]
    pub width: Option<usize>,
    /// Image height (multiple of 8); default 512, or the init image's height.
    #[arg(long)]
    pub height: Option<usize>,
    /// DDIM's η (0: deterministic) [default: 0].
    #[arg(long)]
    pub eta: Option<f64>,
    /// Stop at the N-th last layer of the text encoder, as AUTOMATIC1111's "Clip skip" [default: 1].
    #[arg(long)]
    pub clip_skip: Option<usize>,
    /// Start from this image (img2img); it is resized to --width/--height when they differ.
    #[arg(long)]
    pub init_image: Option<PathBuf>,
    /// Denoising strength: 0 keeps the image, 1 replaces it (default 0.75 for img2img, 1 for
    /// inpainting and outpainting).
    #[arg(long)]
    pub strength: Option<f64>,
    /// A LoRA (or LoCon) file to apply, FILE or FILE:WEIGHT (weight 1 by default, negative
    /// allowed); repeatable. `<lora:NAME:W>` in the prompt finds NAME in the LoRA folders.
    #[arg(long = "lora", value_name = "FILE[:W]")]
    pub loras: Vec<LoraArg>,
    /// A folder where `<lora:NAME:W>` in the prompt looks for NAME (repeatable; searched before
    /// the data folder's `loras` and the `Lora`/`loras` folders beside library model folders).
    #[arg(long = "lora-dir", value_name = "DIR")]
    pub lora_dirs: Vec<PathBuf>,
    /// A folder of textual-inversion embeddings (repeatable): a prompt word that is a file's
    /// name (`NAME.pt`, `.safetensors`, `.bin`) becomes its vectors. Searched before the data
    /// folder's `embeddings` and those beside library model folders.
    #[arg(long = "embeddings-dir", value_name = "DIR")]
    pub embedding_dirs: Vec<PathBuf>,
    /// A ControlNet: TYPE:MODEL:IMAGE[:WEIGHT[:START:END]][:MODE], repeatable (up to 4). TYPE
    /// is the preprocessor run on IMAGE (`none` uses it as it is; `canny[=LOW,HIGH]`,
    /// `scribble`, `invert`, `threshold[=T]`, `depth`), MODEL a ControlNet file or diffusers folder,
    /// START/END the fraction of the steps it acts in, MODE `balanced`, `prompt` or `control`
    /// (which matters more, as AUTOMATIC1111's Control Mode). `inpaint:MODEL[:W…]` (the inpaint
    /// ControlNet) takes no IMAGE: its condition is --init-image with the --mask area at −1.
    #[arg(
        long = "control",
        value_name = "TYPE:MODEL:IMAGE[:W[:START:END]][:MODE]"
    )]
    pub controls: Vec<ControlArg>,
    /// The depth preprocessor's Depth Anything V2 folder (default: the one `models pull
    /// depth-anything/Depth-Anything-V2-Small-hf` downloaded).
    #[arg(long, value_name = "DIR")]
    pub depth_model: Option<PathBuf>,
    /// Inpainting mask for --init-image, same size: white = regenerate, black = keep, grey = partly.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Extend the --init-image canvas by LEFT,TOP,RIGHT,BOTTOM pixels and generate the new area.
    #[arg(long, value_name = "LEFT,TOP,RIGHT,BOTTOM")]
    pub outpaint: Option<Margins>,
    /// Feathered edge of the paste-back, in pixels (0: hard edge).
    #[arg(long, default_value_t = 4)]
    pub mask_blur: usize,
    /// RePaint passes over each block of steps: the region is re-noised and sampled again so it
    /// agrees with what surrounds it (meant for ordinary models; inpainting models take it too);
    /// 1 = plain blend.
    #[arg(long, default_value_t = DEFAULT_RESAMPLING.resample)]
    pub repaint_resample: usize,
    /// RePaint block length in steps: how far back each resampling pass goes.
    #[arg(long, default_value_t = DEFAULT_RESAMPLING.jump)]
    pub repaint_jump: usize,
    /// Inpaint the whole image, or only a box around the mask at the job's size.
    #[arg(long, value_enum, default_value = "whole")]
    pub inpaint_area: AreaArg,
    /// Context around the mask in only-masked mode (--inpaint-area masked), in pixels
    /// [default: 32].
    #[arg(long)]
    pub padding: Option<usize>,
    /// What sampling starts from inside the mask (matters with strength below 1).
    #[arg(long, value_enum, default_value = "original")]
    pub masked_content: MaskedContentArg,
    #[arg(long, value_enum, default_value = "cpu")]
    pub rng: RngArg,
    /// Timestep spacing in place of the model's scheduler config: `trailing` for SD-Turbo (and
    /// other few-step models) at 1–4 steps; `leading` is what SD 1.x/2.x configs say.
    #[arg(long, value_enum)]
    pub timestep_spacing: Option<SpacingArg>,
    /// Override the prediction type the checkpoint implies.
    #[arg(long, value_enum)]
    pub prediction: Option<PredictionArg>,
    /// The original LDM config YAML of a single-file checkpoint (v2-inference-v.yaml …);
    /// NAME.yaml beside the checkpoint is used without this.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Compute precision [default: f32 on the CPU, f16 on a GPU].
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// VAE to decode with: a .vae.pt/.vae.ckpt/.vae.safetensors file or a diffusers vae folder;
    /// "automatic" (default) uses NAME.vae.* beside the checkpoint if present, "none" the
    /// checkpoint's own.
    #[arg(long, default_value = "automatic")]
    pub vae: String,
    /// Use the EMA weights of a training checkpoint that has both (model_ema.*).
    #[arg(long)]
    pub ema: bool,
    /// Where to write the image: PNG, or JPEG/WebP by the extension (parameters in EXIF).
    #[arg(long)]
    pub out: PathBuf,
}

impl From<MaskedContentArg> for MaskedContent {
    fn from(a: MaskedContentArg) -> Self {
        match a {
            MaskedContentArg::Original => MaskedContent::Original,
            MaskedContentArg::Fill => MaskedContent::Fill,
            MaskedContentArg::LatentNoise => MaskedContent::LatentNoise,
            MaskedContentArg::LatentNothing => MaskedContent::LatentNothing,
        }
    }
}

impl From<PredictionArg> for Prediction {
    fn from(a: PredictionArg) -> Self {
        match a {
            PredictionArg::Epsilon => Prediction::Epsilon,
            PredictionArg::V => Prediction::V,
        }
    }
}

/// `--lora FILE[:W]`: the weight is what follows the last `:`, when that is a number (so a
/// Windows path such as `C:\\x.safetensors` stays whole).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraArg {
    pub path: PathBuf,
    pub weight: f32,
}

impl std::str::FromStr for LoraArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((path, weight)) = s.rsplit_once(':') {
            if let Ok(weight) = weight.trim().parse::<f32>() {
                return Ok(Self {
                    path: path.into(),
                    weight,
                });
            }
        }
        if s.is_empty() {
            return Err("a LoRA file is needed".into());
        }
        Ok(Self {
            path: s.into(),
            weight: 1.0,
        })
    }
}

/// `--control TYPE:MODEL:IMAGE[:WEIGHT[:START:END]][:MODE]`. Numbers and the mode are read from
/// the end; a path holding `:` is split where both paths exist.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlArg {
    pub module: pentimento::engine::control::Preprocessor,
    pub model: PathBuf,
    pub image: PathBuf,
    pub weight: f64,
    pub start: f64,
    pub end: f64,
    pub mode: pentimento::engine::control::ControlMode,
}

impl std::str::FromStr for ControlArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use pentimento::engine::control::{ControlMode, Preprocessor};
        let usage = "give TYPE:MODEL:IMAGE[:WEIGHT[:START:END]][:MODE]";
        let mut parts: Vec<&str> = s.split(':').collect();
        let module = Preprocessor::parse(parts.first().copied().unwrap_or(""))?;
        // The inpaint condition is made from --init-image and --mask: no IMAGE.
        let min_paths = if module == Preprocessor::InpaintOnly {
            1
        } else {
            2
        };
        if parts.len() < 1 + min_paths {
            return Err(format!("{s:?}: {usage}"));
        }
        parts.remove(0);
        let mode = match parts.last().and_then(|m| {
            ControlMode::ALL
                .into_iter()
                .find(|x| x.cli_name().eq_ignore_ascii_case(m.trim()))
        }) {
            Some(m) => {
                parts.pop();
                m
            }
            None => ControlMode::Balanced,
        };
        // Trailing numbers, leaving at least a model and an image before them.
        let numeric = parts
            .iter()
            .rev()
            .take(3.min(parts.len().saturating_sub(min_paths)))
            .take_while(|p| p.trim().parse::<f64>().is_ok())
            .count();
        let n = parts.len();
        let number = |i: usize| parts[i].trim().parse::<f64>().unwrap_or(f64::NAN);
        let (weight, start, end) = match numeric {
            0 => (1.0, 0.0, 1.0),
            1 => (number(n - 1), 0.0, 1.0),
            3 => (number(n - 3), number(n - 2), number(n - 1)),
            _ => return Err(format!("{s:?}: give WEIGHT or WEIGHT:START:END")),
        };
        let used = numeric;
        let paths = &parts[..parts.len() - used];
        if paths.len() < min_paths || paths.iter().any(|p| p.is_empty()) {
            return Err(format!("{s:?}: {usage}"));
        }
        let split = if min_paths == 1 {
            paths.len()
        } else if paths.len() == 2 {
            1
        } else {
            // Paths holding ':' (Windows drives): the split where both exist.
            (1..paths.len())
                .find(|&k| {
                    std::path::Path::new(&paths[..k].join(":")).exists()
                        && std::path::Path::new(&paths[k..].join(":")).exists()
                })
                .ok_or_else(|| format!("{s:?}: cannot tell the model from the image; {usage}"))?
        };
        Ok(Self {
            module,
            model: paths[..split].join(":").into(),
            image: paths[split..].join(":").into(),
            weight,
            start,
            end,
            mode,
        })
    }
}

/// A seed: 0 or more, or -1 for a random one (AUTOMATIC1111's convention), chosen here so that
/// the output names the seed that was used.
fn parse_seed(text: &str) -> Result<u64, String> {
    match text.trim() {
        "-1" => Ok(pentimento::engine::params::random_seed()),
        t => t
            .parse::<u64>()
            .map_err(|_| format!("{t:?} is not a seed: 0 or more, or -1 for a random one")),
    }
}
