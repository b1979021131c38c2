//! Timing: each figure is the median of `iters` runs after one warm-up run, the device
//! synchronised around every run.

use std::ops::ControlFlow;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::{build, build_taesd, Arch};
use crate::engine::denoise::{Denoiser, GuidedUNet};
use crate::engine::device::DeviceKind;
use crate::engine::preview::PreviewThread;
use crate::engine::rng::TorchRng;
use crate::engine::{EngineError, GenerationParams, Result};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub arch: Arch,
    pub device: Device,
    pub dtype: DType,
    /// Image side in pixels.
    pub size: usize,
    pub iters: usize,
    /// Steps of the whole text-to-image run.
    pub steps: usize,
    /// Figures to run; empty: all of them.
    pub only: Vec<Figure>,
    /// Tile VAE passes above 1024 px, as the app does (off: whole passes at any size).
    pub vae_tiling: bool,
    /// A real model file to time (and its load) in place of random weights.
    pub model: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Figure {
    TextEncode,
    UnetStep,
    VaeDecode,
    VaeEncode,
    TaesdDecode,
    Txt2img,
    Txt2imgPreviews,
    PredictionProbe,
    CancelLatency,
    LoraApply,
    LiveInpaint,
    ModelLoad,
    UnetStepControlNet,
    UnetStepTwoControlNets,
}

impl Figure {
    pub const ALL: [Figure; 14] = [
        Figure::TextEncode,
        Figure::UnetStep,
        Figure::VaeDecode,
        Figure::VaeEncode,
        Figure::TaesdDecode,
        Figure::Txt2img,
        Figure::Txt2imgPreviews,
        Figure::PredictionProbe,
        Figure::CancelLatency,
        Figure::LoraApply,
        Figure::LiveInpaint,
        Figure::ModelLoad,
        Figure::UnetStepControlNet,
        Figure::UnetStepTwoControlNets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Figure::TextEncode => "text-encode",
            Figure::UnetStep => "unet-step",
            Figure::VaeDecode => "vae-decode",
            Figure::VaeEncode => "vae-encode",
            Figure::TaesdDecode => "taesd-decode",
            Figure::Txt2img => "txt2img",
            Figure::Txt2imgPreviews => "txt2img-previews",
            Figure::PredictionProbe => "prediction-probe",
            Figure::CancelLatency => "cancel-latency",
            Figure::LoraApply => "lora-apply",
            Figure::LiveInpaint => "live-inpaint",
            Figure::ModelLoad => "model-load",
            Figure::UnetStepControlNet => "unet-step-controlnet",
            Figure::UnetStepTwoControlNets => "unet-step-2-controlnets",
        }
    }

    pub fn parse(s: &str) -> Option<Figure> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Figure::TextEncode => "prompt + negative prompt through the text encoder",
            Figure::UnetStep => "one UNet call with CFG (batch 2)",
            Figure::VaeDecode => "VAE decode of one image",
            Figure::VaeEncode => "VAE encode of one image",
            Figure::TaesdDecode => "TAESD preview decode (what each step's preview costs)",
            Figure::Txt2img => "whole text-to-image: encode, all steps, decode",
            Figure::Txt2imgPreviews => {
                "the same with TAESD previews, decoded and paced as the app does"
            }
            Figure::PredictionProbe => {
                "AUTOMATIC1111's v-prediction test forward (what loading an SD 2.x file without a YAML adds)"
            }
            Figure::CancelLatency => {
                "from a cancel during text-to-image (at spread moments of its first seconds) until the job returns"
            }
            Figure::LiveInpaint => {
                "what follows a stroke in live mode at --size: inpainting a quarter of the image with LCM, 4 steps, CFG 1 (stroke to picture: this plus the 150 ms debounce)"
            }
            Figure::UnetStepControlNet => {
                "one UNet call with CFG and one ControlNet (its encoder copy runs on both halves)"
            }
            Figure::ModelLoad => "loading the --model file (once), as the app and the CLI load it",
            Figure::UnetStepTwoControlNets => "the same with two ControlNets",
            Figure::LoraApply => {
                "applying a rank-32 LoRA on every attention, feed-forward and projection layer of UNet and text encoder (read, fold into adapted weights); the same LoRA again costs nothing"
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub figure: Figure,
    pub median_seconds: f64,
    pub runs: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub arch: Arch,
    pub device: String,
    pub dtype: String,
    pub size: usize,
    pub steps: usize,
    pub threads: usize,
    pub weights_bytes: u64,
    /// Peak resident memory of the process (Linux), weights included.
    pub peak_rss_bytes: Option<u64>,
    /// Whether the VAE figures went through tiles.
    pub vae_tiled: bool,
    pub timings: Vec<Timing>,
    /// The model file timed (none: random weights).
    pub model: Option<String>,
    /// Resident memory: the peak of each phase, file pages and anonymous memory apart.
    pub memory: Vec<super::memory::PhasePeak>,
}

