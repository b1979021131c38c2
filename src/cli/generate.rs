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
use pentimento::engine::model::VaeChoice;
use pentimento::engine::sampler::Prediction;
use pentimento::engine::{GenerationParams, LoadOptions, RgbImage, StableDiffusion};

use super::progress::StepProgress;

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
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 7.5)]
    pub cfg: f64,
    /// AUTOMATIC1111's sampler name, case-insensitive (see `pentimento samplers`).
    #[arg(long, default_value = "Euler")]
    pub sampler: String,
    /// Image width (multiple of 8); default 512, or the init image's width.
    #[arg(long)]
    pub width: Option<usize>,
    /// Image height (multiple of 8); default 512, or the init image's height.
    #[arg(long)]
    pub height: Option<usize>,
    /// DDIM's η (0: deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// Stop at the N-th last layer of the text encoder, as AUTOMATIC1111's "Clip skip".
    #[arg(long, default_value_t = 1)]
    pub clip_skip: usize,
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
    Ok(match arg {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => Device::new_cuda(0)
            .context("CUDA device (this build needs the `cuda` feature and an NVIDIA driver)")?,
        DeviceArg::Metal => Device::new_metal(0)
            .context("Metal device (this build needs the `metal` feature and macOS)")?,
    })
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

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
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
    let strength = args.strength.unwrap_or(match job {
        Job::Inpaint(..) => 1.0,
        _ => 0.75,
    });
    let params = GenerationParams {
        prompt: args.prompt,
        negative_prompt: args.negative_prompt,
        seed: args.seed,
        steps: args.steps,
        cfg_scale: args.cfg,
        sampler: args.sampler,
        width,
        height,
        eta: args.eta,
        clip_skip: args.clip_skip,
        strength,
    };
    // Refuse bad settings and an unwritable destination before spending time on a model.
    params.validate()?;
    check_output(&args.out)?;
    let RngArg::Cpu = args.rng;

    let opts = LoadOptions {
        device: open_device(args.device)?,
        dtype: None,
        prediction: args.prediction.map(|p| match p {
            PredictionArg::Epsilon => Prediction::Epsilon,
            PredictionArg::V => Prediction::V,
        }),
        vae: vae_choice(&args.vae),
        ema: args.ema,
    };
    let started = Instant::now();
    let model = StableDiffusion::load(&args.model, &opts)?;
    let info = &model.info;
    eprintln!(
        "loaded {} ({}, {}{}, {}-prediction{}), VAE: {}, in {:.1}s",
        info.path.display(),
        info.format,
        info.family,
        if info.inpainting { " inpainting" } else { "" },
        info.prediction,
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
    let progress = StepProgress::new(params.steps);
    let mut on_step = |s: StepInfo| {
        progress.step(s.step, s.total);
        ControlFlow::Continue(())
    };
    let image = match &job {
        Job::Text => model.txt2img(&params, &mut on_step),
        Job::Image(init) => model.img2img(&params, init, &mut on_step),
        Job::Inpaint(init, mask) => model.inpaint(&params, init, mask, &inpaint, &mut on_step),
    };
    progress.finish();
    let image = image?;
    image::save_buffer(
        &args.out,
        &image.pixels,
        image.width as u32,
        image.height as u32,
        image::ExtendedColorType::Rgb8,
    )
    .with_context(|| format!("{}: cannot write PNG", args.out.display()))?;
    eprintln!(
        "wrote {} in {:.1}s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
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
