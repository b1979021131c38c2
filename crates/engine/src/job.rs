//! One generation job, decided in one place: what it starts from (its kind), its parameters,
//! how many images it samples together and the seed of each. The CLI, the app and the worker
//! build a `Job`; `StableDiffusion::run` runs it; `png_info::ImageRecord::for_job` says what
//! each image's PNG records.

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::control::{ControlUnit, JobControls};
use crate::denoise::StepInfo;
use crate::error::{EngineError, Result};
use crate::image::RgbImage;
use crate::inpaint::canvas::{self, Margins};
use crate::inpaint::InpaintOptions;
use crate::mask::Mask;
use crate::model::StableDiffusion;
use crate::params::GenerationParams;
use crate::png_info::ImageRecord;
use crate::sampler::SamplerKind;

/// The most images one UNet batch may hold.
pub const MAX_BATCH: usize = 64;
/// RePaint passes over each block of steps: each is a full set of UNet calls; the RePaint
/// paper uses 10, AUTOMATIC1111 extensions up to 20.
pub const MAX_RESAMPLE: usize = 32;
/// Jobs one `generate` or the app's Generate queues (AUTOMATIC1111's batch count ends at 100).
pub const MAX_BATCH_COUNT: usize = 1000;

/// What a job starts from. Images are shared (`Arc`): a job is cheap to clone and to keep
/// beside its results.
#[derive(Debug, Clone)]
pub enum JobKind {
    /// From noise.
    Txt2Img,
    /// From an image, noised to the strength's step.
    Img2Img { init: Arc<RgbImage> },
    /// Regenerates the masked part of an image (white = regenerate).
    Inpaint {
        image: Arc<RgbImage>,
        mask: Arc<Mask>,
        options: InpaintOptions,
    },
    /// Extends an image's canvas by margins and generates the new area.
    Outpaint {
        image: Arc<RgbImage>,
        margins: Margins,
        options: InpaintOptions,
    },
}

impl JobKind {
    /// The name PNG records and AUTOMATIC1111 use for it.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Txt2Img => "txt2img",
            JobKind::Img2Img { .. } => "img2img",
            JobKind::Inpaint { .. } => "inpaint",
            JobKind::Outpaint { .. } => "outpaint",
        }
    }

    /// The image the job starts from, if any (before outpainting extends it).
    pub fn source_image(&self) -> Option<&RgbImage> {
        match self {
            JobKind::Txt2Img => None,
            JobKind::Img2Img { init } => Some(init),
            JobKind::Inpaint { image, .. } | JobKind::Outpaint { image, .. } => Some(image),
        }
    }

    pub fn inpaint_options(&self) -> Option<&InpaintOptions> {
        match self {
            JobKind::Inpaint { options, .. } | JobKind::Outpaint { options, .. } => Some(options),
            _ => None,
        }
    }

    /// The image and mask inpainting works on: outpainting's extended canvas and its mask.
    pub fn canvas_and_mask(&self) -> Result<Option<(Arc<RgbImage>, Arc<Mask>)>> {
        Ok(match self {
            JobKind::Inpaint { image, mask, .. } => Some((image.clone(), mask.clone())),
            JobKind::Outpaint { image, margins, .. } => {
                let (canvas, mask) = canvas::extend(image, *margins)?;
                Some((Arc::new(canvas), Arc::new(mask)))
            }
            _ => None,
        })
    }
}

/// A job: its kind, its parameters (image 0's) and its batch size.
#[derive(Debug, Clone)]
pub struct Job {
    pub kind: JobKind,
    pub params: GenerationParams,
    /// Images sampled together in one UNet batch; image i uses seed + i.
    pub batch: usize,
    /// LoRAs the model computes with for this job (resolved from the prompt's
    /// `<lora:NAME:W>` tags and `--lora`; see `adapters::resolve`).
    pub loras: Vec<crate::model::adapters::LoraRef>,
    /// Textual-inversion embeddings its prompts name (see `adapters::embedding::embeddings_in`).
    pub embeddings: Vec<crate::model::adapters::embedding::EmbeddingRef>,
    /// ControlNets steering the job, in order.
    pub controls: Vec<ControlUnit>,
}

/// One finished image and its record: the parameters that reproduce it alone, the model, the
/// job's kind and inputs.
#[derive(Debug, Clone)]
pub struct Generated {
    pub image: RgbImage,
    pub record: ImageRecord,
}

impl Generated {
    pub fn params(&self) -> &GenerationParams {
        &self.record.params
    }
}

impl Job {
    pub fn new(kind: JobKind, params: GenerationParams) -> Self {
        Self {
            kind,
            params,
            batch: 1,
            loras: vec![],
            embeddings: vec![],
            controls: vec![],
        }
    }

    pub fn with_controls(self, controls: Vec<ControlUnit>) -> Self {
        Self { controls, ..self }
    }

    pub fn with_batch(self, batch: usize) -> Self {
        Self { batch, ..self }
    }

    pub fn with_loras(self, loras: Vec<crate::model::adapters::LoraRef>) -> Self {
        Self { loras, ..self }
    }

    pub fn with_embeddings(
        self,
        embeddings: Vec<crate::model::adapters::embedding::EmbeddingRef>,
    ) -> Self {
        Self { embeddings, ..self }
    }

    /// The parameters of image `i`: AUTOMATIC1111 numbers seeds consecutively.
    pub fn image_params(&self, i: usize) -> GenerationParams {
        self.params.for_batch_image(i)
    }

