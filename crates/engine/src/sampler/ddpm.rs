//! DDPM ancestral sampling (Ho et al. 2020) as diffusers' `DDPMScheduler` with SD's settings:
//! "leading" timesteps, fixed-small variance, no clipping; noise drawn at every step.

use candle_core::{Result, Tensor};

use super::schedule::{spaced_timesteps, Prediction, TimestepSpacing, TrainingSchedule};
use super::{add_noise_alpha, denoised_alpha, lin, NoiseLevel, Sampler};
use crate::rng::TorchRng;

pub struct Ddpm {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f32>,
    step_ratio: usize,
    prediction: Prediction,
}

impl Ddpm {
    pub fn new(schedule: &TrainingSchedule, steps: usize, prediction: Prediction) -> Self {
        let spacing = schedule
            .timestep_spacing
            .unwrap_or(TimestepSpacing::Leading);
        Self {
            timesteps: spaced_timesteps(schedule, steps, spacing),
            alphas_cumprod: schedule.alphas_cumprod(),
            step_ratio: schedule.num_train_timesteps / steps,
            prediction,
        }
    }
}

impl Sampler for Ddpm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        x: &Tensor,
        rng: &mut TorchRng,
    ) -> Result<Tensor> {
        let t = self.timesteps[i] as i64;
        let prev = t - self.step_ratio as i64;
        let a_t = self.alphas_cumprod[t as usize];
        // The step past t = 0 goes to ᾱ = 1 (DDPM's `one`), not to ᾱ_0.
        let a_prev = if prev >= 0 {
            self.alphas_cumprod[prev as usize]
        } else {
            1.0
        };
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let current_alpha = a_t / a_prev;
        let current_beta = 1.0 - current_alpha;
        let (x0, _) = denoised_alpha(model_output, x, a_t as f64, self.prediction)?;
        let x0_coeff = a_prev.sqrt() * current_beta / b_t;
        let x_coeff = current_alpha.sqrt() * b_prev / b_t;
        let mean = lin(&x0, x0_coeff as f64, x, x_coeff as f64)?;
        if t > 0 {
            let noise = rng.randn_like(model_output)?;
            let variance = (b_prev / b_t * current_beta).max(1e-20);
            mean + (noise * variance.sqrt() as f64)?
        } else {
            Ok(mean)
        }
    }

    fn noise_level(&self, i: usize) -> Option<NoiseLevel> {
        let alpha_bar = match self.timesteps.get(i) {
            Some(&t) => self.alphas_cumprod[t as usize],
            None => {
                let last = *self.timesteps.last()? as i64 - self.step_ratio as i64;
                if last >= 0 {
                    self.alphas_cumprod[last as usize]
                } else {
                    1.0
                }
            }
        };
        Some(NoiseLevel::from_alpha_bar(alpha_bar as f64))
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        add_noise_alpha(
            x0,
            noise,
            self.alphas_cumprod[self.timesteps[i] as usize] as f64,
        )
    }
}
