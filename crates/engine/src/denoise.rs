//! The sampling loop, written against a denoiser so that the algorithm does not depend on the
//! UNet: the UNet with classifier-free guidance is one denoiser, an exact model in tests another.

use std::ops::ControlFlow;

use candle_core::{DType, Result, Tensor};

use super::control::{ActiveControl, CallIndex, ControlInput};
use super::model::unet::UNet;
use super::rng::TorchRng;
use super::sampler::Sampler;

/// Predicts the model output (noise, or v) for latents `x` at timestep `t`, model call `at`
/// of the job's calls.
pub trait Denoiser {
    fn predict(&self, x: &Tensor, t: f64, at: CallIndex) -> Result<Tensor>;
}

/// The UNet under classifier-free guidance: `uncond + scale · (cond − uncond)`, evaluated as one
/// batch of two as diffusers does; with a scale of 1 or less only the conditional half runs.
pub struct GuidedUNet<'a> {
    pub unet: &'a UNet,
    /// `(2, tokens, width)`: unconditional first, then conditional; or `(1, …)` without guidance.
    pub context: Tensor,
    pub scale: f64,
    pub dtype: DType,
    /// Extra input channels appended after the latents, batch 1: the mask and the masked
    /// image's latents of an inpainting UNet.
    pub conditioning: Option<Tensor>,
    /// ControlNets steering the UNet.
    pub controls: Vec<ActiveControl>,
}

impl GuidedUNet<'_> {
    pub fn guided(&self) -> bool {
        self.context.dim(0).map(|b| b == 2).unwrap_or(false)
    }
}

impl Denoiser for GuidedUNet<'_> {
    /// `x` may hold a batch of images; they share the prompt and the conditioning.
    fn predict(&self, x: &Tensor, t: f64, at: CallIndex) -> Result<Tensor> {
        let images = x.dim(0)?;
        let halves = self.context.dim(0)?;
        let per_image = |t: &Tensor| -> Result<Tensor> {
            if t.dim(0)? == 1 && images > 1 {
                let mut reps = vec![1; t.rank()];
                reps[0] = images;
                t.repeat(reps)
            } else {
                Ok(t.clone())
            }
        };
        // Unconditional half first, then the conditional half: each repeated per image.
        let context = if images == 1 {
            self.context.clone()
        } else {
            let parts = (0..halves)
                .map(|h| per_image(&self.context.narrow(0, h, 1)?))
                .collect::<Result<Vec<_>>>()?;
            Tensor::cat(&parts, 0)?
        };
        let repeat_for_guidance = |t: Tensor| -> Result<Tensor> {
            if halves == 2 {
                Tensor::cat(&[&t, &t], 0)
            } else {
                Ok(t)
            }
        };
        let latents = repeat_for_guidance(x.clone())?.to_dtype(self.dtype)?;
        let ts = Tensor::full(t as f32, halves * images, x.device())?;
        let control = super::control::residuals(
            &self.controls,
            &ControlInput {
                sample: &latents,
                timesteps: &ts,
                context: &context,
                images,
                guided: halves == 2,
            },
            at,
        )
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let input = match &self.conditioning {
            Some(extra) => {
                let extra = repeat_for_guidance(per_image(extra)?)?.to_dtype(self.dtype)?;
                Tensor::cat(&[&latents, &extra], 1)?
            }
            None => latents,
        };
        let out = self
            .unet
            .forward_controlled(&input, &ts, &context, control.as_ref())?
            .to_dtype(DType::F32)?;
        if halves == 2 {
            let uncond = out.narrow(0, 0, images)?;
            let cond = out.narrow(0, images, images)?;
            &uncond + ((cond - &uncond)? * self.scale)?
        } else {
            Ok(out)
        }
    }
}

/// Progress of a running job, handed to the caller after every model call.
pub struct StepInfo<'a> {
    pub step: usize,
    pub total: usize,
    pub latents: &'a Tensor,
}

/// Runs `sampler` from model call `start` (with `x` already noised for it) to the end. Returns
/// `None` when `on_step` breaks.
pub fn sample(
    denoiser: &dyn Denoiser,
    sampler: &mut dyn Sampler,
    mut x: Tensor,
    start: usize,
    rng: &mut TorchRng,
    on_step: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
) -> Result<Option<Tensor>> {
    let timesteps = sampler.timesteps().to_vec();
    let total = timesteps.len().saturating_sub(start);
    for (i, &t) in timesteps.iter().enumerate().skip(start) {
        let input = sampler.scale_model_input(&x, i)?;
        let at = CallIndex {
            call: i - start,
            calls: total,
        };
        let output = denoiser.predict(&input, t, at)?;
        x = sampler.step(&output, i, &x, rng)?;
        if on_step(StepInfo {
            step: i + 1 - start,
            total,
            latents: &x,
        })
        .is_break()
        {
            return Ok(None);
        }
    }
    Ok(Some(x))
}
