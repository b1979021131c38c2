//! `pentimento bench`: speed of the full-size networks with random weights.

use anyhow::bail;
use candle_core::DType;
use clap::{Args, ValueEnum};
use pentimento::bench::measure::{run, BenchOptions, Figure, Report};
use pentimento::bench::Arch;
use pentimento::engine::model::inspect::human_size;

use super::generate::{DeviceArg, DtypeArg};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ArchArg {
    Sd15,
    Sd21,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "sd15")]
    pub arch: ArchArg,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Compute dtype [default: f32 on the CPU, f16 on a GPU].
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Image side in pixels [default: 512 for sd15, 768 for sd21].
    #[arg(long)]
    pub size: Option<usize>,
    /// Timed runs per figure (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Steps of the whole text-to-image run.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Only these figures: text-encode, unet-step, vae-decode, vae-encode, taesd-decode,
    /// txt2img, txt2img-previews, prediction-probe, cancel-latency, lora-apply, live-inpaint,
    /// unet-step-controlnet, unet-step-2-controlnets, model-load (with --model)
    /// (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    #[arg(long)]
    pub json: bool,
    /// Run the VAE whole at every size (by default images over 1024 px go through tiles, as
    /// in the app): to see what tiling saves.
    #[arg(long)]
    pub no_vae_tiling: bool,
    /// Time this model file (single file or diffusers folder) instead of random weights, its
    /// load included (`model-load`); --arch is then only the size default.
    #[arg(long)]
    pub model: Option<std::path::PathBuf>,
}

pub fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let arch = match args.arch {
        ArchArg::Sd15 => Arch::Sd15,
        ArchArg::Sd21 => Arch::Sd21,
    };
    let device = super::generate::plan::open_device(args.device)?;
    let dtype = match args.dtype {
        Some(d) => d.dtype(),
        None if device.is_cpu() => DType::F32,
        None => DType::F16,
    };
    let mut only = vec![];
    for name in &args.only {
        match Figure::parse(name) {
            Some(f) => only.push(f),
            None => bail!(
                "unknown figure {name:?}; known: {}",
                Figure::ALL.map(|f| f.name()).join(", ")
            ),
        }
    }
    let opts = BenchOptions {
        arch,
        device,
        dtype,
        size: args.size.unwrap_or(arch.native_size()),
        iters: args.iters,
        steps: args.steps,
        only,
        vae_tiling: !args.no_vae_tiling,
        model: args.model.clone(),
    };
    if let Some(m) = &opts.model {
        if !m.exists() {
            bail!("--model {}: no such file", m.display());
        }
    }
    let report = run(&opts, &mut |what| eprintln!("{what}…"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!(
        "{} {}x{} on {} ({}), {} threads; weights {}{}",
        // With --model, the file (whatever --arch said, which then only sets the size).
        match (&r.model, r.arch) {
            (Some(model), _) => model.as_str(),
            (None, Arch::Sd15) => "SD 1.5",
            (None, Arch::Sd21) => "SD 2.1",
        },
        r.size,
        r.size,
        r.device,
        r.dtype,
        r.threads,
        human_size(r.weights_bytes),
        r.peak_rss_bytes
            .map(|b| format!(", peak memory {}", human_size(b)))
            .unwrap_or_default()
    );
    if r.vae_tiled {
        println!("the VAE figures went through tiles (images over 1024 px)");
    }
    for t in &r.timings {
        let runs: Vec<String> = t.runs.iter().map(|s| format!("{s:.3}")).collect();
        println!(
            "{:14} {:>10.4} s   ({})  {}",
            t.figure.name(),
            t.median_seconds,
            runs.join(", "),
            t.figure.describe()
        );
    }
    if !r.memory.is_empty() {
        println!("resident memory, peak of each phase (file pages = the mapped model file):");
        for p in &r.memory {
            println!(
                "  {:24} {:>10}  (anonymous {}, file pages {})",
                p.phase,
                human_size(p.peak.total),
                human_size(p.peak.anon),
                human_size(p.peak.file)
            );
        }
    }
    if let (Some(preview), Some(step)) = (r.median(Figure::TaesdDecode), r.median(Figure::UnetStep))
    {
        println!(
            "a TAESD decode takes {:.1} % of a UNet step's time",
            100.0 * preview / step
        );
    }
    if let (Some(plain), Some(with)) =
        (r.median(Figure::Txt2img), r.median(Figure::Txt2imgPreviews))
    {
        println!(
            "previews on their own thread slow text-to-image by {:+.1} %",
            100.0 * (with - plain) / plain
        );
    }
}
