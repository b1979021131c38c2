//! `pentimento generate`: one image from a prompt, written as PNG.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::Device;
use clap::{Args, ValueEnum};
use pentimento::engine::denoise::StepInfo;
use pentimento::engine::generate::img2img_start;
use pentimento::engine::inpaint::canvas::{self, Margins};
use pentimento::engine::inpaint::repaint::{self, Resampling};
use pentimento::engine::inpaint::{InpaintArea, InpaintOptions, MaskedContent, DEFAULT_RESAMPLING};
use pentimento::engine::mask::Mask;
use pentimento::engine::model::hash::sha256_file;
use pentimento::engine::model::{ConfigChoice, VaeChoice};
use pentimento::engine::sampler::Prediction;
use pentimento::engine::{GenerationParams, LoadOptions, RgbImage, StableDiffusion};
use pentimento::png_info::{write_png, ImageRecord, InpaintRecord, VERSION};

use super::progress::{LoadBar, StepProgress};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
    Metal,
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
    /// Seed of the initial noise [default: 0].
    #[arg(long)]
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
    /// the batch is what seed + i gives alone.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Blend the noise of this seed into the seed's (AUTOMATIC1111's variation seed).
    #[arg(long)]
    pub variation_seed: Option<u64>,
    /// How far toward the variation seed's noise, 0 to 1.
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
    /// Inpainting mask for --init-image, same size: white = regenerate, black = keep, grey = partly.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Extend the --init-image canvas by LEFT,TOP,RIGHT,BOTTOM pixels and generate the new area.
    #[arg(long, value_name = "LEFT,TOP,RIGHT,BOTTOM")]
    pub outpaint: Option<Margins>,
    /// Feathered edge of the paste-back, in pixels (0: hard edge).
    #[arg(long, default_value_t = 4)]
    pub mask_blur: usize,
    /// RePaint passes over each block of steps, for ordinary (non-inpainting) models; 1 = plain blend.
    #[arg(long, default_value_t = DEFAULT_RESAMPLING.resample)]
    pub repaint_resample: usize,
    /// RePaint block length in steps: how far back each resampling pass goes.
    #[arg(long, default_value_t = DEFAULT_RESAMPLING.jump)]
    pub repaint_jump: usize,
    /// Inpaint the whole image, or only a box around the mask at the job's size.
    #[arg(long, value_enum, default_value = "whole")]
    pub inpaint_area: AreaArg,
    /// Context around the mask in only-masked mode, in pixels.
    #[arg(long, default_value_t = 32)]
    pub padding: usize,
    /// What an ordinary model starts from inside the mask (matters with strength below 1).
    #[arg(long, value_enum, default_value = "original")]
    pub masked_content: MaskedContentArg,
    #[arg(long, value_enum, default_value = "cpu")]
    pub rng: RngArg,
    /// Override the prediction type the checkpoint implies.
    #[arg(long, value_enum)]
    pub prediction: Option<PredictionArg>,
    /// The original LDM config YAML of a single-file checkpoint (v2-inference-v.yaml …);
    /// NAME.yaml beside the checkpoint is used without this.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// VAE to decode with: a .vae.pt/.vae.ckpt/.vae.safetensors file or a diffusers vae folder;
    /// "automatic" (default) uses NAME.vae.* beside the checkpoint if present, "none" the
    /// checkpoint's own.
    #[arg(long, default_value = "automatic")]
    pub vae: String,
    /// Use the EMA weights of a training checkpoint that has both (model_ema.*).
    #[arg(long)]
    pub ema: bool,
    /// Where to write the PNG.
    #[arg(long)]
    pub out: PathBuf,
}

fn open_device(arg: DeviceArg) -> anyhow::Result<Device> {
    use pentimento::engine::device::DeviceKind;
    let kind = match arg {
        DeviceArg::Cpu => DeviceKind::Cpu,
        DeviceArg::Cuda => DeviceKind::Cuda,
        DeviceArg::Metal => DeviceKind::Metal,
    };
    Ok(kind.open()?)
}

/// What the job starts from.
enum Job {
    Text,
    Image(RgbImage),
    Inpaint(RgbImage, Mask),
}