    /// Job `n` of a run of jobs one after another (AUTOMATIC1111's batch count): it starts
    /// where the previous job's seeds end.
    pub fn nth_of_run(&self, n: usize) -> Job {
        Job {
            params: self.params.for_batch_image(n * self.batch),
            ..self.clone()
        }
    }

    /// Everything that can be checked before a model is touched.
    pub fn validate(&self) -> Result<SamplerKind> {
        let sampler = self.params.validate()?;
        crate::model::adapters::Adapters::validate(&self.loras)?;
        crate::control::validate_for(&self.controls, self.kind.inpaint_options().is_some())?;
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(EngineError::InvalidParams(format!(
                "batch size {} is outside 1–{MAX_BATCH}",
                self.batch
            )));
        }
        // Checked here too, not only where the sampler runs, so a front end refuses the job
        // before it loads a model.
        let uses_strength = !matches!(self.kind, JobKind::Txt2Img);
        let p = &self.params;
        if uses_strength && crate::generate::img2img_steps(p.steps, p.strength) == 0 {
            return Err(EngineError::InvalidParams(format!(
                "strength {} with {} steps leaves no step to run; raise the strength or the steps",
                p.strength, p.steps
            )));
        }
        if let Some(options) = self.kind.inpaint_options() {
            let r = options.resampling;
            if !(1..=MAX_RESAMPLE).contains(&r.resample) || !(1..=1000).contains(&r.jump) {
                return Err(EngineError::InvalidParams(format!(
                    "RePaint resample {} jump {}: resample must be 1–{MAX_RESAMPLE}, jump 1–1000",
                    r.resample, r.jump
                )));
            }
            crate::inpaint::check_step_back(r, sampler)?;
        }
        if let JobKind::Inpaint { image, mask, .. } = &self.kind {
            if (mask.width, mask.height) != (image.width, image.height) {
                return Err(EngineError::InvalidParams(format!(
                    "the mask is {}×{} but the image is {}×{}",
                    mask.width, mask.height, image.width, image.height
                )));
            }
        }
        Ok(sampler)
    }
}

impl StableDiffusion {
    /// A schedule is cut into fewer steps than the model's training timesteps: at as many,
    /// the multistep samplers divide by a zero step (diffusers refuses more, too).
    fn check_steps(&self, job: &Job) -> Result<()> {
        let trained = self.schedule.num_train_timesteps;
        if job.params.steps >= trained {
            return Err(EngineError::InvalidParams(format!(
                "{} steps: this model was trained with {trained} timesteps, so at most {} steps",
                job.params.steps,
                trained - 1
            )));
        }
        Ok(())
    }

    /// Runs a job. `on_step` sees every model call and may cancel; each image comes back with
    /// the parameters that reproduce it alone. Inpainting results are pasted back into the
    /// image (outside the mask the input's pixels are kept exactly). Run inside
    /// [`crate::interrupt::interruptible`], a cancel stops it within one block of a network.
    pub fn run(
        &self,
        job: &Job,
        on_step: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Vec<Generated>> {
        let sampler = job.validate()?;
        self.check_steps(job)?;
        let canvas = job.kind.canvas_and_mask()?;
        let mask = canvas.as_ref().map(|(_, m)| m.as_ref());
        let record = ImageRecord::for_job_with_mask(job, &self.info, mask);
        let images = self
            .run_images(job, sampler, canvas.as_ref(), on_step, true)
            .map_err(|e| match crate::interrupt::requested() {
                // Whatever pass was cut short reports it as its own failure.
                true => EngineError::Cancelled,
                false => e,
            })?;
        Ok(images
            .into_iter()
            .enumerate()
            .map(|(i, image)| Generated {
                image,
                record: record.with_params(job.image_params(i)),
            })
            .collect())
    }

    /// The raw decodes of a job at the model's working size: for inpainting, before the
    /// crop is scaled back and pasted into the image. This is what diffusers' pipelines
    /// return, so references compare against it.
    pub fn run_at_model_size(
        &self,
        job: &Job,
        on_step: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Vec<RgbImage>> {
        let sampler = job.validate()?;
        self.check_steps(job)?;
        let canvas = job.kind.canvas_and_mask()?;
        self.run_images(job, sampler, canvas.as_ref(), on_step, false)
    }

    /// Runs a job `validate` accepted (it gave `sampler`); `canvas` is the image and mask
    /// inpainting kinds work on.
    fn run_images(
        &self,
        job: &Job,
        sampler: SamplerKind,
        canvas: Option<&(Arc<RgbImage>, Arc<Mask>)>,
        on_step: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
        paste: bool,
    ) -> Result<Vec<RgbImage>> {
        self.adapters.apply(&job.loras)?;
        self.adapters.use_embeddings(&job.embeddings)?;
        let paths: Vec<_> = job.controls.iter().map(|c| c.model.clone()).collect();
        let nets = self
            .controlnets
            .take(&paths, self.unet.config(), self.dtype, &self.device)?;
        let controls = JobControls::new(&job.controls, nets);
        let (params, batch) = (&job.params, job.batch);
        match (&job.kind, canvas, job.kind.inpaint_options()) {
            (JobKind::Txt2Img, ..) => self.txt2img(params, sampler, batch, &controls, on_step),
            (JobKind::Img2Img { init }, ..) => {
                self.img2img(params, sampler, init, batch, &controls, on_step)
            }
            (_, Some((image, mask)), Some(options)) => self.inpaint(
                params, sampler, image, mask, options, batch, &controls, on_step, paste,
            ),
            _ => Err(EngineError::InvalidParams(
                "an inpainting job without its image and mask".into(),
            )),
        }
    }
}
