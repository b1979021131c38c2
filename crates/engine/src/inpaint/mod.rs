//! Inpainting: regenerate the masked region of an image and paste it back seamlessly.
//!
//! Inpainting checkpoints (9-channel UNet) are conditioned on the mask and the masked image's
//! latents exactly as diffusers' `StableDiffusionInpaintPipeline`; ordinary checkpoints hold
//! the known region with RePaint (see `repaint`). Outside the mask the output keeps the input
//! pixels: the VAE never touches them.

pub mod canvas;
pub mod repaint;

use std::ops::ControlFlow;

use candle_core::Tensor;

use self::repaint::{KnownRegion, Resampling};
use super::control::{ActiveControl, JobControls, WorkingArea};
use super::denoise::StepInfo;
use super::error::{EngineError, Result, TensorContext};
use super::generate::{img2img_start, SampleStart};
use super::image::RgbImage;
use super::mask::{composite, Mask, Rect};
use super::model::StableDiffusion;
use super::params::GenerationParams;
use super::rng::TorchRng;
use super::sampler::SamplerKind;

/// What an ordinary (4-channel) model starts from inside the mask, as AUTOMATIC1111 names it.
/// It matters when the strength is below 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskedContent {
    /// The image as it is.
    #[default]
    Original,
    /// The surrounding colours, blurred into the hole.
    Fill,
    /// Random latents.
    LatentNoise,
    /// Zero latents.
    LatentNothing,
}

