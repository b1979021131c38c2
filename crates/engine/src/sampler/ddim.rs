//! DDIM (Song et al. 2020) as diffusers' `DDIMScheduler`: "leading" timesteps, the final step
//! to ᾱ_0 (not 1, `set_alpha_to_one = false` in SD's configs), optional η noise.

use candle_core::{Result, Tensor};

use super::schedule::{spaced_timesteps, Prediction, TimestepSpacing, TrainingSchedule};
use super::{add_noise_alpha, denoised_alpha, lin, NoiseLevel, Sampler};
use crate::rng::TorchRng;

pub struct Ddim {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    step_ratio: usize,
    prediction: Prediction,
    eta: f32,
}

impl Ddim {
    pub fn new(
        schedule: &TrainingSchedule,
        steps: usize,
        prediction: Prediction,
        eta: f32,
    ) -> Self {
        let alphas_cumprod = schedule.alphas_cumprod();
        let final_alpha_cumprod = if schedule.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let spacing = schedule
            .timestep_spacing
            .unwrap_or(TimestepSpacing::Leading);
        Self {
            timesteps: spaced_timesteps(schedule, steps, spacing),
            alphas_cumprod,
            final_alpha_cumprod,
            step_ratio: schedule.num_train_timesteps / steps,
            prediction,
            eta,
        }
    }
}

impl Sampler for Ddim {
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
        let t = self.timesteps[i] as usize;
        let prev = t as i64 - self.step_ratio as i64;
        let a_t = self.alphas_cumprod[t];
        let a_prev = if prev >= 0 {
            self.alphas_cumprod[prev as usize]
        } else {
            self.final_alpha_cumprod
        };
        let b_t = 1.0 - a_t;
        let (x0, eps) = denoised_alpha(model_output, x, a_t as f64, self.prediction)?;
        let variance = (1.0 - a_prev) / b_t * (1.0 - a_t / a_prev);
        let std_dev = self.eta * variance.sqrt();
        let prev_sample = lin(
            &x0,
            a_prev.sqrt() as f64,
            &eps,
            (1.0 - a_prev - std_dev * std_dev).sqrt() as f64,
        )?;
        if self.eta > 0.0 {
            let noise = rng.randn_like(&prev_sample)?;
            prev_sample + (noise * std_dev as f64)?
        } else {
            Ok(prev_sample)
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
                    self.final_alpha_cumprod
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
