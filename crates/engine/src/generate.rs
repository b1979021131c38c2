//! Text-to-image and img2img, and the sampling core every job kind ends in: prompt embeddings,
//! seeded noise, the sampling loop, VAE decode.

use std::ops::ControlFlow;

use candle_core::{DType, Tensor};

use super::control::{JobControls, WorkingArea};
use super::denoise::{GuidedUNet, StepInfo};
use super::error::{ensure_finite, EngineError, Result, TensorContext};
use super::image::RgbImage;
use super::inpaint::repaint::{repaint, KnownRegion, Resampling};
use super::model::vae::{LatentDistribution, Vae};
use super::model::vae_fallback::has_non_finite;
use super::model::StableDiffusion;
use super::params::GenerationParams;
use super::rng::TorchRng;
use super::sampler::{SamplerKind, SamplerSettings};

impl StableDiffusion {
    /// Embeddings for classifier-free guidance: `(2, 77·k, width)` with the negative prompt
    /// first, or the prompt alone when the scale is 1 or less (diffusers skips guidance then).
    /// Prompts use AUTOMATIC1111's syntax; the shorter of the two is padded with chunks of the
    /// empty prompt, as AUTOMATIC1111 does.
    pub fn prompt_context(&self, params: &GenerationParams) -> Result<Tensor> {
        let embeddings = self.adapters.embeddings();
        let encode = |text: &str| {
            self.text
                .encode_weighted_with(text, params.clip_skip, &embeddings, &self.device)
        };
        let cond = encode(&params.prompt)?;
        let context = if params.cfg_scale > 1.0 {
            let uncond = encode(&params.negative_prompt)?;
            let (cond, uncond) = self.equal_lengths(cond, uncond, params.clip_skip)?;
            Tensor::cat(&[&uncond, &cond], 0).context("prompt embeddings")?
        } else {
            cond
        };
        let context = context.to_dtype(self.dtype).context("prompt embeddings")?;
        ensure_finite(
            &context,
            "the text encoder",
            "its weights hold NaN or infinite values, or the prompt's emphasis is extreme",
        )?;
        Ok(context)
    }

    fn equal_lengths(&self, a: Tensor, b: Tensor, clip_skip: usize) -> Result<(Tensor, Tensor)> {
        let (la, lb) = (
            a.dim(1).context("embeddings")?,
            b.dim(1).context("embeddings")?,
        );
        if la == lb {
            return Ok((a, b));
        }
        let empty = self.text.encode_weighted("", clip_skip, &self.device)?;
        let pad = |t: Tensor, missing: usize| -> Result<Tensor> {
            let chunks = missing / empty.dim(1).context("embeddings")?;
            let mut parts = vec![t];
            parts.extend(std::iter::repeat_n(empty.clone(), chunks));
            Tensor::cat(&parts, 1).context("padding prompt chunks")
        };
        if la < lb {
            Ok((pad(a, lb - la)?, b))
        } else {
            Ok((a, pad(b, la - lb)?))
        }
    }