fn job(args: &GenerateArgs) -> anyhow::Result<Job> {
    let init = args.init_image.as_deref().map(load_image).transpose()?;
    Ok(match (init, &args.mask, args.outpaint) {
        (None, None, None) => Job::Text,
        (None, _, _) => bail!("--mask and --outpaint need --init-image"),
        (Some(_), Some(_), Some(_)) => bail!("give either --mask or --outpaint, not both"),
        (Some(image), None, None) => Job::Image(image),
        (Some(image), Some(mask), None) => {
            let mask = load_mask(mask)?;
            if (mask.width, mask.height) != (image.width, image.height) {
                bail!(
                    "the mask is {}x{} but the image is {}x{}",
                    mask.width,
                    mask.height,
                    image.width,
                    image.height
                );
            }
            Job::Inpaint(image, mask)
        }
        (Some(image), None, Some(margins)) => {
            let (canvas, mask) = canvas::extend(&image, margins)?;
            Job::Inpaint(canvas, mask)
        }
    })
}

/// Everything a job needs that can be checked before a model is loaded.
pub struct Plan {
    job: Job,
    pub params: GenerationParams,
    masked_area: bool,
    inpaint: InpaintOptions,
}

impl Plan {
    /// Reads the inputs and settles the parameters; refuses bad settings and an unwritable
    /// destination before any time is spent on a model.
    pub fn from_args(args: &GenerateArgs) -> anyhow::Result<Self> {
        let job = job(&args)?;
        let source = match &job {
            Job::Text => None,
            Job::Image(i) | Job::Inpaint(i, _) => Some(i),
        };
        let masked_area =
            matches!(args.inpaint_area, AreaArg::Masked) && matches!(job, Job::Inpaint(..));
        // An init image sets the default size (rounded down to a multiple of 8, as diffusers does),
        // except in only-masked mode, where the model works at its native size.
        let default_size = |from_image: Option<usize>| match from_image {
            Some(v) if !masked_area => (v / 8 * 8).max(8),
            _ => 512,
        };
        let width = args
            .width
            .unwrap_or_else(|| default_size(source.map(|i| i.width)));
        let height = args
            .height
            .unwrap_or_else(|| default_size(source.map(|i| i.height)));
        let base = match &args.params_from {
            Some(path) => params_from_png(path)?,
            None => GenerationParams {
                prompt: String::new(),
                ..Default::default()
            },
        };
        let params = GenerationParams {
            prompt: match (&args.prompt, &args.params_from) {
                (Some(p), _) => p.clone(),
                (None, Some(_)) => base.prompt.clone(),
                (None, None) => bail!("--prompt is required (or --params-from FILE.png)"),
            },
            negative_prompt: args
                .negative_prompt
                .clone()
                .unwrap_or(base.negative_prompt.clone()),
            seed: args.seed.unwrap_or(base.seed),
            steps: args.steps.unwrap_or(base.steps),
            cfg_scale: args.cfg.unwrap_or(base.cfg_scale),
            sampler: args.sampler.clone().unwrap_or(base.sampler.clone()),
            width: args.width.unwrap_or(if args.params_from.is_some() {
                base.width
            } else {
                width
            }),
            height: args.height.unwrap_or(if args.params_from.is_some() {
                base.height
            } else {
                height
            }),
            eta: args.eta.unwrap_or(base.eta),
            clip_skip: args.clip_skip.unwrap_or(base.clip_skip),
            strength: args.strength.unwrap_or(match (&job, &args.params_from) {
                (Job::Text, _) => base.strength,
                (_, Some(_)) => base.strength,
                (Job::Inpaint(..), None) => 1.0,
                (Job::Image(_), None) => 0.75,
            }),
            variation_seed: args.variation_seed.or(base.variation_seed),
            variation_strength: args.variation_strength.unwrap_or(
                if args.variation_seed.is_some() {
                    0.0
                } else {
                    base.variation_strength
                },
            ),
        };
        params.validate()?;
        check_output(&args.out)?;
        let RngArg::Cpu = args.rng;
        let inpaint = InpaintOptions {
            mask_blur: args.mask_blur,
            resampling: Resampling {
                resample: args.repaint_resample.max(1),
                jump: args.repaint_jump.max(1),
            },
            area: if masked_area {
                InpaintArea::Masked {
                    padding: args.padding,
                }
            } else {
                InpaintArea::Whole
            },
            masked_content: match args.masked_content {
                MaskedContentArg::Original => MaskedContent::Original,
                MaskedContentArg::Fill => MaskedContent::Fill,
                MaskedContentArg::LatentNoise => MaskedContent::LatentNoise,
                MaskedContentArg::LatentNothing => MaskedContent::LatentNothing,
            },
        };
        Ok(Self {
            job,
            params,
            masked_area,
            inpaint,
        })
    }
}

/// A loaded model and what every image of a run records.
pub struct Session {
    plan: Plan,
    model: StableDiffusion,
    record: ImageRecord,
    started: Instant,
}

