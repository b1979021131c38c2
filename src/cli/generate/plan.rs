//! From the options as typed to what runs: reads the input images, settles the parameters
//! (defaults, `--params-from`, the init image's size) and builds the `Job`, refusing bad
//! settings and an unwritable destination before any time is spent on a model.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use candle_core::Device;
use pentimento::engine::inpaint::repaint::Resampling;
use pentimento::engine::inpaint::{InpaintArea, InpaintOptions};
use pentimento::engine::mask::Mask;
use pentimento::engine::model::{ConfigChoice, LoadOptions, VaeChoice};
use pentimento::engine::{GenerationParams, Job, JobKind, RgbImage};

use super::args::{AreaArg, DeviceArg, DtypeArg, GenerateArgs, RngArg};

/// Everything a run needs that can be checked before a model is loaded.
pub struct Plan {
    /// The first job; job n of `batch_count` is `job.nth_of_run(n)`.
    pub job: Job,
    pub batch_count: usize,
    pub out: PathBuf,
}

impl Plan {
    pub fn from_args(args: &GenerateArgs) -> anyhow::Result<Self> {
        let max_count = pentimento::engine::job::MAX_BATCH_COUNT;
        if args.batch_count == 0 || args.batch_count > max_count {
            bail!("--batch-count must be between 1 and {max_count}");
        }
        let max = pentimento::engine::job::MAX_BATCH;
        if args.batch_size == 0 || args.batch_size > max {
            bail!("--batch-size must be between 1 and {max}");
        }
        if args.padding.is_some() && !matches!(args.inpaint_area, AreaArg::Masked) {
            bail!("--padding applies to --inpaint-area masked");
        }
        let init = args.init_image.as_deref().map(load_image).transpose()?;
        let masked_area = matches!(args.inpaint_area, AreaArg::Masked)
            && (args.mask.is_some() || args.outpaint.is_some());
        let options = InpaintOptions {
            mask_blur: args.mask_blur,
            resampling: Resampling {
                resample: args.repaint_resample.max(1),
                jump: args.repaint_jump.max(1),
            },
            area: if masked_area {
                InpaintArea::Masked {
                    padding: args.padding.unwrap_or(InpaintArea::DEFAULT_PADDING),
                }
            } else {
                InpaintArea::Whole
            },
            masked_content: args.masked_content.into(),
        };
        let kind = match (init, &args.mask, args.outpaint) {
            (None, None, None) => JobKind::Txt2Img,
            (None, _, _) => bail!("--mask and --outpaint need --init-image"),
            (Some(_), Some(_), Some(_)) => bail!("give either --mask or --outpaint, not both"),
            (Some(image), None, None) => JobKind::Img2Img {
                init: Arc::new(image),
            },
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
                JobKind::Inpaint {
                    image: Arc::new(image),
                    mask: Arc::new(mask),
                    options,
                }
            }
            (Some(image), None, Some(margins)) => JobKind::Outpaint {
                image: Arc::new(image),
                margins,
                options,
            },
        };
        // The size the model works at: outpainting's extended canvas, the init image's size
        // (rounded down to a multiple of 8, as diffusers does), or 512 (also in only-masked
        // mode, where the model works at its native size).
        let source_size = match &kind {
            JobKind::Txt2Img => None,
            JobKind::Outpaint { image, margins, .. } => Some((
                image.width + margins.left + margins.right,
                image.height + margins.top + margins.bottom,
            )),
            JobKind::Img2Img { init: image } | JobKind::Inpaint { image, .. } => {
                Some((image.width, image.height))
            }
        };
        let default_size = |from_image: Option<usize>| match from_image {
            Some(v) if !masked_area => (v / 8 * 8).max(8),
            _ => 512,
        };
        let width = args
            .width
            .unwrap_or_else(|| default_size(source_size.map(|s| s.0)));
        let height = args
            .height
            .unwrap_or_else(|| default_size(source_size.map(|s| s.1)));
        let (base, recorded) = match &args.params_from {
            Some(path) => params_from_png(path)?,
            None => (
                GenerationParams {
                    prompt: String::new(),
                    ..Default::default()
                },
                None,
            ),
        };
        let recorded_loras = recorded
            .as_ref()
            .map(|r| r.loras.clone())
            .unwrap_or_default();
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
            strength: args.strength.unwrap_or(match (&kind, &args.params_from) {
                (JobKind::Txt2Img, _) | (_, Some(_)) => base.strength,
                (JobKind::Inpaint { .. } | JobKind::Outpaint { .. }, None) => 1.0,
                (JobKind::Img2Img { .. }, None) => 0.75,
            }),
            variation_seed: args.variation_seed.or(base.variation_seed),
            timestep_spacing: args
                .timestep_spacing
                .map(Into::into)
                .or(base.timestep_spacing),
            variation_strength: args.variation_strength.unwrap_or(
                if args.variation_seed.is_some() {
                    0.0
                } else {
                    base.variation_strength
                },
            ),
        };
        if args.variation_strength.is_some() && params.variation_seed.is_none() {
            bail!("--variation-strength needs --variation-seed (the noise to blend toward)");
        }
        let RngArg::Cpu = args.rng;
        let loras = job_loras(args, &params.prompt, &recorded_loras)?;
        check_folders("--embeddings-dir", &args.embedding_dirs)?;
        let embeddings = pentimento::engine::model::adapters::embedding::embeddings_in(
            &[&params.prompt, &params.negative_prompt],
            &pentimento::library::adapter_dirs::embedding_dirs(&args.embedding_dirs, None),
        );
        // An embedding the image was made with and that is not here would silently turn into
        // plain words: say so instead.
        if let Some(r) = &recorded {
            let missing: Vec<&str> = r
                .embeddings
                .iter()
                .filter(|e| {
                    !embeddings
                        .iter()
                        .any(|f| f.name.eq_ignore_ascii_case(&e.name))
                })
                .map(|e| e.name.as_str())
                .collect();
            if !missing.is_empty() {
                bail!(
                    "the image was made with embeddings not in your embedding folders: {} (give --embeddings-dir)",
                    missing.join(", ")
                );
            }
        }
        let job = Job::new(kind, params)
            .with_batch(args.batch_size)
            .with_loras(loras)
            .with_embeddings(embeddings)
            .with_controls(job_controls(
                &args.controls,
                args.depth_model.as_deref(),
                args.init_image.as_deref(),
            )?);
        job.validate()?;
        let inputs: Vec<&std::path::Path> = [&args.init_image, &args.mask, &args.params_from]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .chain(
                args.controls
                    .iter()
                    .map(|c| c.image.as_path())
                    .filter(|p| !p.as_os_str().is_empty()),
            )
            .collect();
        check_output(&args.out, &inputs, args.batch_count * job.batch)?;
        Ok(Self {
            job,
            batch_count: args.batch_count,
            out: args.out.clone(),
        })
    }
}

