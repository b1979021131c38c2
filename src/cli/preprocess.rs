//! `pentimento preprocess MODULE IMAGE --out FILE.png`: what a ControlNet preprocessor makes of
//! a picture (the condition `generate --control MODULE:…` would use), to look at or edit.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use pentimento::engine::control::Preprocessor;

#[derive(Args, Debug)]
pub struct PreprocessArgs {
    /// none, canny[=LOW,HIGH], scribble, invert, threshold[=T], depth.
    #[arg(value_parser = |s: &str| Preprocessor::parse(s))]
    pub module: Preprocessor,
    pub image: PathBuf,
    /// Where to write the condition image (PNG).
    #[arg(long)]
    pub out: PathBuf,
    /// The depth preprocessor's Depth Anything V2 folder (default: the one `models pull
    /// depth-anything/Depth-Anything-V2-Small-hf` downloaded).
    #[arg(long, value_name = "DIR")]
    pub depth_model: Option<PathBuf>,
}

/// The depth network, from `explicit` or where `models pull` puts it, with what to do when it
/// is absent.
pub fn depth_estimator(
    explicit: Option<&std::path::Path>,
) -> anyhow::Result<pentimento::engine::control::depth::DepthEstimator> {
    use pentimento::engine::control::depth::{DepthEstimator, DEPTH_REPO};
    if let Some(dir) = explicit {
        if !dir.is_dir() {
            bail!("--depth-model {}: not a folder", dir.display());
        }
    }
    let Some(dir) = pentimento::library::adapter_dirs::depth_model(explicit) else {
        bail!(
            "the depth preprocessor needs Depth Anything V2: run `pentimento models pull {DEPTH_REPO}` (or give --depth-model DIR)"
        );
    };
    Ok(DepthEstimator::load(&dir, &candle_core::Device::Cpu)?)
}

pub fn run(args: PreprocessArgs) -> anyhow::Result<()> {
    if !args.image.is_file() {
        bail!("{}: no such file", args.image.display());
    }
    let ext = args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if ext.as_deref() != Some("png") {
        bail!("--out {}: give a .png file", args.out.display());
    }
    if std::fs::canonicalize(&args.out).ok() == std::fs::canonicalize(&args.image).ok() {
        bail!("--out {}: that is the input image", args.out.display());
    }
    let image = pentimento::engine::image::read_image_file(&args.image)
        .with_context(|| format!("{}", args.image.display()))?;
    if args.module == Preprocessor::InpaintOnly {
        bail!("the inpaint condition is made from an inpainting job's image and mask: use generate --control inpaint:MODEL with --init-image and --mask");
    }
    let depth = match args.module.needs_model() {
        true => Some(depth_estimator(args.depth_model.as_deref())?),
        false => None,
    };
    let out = args.module.run(&image, depth.as_ref())?;
    let buffer = image::RgbImage::from_raw(out.width as u32, out.height as u32, out.pixels)
        .context("preprocessed image")?;
    let mut bytes = std::io::Cursor::new(vec![]);
    buffer
        .write_to(&mut bytes, image::ImageFormat::Png)
        .context("encoding PNG")?;
    pentimento::engine::atomic_file::write(&args.out, bytes.get_ref())
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {} ({})", args.out.display(), args.module.spec());
    Ok(())
}