impl Report {
    pub fn median(&self, figure: Figure) -> Option<f64> {
        self.timings
            .iter()
            .find(|t| t.figure == figure)
            .map(|t| t.median_seconds)
    }
}

fn tensor(what: &str) -> impl Fn(candle_core::Error) -> EngineError + '_ {
    move |e| EngineError::Tensor {
        context: what.to_string(),
        source: e,
    }
}

/// `iters` timed runs of `f`, after one untimed warm-up when `warm_up`.
fn time(
    device: &Device,
    iters: usize,
    warm_up: bool,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    if warm_up {
        f()?;
        device.synchronize().map_err(tensor("synchronize"))?;
    }
    let mut runs = vec![];
    for _ in 0..iters.max(1) {
        let start = Instant::now();
        f()?;
        device.synchronize().map_err(tensor("synchronize"))?;
        runs.push(start.elapsed().as_secs_f64());
    }
    Ok(runs)
}

fn median(runs: &[f64]) -> f64 {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Builds the model and runs every requested figure; `progress` hears what runs next.
pub fn run(opts: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<Report> {
    if opts.size == 0 || !opts.size.is_multiple_of(8) {
        return Err(EngineError::InvalidParams(format!(
            "size {} is not a positive multiple of 8",
            opts.size
        )));
    }
    let wanted = |f: Figure| opts.only.is_empty() || opts.only.contains(&f);
    let sampler = super::memory::MemorySampler::start("load");
    let mut timings = vec![];
    let (mut model, weights_bytes) = match &opts.model {
        Some(path) => {
            progress(&format!("loading {}", path.display()));
            let load = crate::engine::model::LoadOptions {
                device: opts.device.clone(),
                dtype: Some(opts.dtype),
                ..crate::engine::model::LoadOptions::cpu()
            };
            let started = Instant::now();
            let model = crate::engine::StableDiffusion::load(path, &load)?;
            let seconds = started.elapsed().as_secs_f64();
            timings.push(Timing {
                figure: Figure::ModelLoad,
                median_seconds: seconds,
                runs: vec![seconds],
            });
            let bytes = model.info.memory_bytes;
            (model, bytes)
        }
        None => {
            progress(&format!(
                "building {} with random weights",
                opts.arch.name()
            ));
            build(opts.arch, &opts.device, opts.dtype)?
        }
    };
    let begin = |progress: &mut dyn FnMut(&str), figure: Figure| {
        progress(figure.describe());
        sampler.phase(figure.name());
    };
    if !opts.vae_tiling {
        model.vae_tiling.threshold_px = usize::MAX;
    }
    let vae_tiled = model.vae_tiling.applies(opts.size, opts.size);
    let dev = &opts.device;
    let latent = opts.size / 8;
    let params = GenerationParams {
        prompt: "a photograph of an astronaut riding a horse, highly detailed".into(),
        negative_prompt: "blurry, low quality".into(),
        steps: opts.steps,
        width: opts.size,
        height: opts.size,
        cfg_scale: 7.5,
        ..Default::default()
    };
    let mut record = |figure: Figure, runs: Vec<f64>| {
        timings.push(Timing {
            figure,
            median_seconds: median(&runs),
            runs,
        })
    };

    if wanted(Figure::TextEncode) {
        begin(progress, Figure::TextEncode);
        let runs = time(dev, opts.iters, true, || {
            model.prompt_context(&params).map(|_| ())
        })?;
        record(Figure::TextEncode, runs);
    }
    let noise = |shape: &[usize], seed: u64| -> Result<Tensor> {
        TorchRng::new(seed)
            .randn_tensor(shape, dev)
            .map_err(tensor("noise"))
    };
    // The UNet step alone, and with random ControlNets beside it.
    for (figure, nets) in [
        (Figure::UnetStep, 0),
        (Figure::UnetStepControlNet, 1),
        (Figure::UnetStepTwoControlNets, 2),
    ] {
        if !wanted(figure) {
            continue;
        }
        begin(progress, figure);
        let controls = random_controlnets(&model, nets, opts)?;
        let denoiser = GuidedUNet {
            unet: &model.unet,
            context: model.prompt_context(&params)?,
            scale: params.cfg_scale,
            dtype: opts.dtype,
            conditioning: None,
            controls,
        };
        let x = noise(&[1, 4, latent, latent], 1)?;
        let runs = time(dev, opts.iters, true, || {
            denoiser
                .predict(
                    &x,
                    500.0,
                    crate::engine::control::CallIndex { call: 0, calls: 1 },
                )
                .map(|_| ())
                .map_err(tensor("UNet"))
        })?;
        record(figure, runs);
    }
    if wanted(Figure::PredictionProbe) {
        begin(progress, Figure::PredictionProbe);
        let cfg = model.unet.config().clone();
        let runs = time(dev, opts.iters, true, || {
            crate::engine::model::prediction_probe::predicts_v(&model.unet, &cfg, dev, opts.dtype)
                .map(|_| ())
                .map_err(tensor("UNet test forward"))
        })?;
        record(Figure::PredictionProbe, runs);
    }
    if wanted(Figure::VaeDecode) {
        begin(progress, Figure::VaeDecode);
        // As the app decodes: in tiles above the tiling threshold.
        let z = noise(&[1, 4, latent, latent], 2)?;
        let runs = time(dev, opts.iters, true, || {
            model.decode_latents(&z).map(|_| ())
        })?;
        record(Figure::VaeDecode, runs);
    }
    if wanted(Figure::VaeEncode) {
        begin(progress, Figure::VaeEncode);
        let image = noise(&[1, 3, opts.size, opts.size], 3)?
            .clamp(-1f32, 1f32)
            .and_then(|t| t.to_dtype(opts.dtype))
            .map_err(tensor("image"))?;
        let runs = time(dev, opts.iters, true, || {
            model.vae_encode(&image).map(|_| ())
        })?;
        record(Figure::VaeEncode, runs);
    }
    if wanted(Figure::TaesdDecode) {
        begin(progress, Figure::TaesdDecode);
        let taesd = build_taesd(dev)?;
        let z = noise(&[1, 4, latent, latent], 4)?;
        let runs = time(dev, opts.iters, true, || {
            taesd.decode(&z).map(|_| ()).map_err(tensor("TAESD"))
        })?;
        record(Figure::TaesdDecode, runs);
    }
    let job = crate::engine::Job::new(crate::engine::JobKind::Txt2Img, params.clone());
    if wanted(Figure::Txt2img) {
        begin(progress, Figure::Txt2img);
        // The whole run is long on a CPU: timed once, after the warm-up of the figures above.
        let runs = time(dev, 1, false, || {
            model
                .run(&job, &mut |_| ControlFlow::Continue(()))
                .map(|_| ())
        })?;
        record(Figure::Txt2img, runs);
    }
    if wanted(Figure::Txt2imgPreviews) {
        begin(progress, Figure::Txt2imgPreviews);
        let delivered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = delivered.clone();
        let previews = PreviewThread::spawn(move |_, _, _| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        previews.set_decoder(Some(build_taesd(dev)?));
        let runs = time(dev, 1, false, || {
            model
                .run(&job, &mut |s| {
                    previews.submit(0, s.step, s.total, s.latents);
                    ControlFlow::Continue(())
                })
                .map(|_| ())
        })?;
        drop(previews);
        progress(&format!(
            "{} of {} steps got a preview",
            delivered.load(std::sync::atomic::Ordering::Relaxed),
            opts.steps
        ));
        record(Figure::Txt2imgPreviews, runs);
    }
    if wanted(Figure::CancelLatency) {
        begin(progress, Figure::CancelLatency);
        let runs = (0..opts.iters.max(1))
            .map(|i| cancel_latency(&model, &job, 0.5 + 1.7 * i as f64))
            .collect::<Result<Vec<f64>>>()?;
        record(Figure::CancelLatency, runs);
    }
    if wanted(Figure::LiveInpaint) {
        begin(progress, Figure::LiveInpaint);
        let job = live_job(opts.size);
        let runs = time(dev, opts.iters, false, || {
            model
                .run(&job, &mut |_| ControlFlow::Continue(()))
                .map(|_| ())
        })?;
        record(Figure::LiveInpaint, runs);
    }
    if wanted(Figure::LoraApply) {
        begin(progress, Figure::LoraApply);
        let file = random_lora(&model, 32)?;
        let lora = crate::engine::model::adapters::LoraRef::new(file.clone(), 0.8);
        let mut adapted = 0;
        let runs = time(dev, opts.iters, false, || {
            model.adapters.apply(std::slice::from_ref(&lora))?;
            adapted = model.adapters.adapted_bytes();
            model.adapters.apply(&[])
        });
        let _ = std::fs::remove_file(&file);
        progress(&format!(
            "adapted weights: {} MiB beside the model's own",
            adapted >> 20
        ));
        record(Figure::LoraApply, runs?);
    }
    Ok(Report {
        arch: opts.arch,
        device: DeviceKind::of(dev).name().to_string(),
        dtype: format!("{:?}", opts.dtype).to_lowercase(),
        size: opts.size,
        steps: opts.steps,
        threads: candle_core::utils::get_num_threads(),
        weights_bytes,
        peak_rss_bytes: peak_rss(),
        vae_tiled,
        timings,
        model: opts.model.as_ref().map(|p| p.display().to_string()),
        memory: sampler.finish(),
    })
}

/// A kohya-style LoRA of `rank` over the model's attention, feed-forward and projection layers,
/// random, written to a temporary file.
fn random_lora(model: &crate::engine::StableDiffusion, rank: usize) -> Result<std::path::PathBuf> {
    use crate::engine::model::adapters::lora::Net;
    const TARGETS: [&str; 14] = [
        "to_q",
        "to_k",
        "to_v",
        "to_out_0",
        "ff_net_0_proj",
        "ff_net_2",
        "proj_in",
        "proj_out",
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "fc1",
        "fc2",
    ];
    let cpu = Device::Cpu;
    let mut tensors = std::collections::HashMap::new();
    for (net, name, shape) in model.adapters.layers() {
        if !TARGETS.iter().any(|t| name.ends_with(t)) || shape.len() < 2 {
            continue;
        }
        let prefix = match net {
            Net::Unet => format!("lora_unet_{name}"),
            Net::Text => format!("lora_te_text_model_{name}"),
        };
        let inner: usize = shape[1..].iter().product();
        let down = Tensor::randn(0f32, 0.01, (rank, inner), &cpu).map_err(tensor("LoRA"))?;
        let up = Tensor::randn(0f32, 0.01, (shape[0], rank), &cpu).map_err(tensor("LoRA"))?;
        tensors.insert(format!("{prefix}.lora_down.weight"), down);
        tensors.insert(format!("{prefix}.lora_up.weight"), up);
    }
    let path = std::env::temp_dir().join(format!(
        "pentimento-bench-lora-{}.safetensors",
        std::process::id()
    ));
    candle_core::safetensors::save(&tensors, &path).map_err(tensor("LoRA"))?;
    Ok(path)
}

/// The job live mode sends after a stroke: a few-step inpainting of the stroke's region.
fn live_job(size: usize) -> crate::engine::Job {
    use crate::engine::inpaint::InpaintOptions;
    let pixels = (0..size * size * 3).map(|i| (i * 7 % 251) as u8).collect();
    let image = crate::engine::RgbImage {
        width: size,
        height: size,
        pixels,
    };
    let values = (0..size * size)
        .map(|i| {
            let (x, y) = (i % size, i / size);
            if x > size / 4 && x < size * 3 / 4 && y > size / 4 && y < size * 3 / 4 {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let mask = crate::engine::mask::Mask {
        width: size,
        height: size,
        values,
    };
    let params = GenerationParams {
        prompt: "a watercolor of a lighthouse on a cliff".into(),
        sampler: "LCM".into(),
        steps: 4,
        cfg_scale: 1.0,
        width: size,
        height: size,
        ..Default::default()
    };
    crate::engine::Job::new(
        crate::engine::JobKind::Inpaint {
            image: std::sync::Arc::new(image),
            mask: std::sync::Arc::new(mask),
            options: InpaintOptions::default(),
        },
        params,
    )
}

/// Seconds from a cancel `after` seconds into `job` until the job has returned, as the app's
/// worker runs it (inside an interrupt check).
fn cancel_latency(
    model: &crate::engine::StableDiffusion,
    job: &crate::engine::Job,
    after: f64,
) -> Result<f64> {
    use crate::engine::interrupt::{interruptible, Interrupt};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let flag = Arc::new(AtomicBool::new(false));
    let cancelled_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let timer = {
        let (flag, at) = (flag.clone(), cancelled_at.clone());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs_f64(after));
            if let Ok(mut at) = at.lock() {
                *at = Some(Instant::now());
            }
            flag.store(true, Ordering::SeqCst);
        })
    };
    let check = flag.clone();
    let result = interruptible(Interrupt::new(move || check.load(Ordering::SeqCst)), || {
        model.run(job, &mut |_| ControlFlow::Continue(()))
    });
    let returned = Instant::now();
    let _ = timer.join();
    match result {
        Err(EngineError::Cancelled) => {}
        Ok(_) => {
            return Err(EngineError::InvalidParams(format!(
                "the job ended before the cancel at {after:.1} s: use a larger --size"
            )))
        }
        Err(e) => return Err(e),
    }
    let at = cancelled_at
        .lock()
        .ok()
        .and_then(|a| *a)
        .unwrap_or(returned);
    Ok(returned.duration_since(at).as_secs_f64())
}

/// `VmHWM` of /proc/self/status: the most memory this process has held.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `n` ControlNets with random weights for `model`'s UNet, each with a random condition at the
/// bench's size.
fn random_controlnets(
    model: &crate::engine::model::StableDiffusion,
    n: usize,
    opts: &BenchOptions,
) -> Result<Vec<crate::engine::control::ActiveControl>> {
    use crate::engine::control::{ActiveControl, ControlUnit};
    use crate::engine::model::controlnet::{ControlNet, ControlNetConfig};
    let unet = model.unet.config();
    let cfg = ControlNetConfig {
        unet: crate::engine::model::UNetConfig {
            in_channels: unet.out_channels,
            ..unet.clone()
        },
        conditioning_channels: 3,
        embedding_channels: crate::engine::model::controlnet::DEFAULT_EMBEDDING_CHANNELS.to_vec(),
        global_pool_conditions: false,
        bgr: false,
    };
    let dev = &opts.device;
    (0..n)
        .map(|i| {
            let vb = super::random::RandomWeights::new().var_builder(opts.dtype, dev);
            let net = ControlNet::load(vb, &cfg).map_err(tensor("random ControlNet"))?;
            let hint = TorchRng::new(100 + i as u64)
                .randn_tensor(&[1, 3, opts.size, opts.size], dev)
                .and_then(|t| t.to_dtype(opts.dtype))
                .map_err(tensor("condition"))?;
            let image = crate::engine::RgbImage::new(8, 8, vec![0; 192])?;
            Ok(ActiveControl {
                net: std::sync::Arc::new(net),
                hint,
                unit: ControlUnit::new("random".into(), std::sync::Arc::new(image)),
            })
        })
        .collect()
}