impl MaskedContent {
    /// The name records and the CLI use.
    pub fn name(&self) -> &'static str {
        match self {
            MaskedContent::Original => "original",
            MaskedContent::Fill => "fill",
            MaskedContent::LatentNoise => "latent-noise",
            MaskedContent::LatentNothing => "latent-nothing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InpaintArea {
    /// The whole image at the job's size.
    #[default]
    Whole,
    /// A box around the mask plus `padding`, generated at the job's size and scaled back.
    Masked { padding: usize },
}

impl InpaintArea {
    /// Context kept around the mask's box in only-masked mode when none is chosen
    /// (AUTOMATIC1111's default).
    pub const DEFAULT_PADDING: usize = 32;
}

/// RePaint's resampling steps back to noisier levels, which a sampler whose state spans calls
/// (Heun's pairs, PNDM's warm-up) cannot do. A property of the sampler's kind, not of a model's
/// schedule: a default schedule tells it, so a job is refused before any model is loaded.
pub(crate) fn check_step_back(resampling: Resampling, kind: SamplerKind) -> Result<()> {
    if resampling.resample <= 1 {
        return Ok(());
    }
    let probe = kind.build(
        &crate::sampler::TrainingSchedule::default(),
        crate::sampler::SamplerSettings {
            steps: 2,
            prediction: crate::sampler::Prediction::Epsilon,
            eta: 0.0,
            spacing: None,
        },
    );
    if probe.noise_level(0).is_none() {
        return Err(EngineError::InvalidParams(format!(
            "RePaint resampling cannot step back with {kind}; use DDIM, Euler, Euler a, LMS, DPM++ 2M, UniPC or DDPM"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InpaintOptions {
    /// Width in pixels of the feathered edge of the paste-back; 0 = hard edge.
    pub mask_blur: usize,
    pub resampling: Resampling,
    pub area: InpaintArea,
    pub masked_content: MaskedContent,
}

/// RePaint's default for ordinary models, from the exact-model measurement in
/// `tests/repaint_gaussian.rs` (Gaussian data, 30 steps, error of the unknown region's mean
/// and covariance against the true conditional):
///
/// | setting   | calls | DDPM / Euler a mean, cov | DDIM / DPM++ 2M mean, cov |
/// |-----------|-------|--------------------------|---------------------------|
/// | R=1       |  30   | 0.25, 0.62               | 0.42–0.43, 0.80–0.86      |
/// | R=2, J=1  |  59   | 0.06, 0.29               | 0.24, 0.61–0.69           |
/// | R=4, J=1  | 117   | 0.02, 0.10               | 0.05, 0.29–0.40           |
/// | R=4, J=5  | 105   | 0.01, 0.35               | 0.12, 0.60–0.70           |
/// | R=4, J=10 |  90   | 0.15, 0.58               | 0.25, 0.77–0.85           |
///
/// Jumping back one step at a time (J=1) buys the most per model call with every sampler, so it
/// is the default jump. Resampling stays off by default (R=1): each pass costs a full set of
/// UNet calls — on a CPU a 512² SD 1.5 step takes seconds — and R=1 is exactly what diffusers'
/// pipeline and the other tools compute, so results stay comparable. `--repaint-resample 2`
/// roughly halves the error for twice the calls; 4 brings an ancestral sampler close to exact.
pub const DEFAULT_RESAMPLING: Resampling = Resampling {
    resample: 1,
    jump: 1,
};

impl Default for InpaintOptions {
    fn default() -> Self {
        Self {
            mask_blur: 4,
            resampling: DEFAULT_RESAMPLING,
            area: InpaintArea::Whole,
            masked_content: MaskedContent::Original,
        }
    }
}

impl StableDiffusion {
    /// Regenerates the masked part of `image` for `batch` images (image i with seed + i).
    /// `params.width/height` is the size the model works at (the image is resized to it, or
    /// the crop is in only-masked mode). With `paste`, each result has the size of `image` and
    /// keeps its pixels outside the mask's feathered edge; without, the raw decodes at the
    /// working size come back.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn inpaint(
        &self,
        params: &GenerationParams,
        kind: SamplerKind,
        image: &RgbImage,
        mask: &Mask,
        opts: &InpaintOptions,
        batch: usize,
        controls: &JobControls,
        on_step: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
        paste: bool,
    ) -> Result<Vec<RgbImage>> {
        if paste && mask.is_empty() {
            return Ok(vec![image.clone(); batch]);
        }
        let (w, h) = (params.width, params.height);
        let region = match opts.area {
            InpaintArea::Whole => Rect {
                x: 0,
                y: 0,
                width: image.width,
                height: image.height,
            },
            InpaintArea::Masked { padding } => {
                let bbox = mask.bounding_box().unwrap_or(Rect {
                    x: 0,
                    y: 0,
                    width: image.width,
                    height: image.height,
                });
                crop_region(bbox, padding, (w, h), (image.width, image.height))
            }
        };
        let crop_image = image.crop(region).resized(w, h);
        let crop_mask = resize_mask(&mask.crop(region), w, h);
        let controls = controls.activate(
            WorkingArea {
                source: (image.width, image.height),
                crop: Some(region),
                size: (w, h),
            },
            Some((&crop_image, &crop_mask)),
            &self.device,
            self.dtype,
        )?;
        let generated = self.inpaint_at_model_size(
            params,
            kind,
            &crop_image,
            &crop_mask,
            opts,
            batch,
            controls,
            on_step,
        )?;
        if !paste {
            return Ok(generated);
        }
        generated
            .iter()
            .map(|g| paste_back(image, mask, g, region, opts.mask_blur))
            .collect()
    }

    /// Inpainting at the model's working size for a batch, returning the raw decodes, with
    /// diffusers' order of random draws per image: the image's latents (when an ordinary model
    /// or a strength below 1 needs them), the noise, then the masked image's latents.
    #[allow(clippy::too_many_arguments)]
    fn inpaint_at_model_size(
        &self,
        params: &GenerationParams,
        kind: SamplerKind,
        image: &RgbImage,
        mask: &Mask,
        opts: &InpaintOptions,
        batch: usize,
        controls: Vec<ActiveControl>,
        on_step: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Vec<RgbImage>> {
        let settings = self.sampler_settings(params);
        let make_sampler = || kind.build(&self.schedule, settings);
        let probe = make_sampler();
        let start = img2img_start(params.steps, params.strength, probe.order());
        if start >= probe.timesteps().len() {
            return Err(EngineError::InvalidParams(format!(
                "strength {} with {} steps leaves no step to run",
                params.strength, params.steps
            )));
        }
        check_step_back(opts.resampling, kind)?;
        let context = self.prompt_context(params)?;
        let dev = &self.device;
        let inpainting_unet = self.info.inpainting;
        let strength_max = params.strength >= 1.0;

        // One copy of the image per generator, so each image samples its own VAE latents.
        let pixels = image
            .to_tensor(dev)?
            .repeat((batch, 1, 1, 1))
            .context("image")?;
        let hard = mask.binarized();
        let mut rng = TorchRng::consecutive(params.seed, batch);
        let image_latents = if !inpainting_unet || !strength_max {
            Some(self.encode_sample(&pixels, &mut rng)?)
        } else {
            None
        };
        let shape = [
            batch,
            self.vae.config().latent_channels,
            params.height / 8,
            params.width / 8,
        ];
        let noise = rng.randn_tensor(&shape, dev).context("initial noise")?;
        let noise = super::generate::with_variation(params, noise)?;
        let keep = (1.0 - hard.to_tensor(dev)?).context("mask")?;
        let masked_pixels = pixels.broadcast_mul(&keep).context("masked image")?;
        let masked_latents = self.encode_sample(&masked_pixels, &mut rng)?;

        let latent_hard = hard
            .resize_nearest(params.width / 8, params.height / 8)
            .to_tensor(dev)?;
        let latent_soft = mask.downsample_area(8).to_tensor(dev)?;
        let start_latents = match (&image_latents, opts.masked_content) {
            (None, _) => None,
            (Some(l), MaskedContent::Original) => Some(l.clone()),
            (Some(l), MaskedContent::LatentNothing) => Some(
                (1.0 - &latent_hard)
                    .and_then(|keep| l.broadcast_mul(&keep))
                    .context("masked content")?,
            ),
            (Some(l), MaskedContent::LatentNoise) => {
                let random = rng.randn_like(l).context("masked content")?;
                Some(repaint::blend(&random, l, &latent_hard).context("masked content")?)
            }
            (Some(l), MaskedContent::Fill) => {
                let filled = self
                    .encode_mean(&canvas::fill_masked(image, &hard).to_tensor(dev)?)?
                    .repeat((batch, 1, 1, 1))
                    .context("masked content")?;
                Some(repaint::blend(&filled, l, &latent_hard).context("masked content")?)
            }
        };
        let sampler = make_sampler();
        let x = match (&start_latents, strength_max) {
            (Some(l), false) => sampler
                .add_noise(l, &noise, start)
                .context("img2img noise")?,
            _ => (&noise * sampler.init_noise_sigma()).context("initial noise")?,
        };

        // Soft masks are honoured while sampling: a cell at 30 % keeps 70 % of the input at each
        // step. Hard masks blend exactly as diffusers' pipeline does (nearest-neighbour latent
        // mask), and not at all for an inpainting UNet, which keeps the known region itself.
        let soft = !mask.is_binary();
        let blend = match (inpainting_unet, soft) {
            (false, false) => Some(latent_hard.clone()),
            (false, true) => Some(latent_soft.clone()),
            (true, false) => None,
            (true, true) => {
                let fractional = latent_soft
                    .gt(0.0)
                    .and_then(|a| a.mul(&latent_soft.lt(1.0)?))
                    .context("mask")?;
                Some(
                    fractional
                        .where_cond(&latent_soft, &latent_soft.ones_like().context("mask")?)
                        .context("mask")?,
                )
            }
        };
        let known = match blend {
            None => None,
            Some(blend) => Some(KnownRegion {
                latents: match &image_latents {
                    Some(l) => l.clone(),
                    None => self
                        .encode_mean(&pixels.narrow(0, 0, 1).context("image")?)?
                        .repeat((batch, 1, 1, 1))
                        .context("latents")?,
                },
                noise: noise.clone(),
                blend,
            }),
        };
        let conditioning = if inpainting_unet {
            let c = latent_hard
                .repeat((batch, 1, 1, 1))
                .and_then(|m| Tensor::cat(&[&m, &masked_latents], 1))
                .and_then(|c| c.to_dtype(self.dtype))
                .context("conditioning")?;
            Some(c)
        } else {
            None
        };
        let start = SampleStart {
            x,
            call: start,
            conditioning,
            known,
            resampling: opts.resampling,
            controls,
        };
        self.sample_and_decode(params, kind, context, start, &mut rng, on_step)
    }
}

/// Back to the image's pixels: everything outside the mask's feathered edge is the input.
fn paste_back(
    image: &RgbImage,
    mask: &Mask,
    generated: &RgbImage,
    region: Rect,
    mask_blur: usize,
) -> Result<RgbImage> {
    let mut placed = image.clone();
    placed.paste(
        &generated.resized(region.width, region.height),
        region.x,
        region.y,
    );
    let mut weights = mask.feathered(mask_blur);
    for y in 0..weights.height {
        for x in 0..weights.width {
            let inside = x >= region.x
                && x < region.x + region.width
                && y >= region.y
                && y < region.y + region.height;
            if !inside {
                weights.values[y * weights.width + x] = 0.0;
            }
        }
    }
    composite(image, &placed, &weights)
}

fn resize_mask(mask: &Mask, width: usize, height: usize) -> Mask {
    if mask.is_binary() {
        mask.resize_linear(width, height).binarized()
    } else {
        mask.resize_linear(width, height)
    }
}

/// The box around the mask plus `padding`, widened to the job's aspect ratio (so the crop is
/// not distorted when scaled to the model's size) and kept inside the image.
pub fn crop_region(bbox: Rect, padding: usize, job: (usize, usize), image: (usize, usize)) -> Rect {
    let (iw, ih) = (image.0 as f64, image.1 as f64);
    let x0 = bbox.x.saturating_sub(padding) as f64;
    let y0 = bbox.y.saturating_sub(padding) as f64;
    let x1 = ((bbox.x + bbox.width + padding) as f64).min(iw);
    let y1 = ((bbox.y + bbox.height + padding) as f64).min(ih);
    let (mut w, mut h) = (x1 - x0, y1 - y0);
    let ratio = job.0 as f64 / job.1 as f64;
    if w / h < ratio {
        w = (h * ratio).min(iw);
    } else {
        h = (w / ratio).min(ih);
    }
    // Centre the widened box on the original one, then push it back inside the image.
    let cx = (x0 + x1) / 2.0;
    let cy = (y0 + y1) / 2.0;
    let left = (cx - w / 2.0).clamp(0.0, iw - w);
    let top = (cy - h / 2.0).clamp(0.0, ih - h);
    Rect {
        x: left.round() as usize,
        y: top.round() as usize,
        width: (w.round() as usize).clamp(1, image.0 - left.round() as usize),
        height: (h.round() as usize).clamp(1, image.1 - top.round() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_region_keeps_the_aspect_and_stays_inside() {
        let r = crop_region(
            Rect {
                x: 100,
                y: 100,
                width: 20,
                height: 10,
            },
            8,
            (512, 512),
            (1000, 800),
        );
        assert_eq!(r.width, r.height);
        assert!(r.x <= 92 && r.x + r.width >= 128);
        let r = crop_region(
            Rect {
                x: 0,
                y: 0,
                width: 10,
                height: 10,
            },
            32,
            (64, 32),
            (100, 100),
        );
        assert_eq!((r.x, r.y), (0, 0));
        assert_eq!(r.width, 2 * r.height);
    }
}