/// Each `--control`: its model must exist; its image is read and run through its preprocessor.
fn job_controls(
    args: &[super::args::ControlArg],
    depth_model: Option<&std::path::Path>,
    init_image: Option<&std::path::Path>,
) -> anyhow::Result<Vec<pentimento::engine::control::ControlUnit>> {
    let depth = match args.iter().any(|c| c.module.needs_model()) {
        true => Some(super::super::preprocess::depth_estimator(depth_model)?),
        false => None,
    };
    args.iter()
        .map(|c| {
            if !c.model.exists() {
                bail!("--control: no ControlNet at {}", c.model.display());
            }
            // The inpaint condition is made from the job's image: any image of it will do here.
            let source = match c.image.as_os_str().is_empty() {
                true => init_image.ok_or_else(|| {
                    anyhow::anyhow!("--control inpaint needs --init-image and --mask")
                })?,
                false => c.image.as_path(),
            };
            let image = load_image(source)
                .with_context(|| format!("--control image {}", source.display()))?;
            Ok(pentimento::engine::control::ControlUnit {
                model: c.model.clone(),
                image: Arc::new(
                    c.module
                        .run(&image, depth.as_ref())
                        .with_context(|| format!("--control {}", c.module.name()))?,
                ),
                module: c.module,
                weight: c.weight,
                start: c.start,
                end: c.end,
                mode: c.mode,
            })
        })
        .collect()
}

/// The job's LoRAs: each `--lora` (which must exist), then those the prompt names, then those
/// a `--params-from` record lists that the prompt does not (found by name like a prompt's).
fn job_loras(
    args: &GenerateArgs,
    prompt: &str,
    recorded: &[pentimento::png_info::LoraRecord],
) -> anyhow::Result<Vec<pentimento::engine::model::adapters::LoraRef>> {
    let mut loras = vec![];
    for l in &args.loras {
        if !l.path.is_file() {
            bail!("--lora {}: no such file", l.path.display());
        }
        loras.push(pentimento::engine::model::adapters::LoraRef::new(
            l.path.clone(),
            l.weight,
        ));
    }
    check_folders("--lora-dir", &args.lora_dirs)?;
    let dirs = pentimento::library::adapter_dirs::lora_dirs(&args.lora_dirs, None);
    let (_, tags) = pentimento::engine::prompt::extra_networks(prompt);
    let mut wanted = prompt.to_string();
    for r in recorded {
        // The record's names become tag text: only what a file's stem can be.
        let plain = !r.name.is_empty()
            && r.name.len() <= pentimento::engine::model::adapters::find::MAX_NAME_BYTES
            && !r
                .name
                .chars()
                .any(|c| c.is_control() || "<>:/\\".contains(c));
        if !plain || !r.weight.is_finite() {
            bail!(
                "the image's record names a LoRA {:?} that cannot be a file's name",
                r.name
            );
        }
        let named = tags.iter().any(|t| t.args.first() == Some(&r.name));
        if !named
            && !loras
                .iter()
                .any(|l| l.path.file_stem() == Some(r.name.as_ref()))
        {
            match r.unet_weight.filter(|w| w.is_finite()) {
                Some(unet) => wanted.push_str(&format!(" <lora:{}:{}:{unet}>", r.name, r.weight)),
                None => wanted.push_str(&format!(" <lora:{}:{}>", r.name, r.weight)),
            }
        }
    }
    loras.extend(
        pentimento::engine::model::adapters::find::prompt_loras(&wanted, &dirs).context("LoRAs")?,
    );
    Ok(loras)
}

