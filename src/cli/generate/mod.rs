//! `pentimento generate`: the options (`args`), the job they describe (`plan`), and the run:
//! load the model, run each job of the batch count, write each image with its record.

pub mod args;
pub mod plan;

use std::ops::ControlFlow;
use std::time::Instant;

use anyhow::Context;
use pentimento::engine::denoise::StepInfo;
use pentimento::engine::generate::img2img_start;
use pentimento::engine::inpaint::repaint;
use pentimento::engine::{Generated, Job, JobKind, StableDiffusion};
use pentimento::png_info::write_image;

pub use args::{DeviceArg, DtypeArg, GenerateArgs};
pub use plan::Plan;

use super::progress::{LoadBar, StepProgress};

/// A loaded model, ready to run jobs.
pub struct Session {
    model: StableDiffusion,
    started: Instant,
}

impl Session {
    /// Loads the model with a progress bar and says what was loaded and what decided it.
    pub fn load(args: &GenerateArgs, plan: &Plan) -> anyhow::Result<Self> {
        let opts = plan::load_options(args)?;
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
        let job = &plan.job;
        if let (Some(source), JobKind::Img2Img { .. }) = (job.kind.source_image(), &job.kind) {
            let (w, h) = (job.params.width, job.params.height);
            if (source.width, source.height) != (w, h) {
                eprintln!(
                    "resizing the init image from {}x{} to {w}x{h}",
                    source.width, source.height
                );
            }
        }
        if let Some(options) = job.kind.inpaint_options() {
            let p = &job.params;
            let kind = p.validate()?;
            let sampler = kind.build(&model.schedule, model.sampler_settings(p));
            let calls = sampler.timesteps().len();
            let start = img2img_start(p.steps, p.strength, sampler.order());
            let plain = calls.saturating_sub(start);
            let with = repaint::model_calls(start, calls, options.resampling);
            eprintln!(
                "inpainting with {}: RePaint resample {} jump {}: {with} UNet calls ({plain} without resampling)",
                if model.info.inpainting { "the inpainting UNet" } else { "RePaint on an ordinary model" },
                options.resampling.resample,
                options.resampling.jump,
            );
        }
        Ok(Self { model, started })
    }

    /// Runs one job with a step progress bar.
    pub fn run(&self, job: &Job) -> anyhow::Result<Vec<Generated>> {
        let progress = StepProgress::new(job.params.steps);
        let mut on_step = |s: StepInfo| {
            progress.step(s.step, s.total);
            ControlFlow::Continue(())
        };
        let results = self.model.run(job, &mut on_step);
        progress.finish();
        results.map_err(|e| anyhow::anyhow!(e.explained()))
    }

    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let plan = Plan::from_args(&args)?;
    let session = Session::load(&args, &plan)?;
    let size = plan.job.batch;
    let total = plan.batch_count * size;
    for n in 0..plan.batch_count {
        let job = plan.job.nth_of_run(n);
        for (i, result) in session.run(&job)?.iter().enumerate() {
            let out = plan::batch_path(&plan.out, n * size + i, total);
            write_image(&out, &result.image, &result.record)
                .with_context(|| format!("{}: cannot write PNG", out.display()))?;
            eprintln!(
                "wrote {} (seed {}) in {:.1}s",
                out.display(),
                result.params().seed,
                session.elapsed()
            );
        }
    }
    Ok(())
}
