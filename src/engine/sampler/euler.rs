//! Euler (Karras et al. 2022, Algorithm 2 without churn) as diffusers' `EulerDiscreteScheduler`:
//! "linspace" timesteps, sigmas interpolated from the training schedule.

use candle_core::{Result, Tensor};

use super::schedule::{interp, spaced_timesteps, Prediction, TimestepSpacing, TrainingSchedule};
use super::Sampler;
use crate::engine::rng::TorchRng;

pub struct Euler {
    timesteps: Vec<f64>,
    /// One more than the timesteps: the last is 0.
    sigmas: Vec<f32>,
    prediction: Prediction,
    init_sigma: f64,
}

impl Euler {
    pub fn new(schedule: &TrainingSchedule, steps: usize, prediction: Prediction) -> Self {
        let spacing = schedule.timestep_spacing.unwrap_or(TimestepSpacing::Linspace);
        let timesteps = spaced_timesteps(schedule, steps, spacing);
        let train_sigmas = schedule.sigmas();
        let mut sigmas: Vec<f32> = timesteps.iter().map(|&t| interp(t, &train_sigmas) as f32).collect();
        sigmas.push(0.0);
        let max = sigmas.iter().copied().fold(0f32, f32::max) as f64;
        let init_sigma = match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        };
        Self { timesteps, sigmas, prediction, init_sigma }
    }
}

/// The denoised estimate x̂₀ from a model output at noise level σ (k-diffusion's convention).
pub fn denoised(model_output: &Tensor, x: &Tensor, sigma: f32, prediction: Prediction) -> Result<Tensor> {
    match prediction {
        Prediction::Epsilon => x - (model_output * sigma as f64)?,
        Prediction::V => {
            let s2 = sigma * sigma + 1.0;
            (model_output * (-sigma / s2.sqrt()) as f64)? + (x / s2 as f64)?
        }
    }
}

impl Sampler for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_sigma
    }

    fn scale_model_input(&self, x: &Tensor, i: usize) -> Result<Tensor> {
        let s = self.sigmas[i];
        x / ((s * s + 1.0).sqrt() as f64)
    }

    fn step(&mut self, model_output: &Tensor, i: usize, x: &Tensor, _rng: &mut TorchRng) -> Result<Tensor> {
        let sigma = self.sigmas[i];
        let x0 = denoised(model_output, x, sigma, self.prediction)?;
        let derivative = ((x - x0)? / sigma as f64)?;
        x + (derivative * (self.sigmas[i + 1] - sigma) as f64)?
    }
}