/// Folders given on the command line must be folders: a typo is said, not skipped.
fn check_folders(option: &str, dirs: &[PathBuf]) -> anyhow::Result<()> {
    for d in dirs {
        if !d.is_dir() {
            bail!("{option} {}: not a folder", d.display());
        }
    }
    Ok(())
}

/// How the model is opened: device, VAE, prediction, EMA, config YAML.
pub fn load_options(args: &GenerateArgs) -> anyhow::Result<LoadOptions> {
    Ok(LoadOptions {
        device: open_device(args.device)?,
        dtype: args.dtype.map(DtypeArg::dtype),
        prediction: args.prediction.map(Into::into),
        vae: vae_choice(&args.vae),
        ema: args.ema,
        config: match &args.config {
            Some(p) => ConfigChoice::File(p.clone()),
            None => ConfigChoice::Automatic,
        },
        ..LoadOptions::cpu()
    })
}

/// `out.png` for a single image; `out-1.png`, `out-2.png`, … for a batch.
pub fn batch_path(out: &std::path::Path, i: usize, count: usize) -> PathBuf {
    if count == 1 {
        return out.to_path_buf();
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "png".into());
    out.with_file_name(format!("{stem}-{}.{ext}", i + 1))
}

pub fn open_device(arg: DeviceArg) -> anyhow::Result<Device> {
    use pentimento::engine::device::DeviceKind;
    let kind = match arg {
        DeviceArg::Cpu => DeviceKind::Cpu,
        DeviceArg::Cuda => DeviceKind::Cuda,
        DeviceArg::Metal => DeviceKind::Metal,
    };
    Ok(kind.open()?)
}

/// An image's parameters (PNG, JPEG or WebP, any tool we read), and our record when it carries one (the LoRAs and embeddings it lists).
fn params_from_png(
    path: &std::path::Path,
) -> anyhow::Result<(GenerationParams, Option<pentimento::png_info::ImageRecord>)> {
    let bytes = pentimento::png_info::read_png_file(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let info = pentimento::png_info::parse_image(&bytes)
        .with_context(|| format!("{}: no generation parameters found", path.display()))?;
    let params = info.apply_to(&GenerationParams::default());
    // Said, not silently dropped: what of the other tool's settings cannot run here.
    for note in info.not_carried_over(&params) {
        eprintln!("{}: not carried over: {note}", path.display());
    }
    Ok((params, info.record.clone()))
}

pub fn vae_choice(arg: &str) -> VaeChoice {
    match arg.to_ascii_lowercase().as_str() {
        "automatic" | "auto" => VaeChoice::Automatic,
        "none" | "builtin" => VaeChoice::Builtin,
        _ => VaeChoice::File(PathBuf::from(arg)),
    }
}

/// Refuses, before any model loads, an output that could not be written or would destroy an
/// input: not `.png`, a missing or read-only folder, a folder in its place, the init image or
/// mask itself.
fn check_output(
    out: &std::path::Path,
    inputs: &[&std::path::Path],
    count: usize,
) -> anyhow::Result<()> {
    if pentimento::png_info::ImageFormat::of(out).is_none() {
        bail!(
            "{}: the output must be a .png, .jpg/.jpeg or .webp file",
            out.display()
        );
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
    for i in 0..count {
        let path = batch_path(out, i, count);
        if path.is_dir() {
            bail!("{}: is a folder, not a file to write", path.display());
        }
        if path.exists() && inputs.iter().any(|input| same_file(input, &path)) {
            bail!(
                "{}: is an input of this job; write the result elsewhere",
                path.display()
            );
        }
    }
    // The PNG is written through a temporary file in this folder: try one now.
    let probe = parent.join(format!(".pentimento-write-test-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| format!("{}: cannot write in this folder", parent.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Whether two paths name one file: through links, other spellings and hard links alike.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    matches!(
        (std::fs::canonicalize(a), std::fs::canonicalize(b)),
        (Ok(x), Ok(y)) if x == y
    )
}

/// Any image the `image` crate reads, flattened to RGB (alpha composited over black is not
/// wanted: transparent pixels keep their colour values).
fn load_image(path: &std::path::Path) -> anyhow::Result<RgbImage> {
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    Ok(pentimento::engine::image::read_image_file(path)?)
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
