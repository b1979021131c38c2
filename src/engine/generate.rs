//! Text-to-image: prompt embeddings, seeded noise, the sampling loop, VAE decode.

use std::ops::ControlFlow;

use candle_core::{DType, Tensor};

use super::denoise::{sample, GuidedUNet, StepInfo};
use super::error::{EngineError, Result, TensorContext};
use super::image::RgbImage;
use super::model::StableDiffusion;
use super::params::GenerationParams;
use super::rng::TorchRng;

impl StableDiffusion {
    /// Embeddings for classifier-free guidance: `(2, 77, width)` with the negative prompt first,
    /// or the prompt alone when the scale is 1 or less (as diffusers skips guidance then).
    pub fn prompt_context(&self, prompt: &str, negative: &str, cfg_scale: f64) -> Result<Tensor> {
        let cond = self.text.encode(prompt, &self.device)?;
        let context = if cfg_scale > 1.0 {
            let uncond = self.text.encode(negative, &self.device)?;
            Tensor::cat(&[&uncond, &cond], 0).context("prompt embeddings")?
        } else {
            cond
        };
        context.to_dtype(self.dtype).context("prompt embeddings")
    }

    /// Runs a text-to-image job. `on_step` sees every step and may cancel it.
    pub fn txt2img(
        &self,
        params: &GenerationParams,
        on_step: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<RgbImage> {
        let sampler_kind = params.validate()?;
        if self.info.inpainting {
            return Err(EngineError::InvalidParams(
                "this is an inpainting model: it needs an image and a mask, not a prompt alone".into(),
            ));
        }
        let context = self.prompt_context(&params.prompt, &params.negative_prompt, params.cfg_scale)?;
        let mut sampler = sampler_kind.build(&self.schedule, params.steps, self.info.prediction);

        let latent_channels = self.vae.config().latent_channels;
        let shape = [1, latent_channels, params.height / 8, params.width / 8];
        let mut rng = TorchRng::new(params.seed);
        let noise = rng.randn_tensor(&shape, &self.device).context("initial noise")?;
        let x = (noise * sampler.init_noise_sigma()).context("initial noise")?;

        let denoiser = GuidedUNet { unet: &self.unet, context, scale: params.cfg_scale, dtype: self.dtype };
        let latents = sample(&denoiser, sampler.as_mut(), x, &mut rng, on_step)
            .context("sampling")?
            .ok_or(EngineError::Cancelled)?;
        self.decode_latents(&latents)
    }

    /// Scaled latents → image.
    pub fn decode_latents(&self, latents: &Tensor) -> Result<RgbImage> {
        let z = (latents / self.vae.config().scaling_factor)
            .and_then(|z| z.to_dtype(self.dtype))
            .context("latents")?;
        let decoded = self.vae.decode(&z).and_then(|d| d.to_dtype(DType::F32)).context("VAE decode")?;
        RgbImage::from_vae_output(&decoded)
    }
}