    /// Text-to-image for `batch` images in one UNet batch: image i's noise is seed + i's.
    pub(crate) fn txt2img(
        &self,
        params: &GenerationParams,
        kind: SamplerKind,
        batch: usize,
        controls: &JobControls,
        on_step: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Vec<RgbImage>> {
        self.refuse_inpainting_model()?;
        let context = self.prompt_context(params)?;
        let sampler = kind.build(&self.schedule, self.sampler_settings(params));
        let latent_channels = self.vae.config().latent_channels;
        let shape = [batch, latent_channels, params.height / 8, params.width / 8];
        let mut rng = TorchRng::consecutive(params.seed, batch);
        let noise = rng
            .randn_tensor(&shape, &self.device)
            .context("initial noise")?;
        let noise = with_variation(params, noise)?;
        let x = (noise * sampler.init_noise_sigma()).context("initial noise")?;
        let mut start = SampleStart::plain(x, 0);
        start.controls = self.whole_image_controls(params, controls)?;
        self.sample_and_decode(params, kind, context, start, &mut rng, on_step)
    }

    /// Image-to-image: the init image is encoded (sampling the VAE's latent distribution with
    /// the job's generator), noised to the strength's step, and only the remaining steps run,
    /// in diffusers' order of random draws.
    pub(crate) fn img2img(
        &self,
        params: &GenerationParams,
        kind: SamplerKind,
        init: &RgbImage,
        batch: usize,
        controls: &JobControls,
        on_step: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Vec<RgbImage>> {
        self.refuse_inpainting_model()?;
        let sampler = kind.build(&self.schedule, self.sampler_settings(params));
        let start = img2img_start(params.steps, params.strength, sampler.order());
        if start >= sampler.timesteps().len() {
            return Err(EngineError::InvalidParams(format!(
                "strength {} with {} steps leaves no step to run; raise the strength or the steps",
                params.strength, params.steps
            )));
        }
        let context = self.prompt_context(params)?;
        let image = init
            .resized(params.width, params.height)
            .to_tensor(&self.device)?
            .repeat((batch, 1, 1, 1))
            .context("init image")?;

        let mut rng = TorchRng::consecutive(params.seed, batch);
        let latents = self.encode_sample(&image, &mut rng)?;
        let noise = with_variation(params, rng.randn_like(&latents).context("img2img noise")?)?;
        let x = sampler
            .add_noise(&latents, &noise, start)
            .context("img2img noise")?;
        let mut start = SampleStart::plain(x, start);
        start.controls = self.whole_image_controls(params, controls)?;
        self.sample_and_decode(params, kind, context, start, &mut rng, on_step)
    }

    /// The job's ControlNets over the whole image at the job's size.
    fn whole_image_controls(
        &self,
        params: &GenerationParams,
        controls: &JobControls,
    ) -> Result<Vec<crate::control::ActiveControl>> {
        let size = (params.width, params.height);
        controls.activate(
            WorkingArea {
                source: size,
                crop: None,
                size,
            },
            None,
            &self.device,
            self.dtype,
        )
    }

    /// The one sampling core every job kind ends in: the guided UNet over the prompt's
    /// embeddings, the sampler's steps from `start.call` (holding a known region and jumping
    /// back for RePaint when asked), then the VAE decode of each image.
    pub(crate) fn sample_and_decode(
        &self,
        params: &GenerationParams,
        kind: SamplerKind,
        context: Tensor,
        start: SampleStart,
        rng: &mut TorchRng,
        on_step: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Vec<RgbImage>> {
        let settings = self.sampler_settings(params);
        let make_sampler = || kind.build(&self.schedule, settings);
        let denoiser = GuidedUNet {
            unet: &self.unet,
            context,
            scale: params.cfg_scale,
            dtype: self.dtype,
            conditioning: start.conditioning,
            controls: start.controls,
        };
        let latents = repaint(
            &denoiser,
            &make_sampler,
            start.x,
            start.known.as_ref(),
            start.resampling,
            start.call,
            rng,
            on_step,
        )
        .context("sampling")?
        .ok_or(EngineError::Cancelled)?;
        ensure_finite(
            &latents,
            "sampling",
            "the UNet's weights hold NaN or infinite values, or the CFG scale is extreme",
        )?;
        self.decode_batch(&latents)
    }

    fn refuse_inpainting_model(&self) -> Result<()> {
        if self.info.inpainting {
            return Err(EngineError::InvalidParams(
                "this is an inpainting model: it needs an image and a mask".into(),
            ));
        }
        Ok(())
    }

    pub fn sampler_settings(&self, params: &GenerationParams) -> SamplerSettings {
        SamplerSettings {
            steps: params.steps,
            prediction: self.info.prediction,
            eta: params.eta,
            spacing: params.timestep_spacing,
        }
    }

    /// A sample of the VAE's latent distribution with the job's generator, scaled for the UNet.
    pub(crate) fn encode_sample(&self, pixels: &Tensor, rng: &mut TorchRng) -> Result<Tensor> {
        let dist = self.vae_encode(pixels)?;
        let (mean, std) = (
            dist.mean.to_dtype(DType::F32).context("VAE")?,
            dist.std.to_dtype(DType::F32).context("VAE")?,
        );
        let draw = rng.randn_like(&mean).context("latent sample")?;
        ((mean + (std * draw).context("latent sample")?).context("latent sample")?
            * self.vae.config().scaling_factor)
            .context("latent sample")
    }

    /// The mean of the VAE's latent distribution, scaled: for latents that must not consume
    /// random numbers.
    pub(crate) fn encode_mean(&self, pixels: &Tensor) -> Result<Tensor> {
        let dist = self.vae_encode(pixels)?;
        (dist.mean.to_dtype(DType::F32).context("VAE")? * self.vae.config().scaling_factor)
            .context("VAE")
    }

    /// Scaled latents of a batch → one image each, decoded one at a time so the VAE's memory
    /// does not grow with the batch.
    pub fn decode_batch(&self, latents: &Tensor) -> Result<Vec<RgbImage>> {
        let n = latents.dim(0).context("latents")?;
        (0..n)
            .map(|i| self.decode_latents(&latents.narrow(0, i, 1).context("latents")?))
            .collect()
    }

    /// Scaled latents of one image → image.
    pub fn decode_latents(&self, latents: &Tensor) -> Result<RgbImage> {
        let z = (latents / self.vae.config().scaling_factor).context("latents")?;
        let (_, _, h, w) = z.dims4().context("latents")?;
        let f = self.vae.scale();
        let tiled = self.vae_tiling.applies(h * f, w * f);
        let decode = |vae: &Vae, dtype: DType| {
            let z = z.to_dtype(dtype)?;
            if tiled {
                vae.decode_tiled(&z, &self.vae_tiling)
            } else {
                vae.decode(&z)
            }?
            .to_dtype(DType::F32)
        };
        let mut decoded = decode(&self.vae, self.dtype).context("VAE decode")?;
        if self.dtype != DType::F32 && has_non_finite(&decoded).context("VAE decode")? {
            // The half-precision VAE overflowed: decode again in f32.
            decoded = decode(self.vae_fallback.full_precision()?, DType::F32)
                .context("VAE decode in f32")?;
        }
        ensure_finite(
            &decoded,
            "the VAE decoder",
            "its weights hold NaN or infinite values",
        )?;
        RgbImage::from_vae_output(&decoded)
    }

    /// The VAE's latent distribution of `pixels`, in tiles for large images, in f32 when the
    /// half-precision VAE overflows.
    pub fn vae_encode(&self, pixels: &Tensor) -> Result<LatentDistribution> {
        let (_, _, h, w) = pixels.dims4().context("image")?;
        let tiled = self.vae_tiling.applies(h, w);
        let encode = |vae: &Vae, dtype: DType| {
            let pixels = pixels.to_dtype(dtype)?;
            if tiled {
                vae.encode_tiled(&pixels, &self.vae_tiling)
            } else {
                vae.encode(&pixels)
            }
        };
        let dist = encode(&self.vae, self.dtype).context("VAE encode")?;
        if self.dtype != DType::F32 && has_non_finite(&dist.mean).context("VAE encode")? {
            return encode(self.vae_fallback.full_precision()?, DType::F32)
                .context("VAE encode in f32");
        }
        Ok(dist)
    }
}

/// Where the sampling core starts: the latents (already noised for `call`), the model call to
/// start at, and what inpainting adds (the 9-channel UNet's conditioning, the region RePaint
/// holds).
pub(crate) struct SampleStart {
    pub x: Tensor,
    pub call: usize,
    pub conditioning: Option<Tensor>,
    pub known: Option<KnownRegion>,
    pub resampling: Resampling,
    /// ControlNets with their condition at the working size.
    pub controls: Vec<crate::control::ActiveControl>,
}

impl SampleStart {
    /// Plain sampling: nothing held, no conditioning.
    pub fn plain(x: Tensor, call: usize) -> Self {
        Self {
            x,
            call,
            conditioning: None,
            known: None,
            resampling: Resampling::NONE,
            controls: vec![],
        }
    }
}

/// The first model call of img2img: diffusers runs `int(steps · strength)` steps and skips the
/// others, `order` calls each.
pub fn img2img_start(steps: usize, strength: f64, order: usize) -> usize {
    (steps - img2img_steps(steps, strength)) * order
}

/// The steps an img2img or inpainting job runs: `strength` of them, as diffusers counts.
pub fn img2img_steps(steps: usize, strength: f64) -> usize {
    ((steps as f64 * strength) as usize).min(steps)
}

/// AUTOMATIC1111's variation seed: the seed's noise slerped toward the variation seed's by the
/// variation strength (0 = the seed's own noise).
pub fn with_variation(params: &GenerationParams, noise: Tensor) -> Result<Tensor> {
    match params.variation_seed {
        Some(vs) if params.variation_strength > 0.0 => {
            // Every image of a batch blends toward the same variation seed, as AUTOMATIC1111.
            let images = noise.dim(0).context("variation noise")?;
            let other = TorchRng::for_seeds(&vec![vs; images])
                .randn_like(&noise)
                .context("variation noise")?;
            slerp(params.variation_strength, &noise, &other).context("variation noise")
        }
        _ => Ok(noise),
    }
}

/// AUTOMATIC1111's `slerp` on per-image noise `(c, h, w)`: vectors run along the height axis
/// (its `dim=1`), which is axis 2 of our `(1, c, h, w)`.
pub fn slerp(val: f64, low: &Tensor, high: &Tensor) -> candle_core::Result<Tensor> {
    let axis = 2;
    let low_norm = low.broadcast_div(&low.sqr()?.sum_keepdim(axis)?.sqrt()?)?;
    let high_norm = high.broadcast_div(&high.sqr()?.sum_keepdim(axis)?.sqrt()?)?;
    let dot = (low_norm * high_norm)?.sum_keepdim(axis)?;
    if dot.mean_all()?.to_scalar::<f32>()? > 0.9995 {
        // Nearly parallel: AUTOMATIC1111 falls back to this (weights as it writes them).
        return (low * val)? + (high * (1.0 - val))?;
    }
    let dot: Vec<f32> = dot.flatten_all()?.to_vec1()?;
    let (a, b): (Vec<f32>, Vec<f32>) = dot
        .iter()
        .map(|&d| {
            let omega = (d as f64).clamp(-1.0, 1.0).acos();
            let so = omega.sin();
            (((1.0 - val) * omega).sin() / so, (val * omega).sin() / so)
        })
        .map(|(x, y)| (x as f32, y as f32))
        .unzip();
    let dims = low.sum_keepdim(axis)?.dims().to_vec();
    let a = Tensor::from_vec(a, dims.clone(), low.device())?;
    let b = Tensor::from_vec(b, dims, low.device())?;
    low.broadcast_mul(&a)? + high.broadcast_mul(&b)?
}