impl Session {
    pub fn load(args: &GenerateArgs, plan: Plan) -> anyhow::Result<Self> {
        let Plan {
            job,
            params,
            masked_area,
            inpaint,
        } = &plan;
        let (job, params, masked_area, inpaint) = (job, params, *masked_area, inpaint);
        let source = match job {
            Job::Text => None,
            Job::Image(i) | Job::Inpaint(i, _) => Some(i),
        };
        let (width, height) = (params.width, params.height);
        let opts = LoadOptions {
            device: open_device(args.device)?,
            dtype: None,
            prediction: args.prediction.map(|p| match p {
                PredictionArg::Epsilon => Prediction::Epsilon,
                PredictionArg::V => Prediction::V,
            }),
            vae: vae_choice(&args.vae),
            ema: args.ema,
            config: match &args.config {
                Some(p) => ConfigChoice::File(p.clone()),
                None => ConfigChoice::Automatic,
            },
        };
        let started = Instant::now();
        let bar = LoadBar::new();
        let model = StableDiffusion::load_reporting(&args.model, &opts, bar.reporter());
        bar.finish();
        let model = model?;
        let info = &model.info;
        eprintln!(
            "loaded {} ({}, {}{}, {}-prediction by {}{}), VAE: {}, in {:.1}s",
            info.path.display(),
            info.format,
            info.family,
            if info.inpainting { " inpainting" } else { "" },
            info.prediction,
            info.prediction_source,
            if info.ema { ", EMA weights" } else { "" },
            info.vae
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the model's own".into()),
            started.elapsed().as_secs_f64()
        );

        if let (Some(init), false) = (source, masked_area) {
            if (init.width, init.height) != (width, height) {
                eprintln!(
                    "resizing the init image from {}x{} to {width}x{height}",
                    init.width, init.height
                );
            }
        }
        if let Job::Inpaint(..) = job {
            let kind = params.validate()?;
            let sampler = kind.build(&model.schedule, model.sampler_settings(&params));
            let calls = sampler.timesteps().len();
            let start = img2img_start(params.steps, params.strength, sampler.order());
            let plain = calls.saturating_sub(start);
            let with = repaint::model_calls(start, calls, inpaint.resampling);
            eprintln!(
                "inpainting with {}: RePaint resample {} jump {}: {with} UNet calls ({plain} without resampling)",
                if model.info.inpainting { "the inpainting UNet" } else { "RePaint on an ordinary model" },
                inpaint.resampling.resample,
                inpaint.resampling.jump,
            );
        }
        let record = ImageRecord {
            version: VERSION.into(),
            kind: match (&job, args.outpaint) {
                (Job::Text, _) => "txt2img",
                (Job::Image(_), _) => "img2img",
                (Job::Inpaint(..), Some(_)) => "outpaint",
                (Job::Inpaint(..), None) => "inpaint",
            }
            .into(),
            params: params.clone(),
            model: model_name(&model.info.path),
            model_hash: model_hash(&model.info.path),
            vae: model
                .info
                .vae
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
            inpaint: match &job {
                Job::Inpaint(..) => Some(InpaintRecord {
                    mask_blur: inpaint.mask_blur,
                    repaint_resample: inpaint.resampling.resample,
                    repaint_jump: inpaint.resampling.jump,
                    area: if masked_area { "masked" } else { "whole" }.into(),
                    padding: args.padding,
                    masked_content: match args.masked_content {
                        MaskedContentArg::Original => "original",
                        MaskedContentArg::Fill => "fill",
                        MaskedContentArg::LatentNoise => "latent-noise",
                        MaskedContentArg::LatentNothing => "latent-nothing",
                    }
                    .into(),
                    mask_sha256: args.mask.as_deref().and_then(|m| sha256_file(m).ok()),
                }),
                _ => None,
            },
            prediction: Some(pentimento::png_info::PredictionRecord {
                kind: model.info.prediction.to_string(),
                source: model.info.prediction_source.to_string(),
            }),
            source_image_sha256: args.init_image.as_deref().and_then(|p| sha256_file(p).ok()),
            sweep: None,
        };
        Ok(Self {
            record,
            model,
            started,
            plan,
        })
    }

