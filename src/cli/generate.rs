//! `pentimento generate`: one image from a prompt, written as PNG.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::Device;
use clap::{Args, ValueEnum};
use pentimento::engine::denoise::StepInfo;
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
    /// img2img denoising strength: 0 keeps the image, 1 replaces it.
    #[arg(long, default_value_t = 0.75)]
    pub strength: f64,
    #[arg(long, value_enum, default_value = "cpu")]
    pub rng: RngArg,
    /// Override the prediction type the checkpoint implies.
    #[arg(long, value_enum)]
    pub prediction: Option<PredictionArg>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Where to write the PNG.
    #[arg(long)]
    pub out: PathBuf,
}

fn open_device(arg: DeviceArg) -> anyhow::Result<Device> {
    Ok(match arg {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => Device::new_cuda(0).context("CUDA device (this build needs the `cuda` feature and an NVIDIA driver)")?,
        DeviceArg::Metal => Device::new_metal(0).context("Metal device (this build needs the `metal` feature and macOS)")?,
    })
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let init = args.init_image.as_deref().map(load_image).transpose()?;
    // img2img defaults to the init image's size, rounded down to a multiple of 8 as diffusers does.
    let default_size = |from_image: Option<usize>| from_image.map(|v| (v / 8 * 8).max(8)).unwrap_or(512);
    let width = args.width.unwrap_or_else(|| default_size(init.as_ref().map(|i| i.width)));
    let height = args.height.unwrap_or_else(|| default_size(init.as_ref().map(|i| i.height)));
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
        strength: args.strength,
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
    };
    let started = Instant::now();
    let model = StableDiffusion::load(&args.model, &opts)?;
    let info = &model.info;
    eprintln!(
        "loaded {} ({}, {}{}, {}-prediction) in {:.1}s",
        info.path.display(),
        info.format,
        info.family,
        if info.inpainting { " inpainting" } else { "" },
        info.prediction,
        started.elapsed().as_secs_f64()
    );

    if let Some(init) = &init {
        if (init.width, init.height) != (width, height) {
            eprintln!("resizing the init image from {}x{} to {width}x{height}", init.width, init.height);
        }
    }
    let progress = StepProgress::new(params.steps);
    let mut on_step = |s: StepInfo| {
        progress.step(s.step, s.total);
        ControlFlow::Continue(())
    };
    let image = match &init {
        Some(init) => model.img2img(&params, init, &mut on_step),
        None => model.txt2img(&params, &mut on_step),
    };
    progress.finish();
    let image = image?;
    image::save_buffer(&args.out, &image.pixels, image.width as u32, image.height as u32, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("{}: cannot write PNG", args.out.display()))?;
    eprintln!("wrote {} in {:.1}s", args.out.display(), started.elapsed().as_secs_f64());
    Ok(())
}

fn check_output(out: &std::path::Path) -> anyhow::Result<()> {
    let ext = out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if ext.as_deref() != Some("png") {
        bail!("{}: the output must be a .png file", out.display());
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        bail!("{}: the folder {} does not exist", out.display(), parent.display());
    }
    Ok(())
}

/// Any image the `image` crate reads, flattened to RGB (alpha composited over black is not
/// wanted: transparent pixels keep their colour values).
fn load_image(path: &std::path::Path) -> anyhow::Result<RgbImage> {
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    let img = image::open(path).with_context(|| format!("{}: not a readable image", path.display()))?.to_rgb8();
    let (w, h) = img.dimensions();
    Ok(RgbImage::new(w as usize, h as usize, img.into_raw())?)
}
