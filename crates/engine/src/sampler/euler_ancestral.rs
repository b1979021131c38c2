//! Euler ancestral as diffusers' `EulerAncestralDiscreteScheduler`: an Euler step down to
//! σ_down, then fresh noise of σ_up drawn from the job's generator.

use candle_core::{Result, Tensor};

use super::euler::init_sigma;
use super::schedule::{Prediction, TrainingSchedule};
use super::sigmas::{discrete, SigmaSchedule};
use super::{denoised_sigma, scale_sigma, NoiseLevel, Sampler};
use crate::rng::TorchRng;

pub struct EulerAncestral {
    s: SigmaSchedule,
    prediction: Prediction,
    init_sigma: f64,
}

impl EulerAncestral {
    pub fn new(schedule: &TrainingSchedule, steps: usize, prediction: Prediction) -> Self {
        let (s, spacing) = discrete(schedule, steps, false);
        let init_sigma = init_sigma(&s, spacing);
        Self {
            s,
            prediction,
            init_sigma,
        }
    }
}

impl Sampler for EulerAncestral {
    fn timesteps(&self) -> &[f64] {
        &self.s.timesteps
    }

    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.s.sigmas)
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_sigma
    }

    fn scale_model_input(&self, x: &Tensor, i: usize) -> Result<Tensor> {
        scale_sigma(x, self.s.sigmas[i])
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        x: &Tensor,
        rng: &mut TorchRng,
    ) -> Result<Tensor> {
        let from = self.s.sigmas[i];
        let to = self.s.sigmas[i + 1];
        // In f32, as diffusers computes them from its f32 σ tensor.
        let sigma_up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let sigma_down = (to * to - sigma_up * sigma_up).sqrt();
        let x0 = denoised_sigma(model_output, x, from as f64, self.prediction)?;
        let derivative = ((x - x0)? / from as f64)?;
        let prev = (x + (derivative * (sigma_down - from) as f64)?)?;
        let noise = rng.randn_like(model_output)?;
        prev + (noise * sigma_up as f64)?
    }

    fn noise_level(&self, i: usize) -> Option<NoiseLevel> {
        Some(NoiseLevel {
            sigma: self.s.sigmas[i] as f64,
            variance_preserving: false,
        })
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        x0 + (noise * self.s.sigmas[i] as f64)?
    }
}