    /// `batch` images sampled together from `params` (seed, seed + 1, …).
    pub fn images(&self, params: &GenerationParams, batch: usize) -> anyhow::Result<Vec<RgbImage>> {
        let progress = StepProgress::new(params.steps);
        let mut on_step = |s: StepInfo| {
            progress.step(s.step, s.total);
            ControlFlow::Continue(())
        };
        let model = &self.model;
        let images = match &self.plan.job {
            Job::Text => model.txt2img_batch(params, batch, &mut on_step),
            Job::Image(init) => model.img2img_batch(params, init, batch, &mut on_step),
            Job::Inpaint(init, mask) => {
                model.inpaint_batch(params, init, mask, &self.plan.inpaint, batch, &mut on_step)
            }
        };
        progress.finish();
        Ok(images?)
    }

    /// The record a PNG of `params` carries.
    pub fn record(&self, params: &GenerationParams) -> ImageRecord {
        ImageRecord {
            params: params.clone(),
            ..self.record.clone()
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if args.batch_count == 0 {
        bail!("--batch-count must be at least 1");
    }
    if args.batch_size == 0 || args.batch_size > pentimento::engine::generate::MAX_BATCH {
        bail!(
            "--batch-size must be between 1 and {}",
            pentimento::engine::generate::MAX_BATCH
        );
    }
    let plan = Plan::from_args(&args)?;
    let params = plan.params.clone();
    let session = Session::load(&args, plan)?;
    let size = args.batch_size;
    let total = args.batch_count * size;
    for n in 0..args.batch_count {
        // Job n starts at seed + n · batch size; its image i is seed + n · size + i.
        let job_params = params.for_batch_image(n * size);
        let images = session.images(&job_params, size)?;
        for (i, image) in images.iter().enumerate() {
            let out = batch_path(&args.out, n * size + i, total);
            let record = session.record(&job_params.for_batch_image(i));
            write_png(&out, image, &record)
                .with_context(|| format!("{}: cannot write PNG", out.display()))?;
            eprintln!(
                "wrote {} (seed {}) in {:.1}s",
                out.display(),
                record.params.seed,
                session.elapsed()
            );
        }
    }
    Ok(())
}

/// `out.png` for a single image; `out-1.png`, `out-2.png`, … for a batch.
fn batch_path(out: &std::path::Path, i: usize, count: usize) -> PathBuf {
    if count == 1 {
        return out.to_path_buf();
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}-{}.png", i + 1))
}

/// AUTOMATIC1111 names a model by its file's stem; a diffusers folder by its name.
fn model_name(path: &std::path::Path) -> Option<String> {
    let name = if path.is_dir() {
        path.file_name()
    } else {
        path.file_stem()
    };
    name.map(|n| n.to_string_lossy().into_owned())
}

/// The model hash of a single-file checkpoint (cached); folders have none in AUTOMATIC1111.
fn model_hash(path: &std::path::Path) -> Option<String> {
    if path.is_dir() {
        return None;
    }
    match pentimento::engine::model::hash::model_hash(path) {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("warning: no model hash: {e}");
            None
        }
    }
}

fn params_from_png(path: &std::path::Path) -> anyhow::Result<GenerationParams> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let info = pentimento::png_info::parse_png(&bytes)
        .with_context(|| format!("{}: no generation parameters found", path.display()))?;
    Ok(info.apply_to(&GenerationParams::default()))
}

pub fn vae_choice(arg: &str) -> VaeChoice {
    match arg.to_ascii_lowercase().as_str() {
        "automatic" | "auto" => VaeChoice::Automatic,
        "none" | "builtin" => VaeChoice::Builtin,
        _ => VaeChoice::File(PathBuf::from(arg)),
    }
}

fn check_output(out: &std::path::Path) -> anyhow::Result<()> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if ext.as_deref() != Some("png") {
        bail!("{}: the output must be a .png file", out.display());
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        bail!(
            "{}: the folder {} does not exist",
            out.display(),
            parent.display()
        );
    }
    Ok(())
}

/// Any image the `image` crate reads, flattened to RGB (alpha composited over black is not
/// wanted: transparent pixels keep their colour values).
fn load_image(path: &std::path::Path) -> anyhow::Result<RgbImage> {
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    let img = image::open(path)
        .with_context(|| format!("{}: not a readable image", path.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    Ok(RgbImage::new(w as usize, h as usize, img.into_raw())?)
}

/// A mask image as grey levels (colour masks are converted as PIL converts to "L").
fn load_mask(path: &std::path::Path) -> anyhow::Result<Mask> {
    let rgb = load_image(path)?;
    let luma: Vec<u8> = rgb
        .pixels
        .chunks_exact(3)
        .map(|p| Mask::luma(p[0], p[1], p[2]))
        .collect();
    Ok(Mask::from_luma(rgb.width, rgb.height, &luma)?)
}
