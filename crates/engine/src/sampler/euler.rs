//! Euler (Karras et al. 2022, Algorithm 2 without churn) as diffusers' `EulerDiscreteScheduler`.

use candle_core::{Result, Tensor};

use super::schedule::{Prediction, TimestepSpacing, TrainingSchedule};
use super::sigmas::{discrete, SigmaSchedule};
use super::{denoised_sigma, scale_sigma, NoiseLevel, Sampler};
use crate::rng::TorchRng;

pub struct Euler {
    s: SigmaSchedule,
    prediction: Prediction,
    init_sigma: f64,
}

/// diffusers' initial σ for the discrete σ samplers: the largest σ, or √(σ²+1) of it for
/// "leading" spacing.
pub fn init_sigma(s: &SigmaSchedule, spacing: TimestepSpacing) -> f64 {
    let max = s.sigmas.iter().copied().fold(0f32, f32::max) as f64;
    match spacing {
        TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
        TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
    }
}

impl Euler {
    pub fn new(
        schedule: &TrainingSchedule,
        steps: usize,
        prediction: Prediction,
        karras: bool,
    ) -> Self {
        let (s, spacing) = discrete(schedule, steps, karras);
        let init_sigma = init_sigma(&s, spacing);
        Self {
            s,
            prediction,
            init_sigma,
        }
    }
}

impl Sampler for Euler {
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
        _rng: &mut TorchRng,
    ) -> Result<Tensor> {
        let sigma = self.s.sigmas[i] as f64;
        let x0 = denoised_sigma(model_output, x, sigma, self.prediction)?;
        let derivative = ((x - x0)? / sigma)?;
        x + (derivative * (self.s.sigmas[i + 1] as f64 - sigma))?
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
