//! The Latent Consistency Model sampler as diffusers' `LCMScheduler`: timesteps picked from the
//! 50-step grid the model was distilled on (`original_inference_steps`), each step a
//! consistency-function estimate of x₀ (the boundary-condition scalings c_skip, c_out) renoised
//! to the next timestep with fresh noise, the last step returning the estimate itself. For LCM
//! models and LCM-LoRAs, in 2–8 steps at CFG 1–2.

use candle_core::{Result, Tensor};

use super::schedule::{Prediction, TrainingSchedule};
use super::{add_noise_alpha, denoised_alpha, lin, Sampler};
use crate::rng::TorchRng;

/// The step count the consistency models were distilled with (diffusers' default).
pub const ORIGINAL_INFERENCE_STEPS: usize = 50;
/// σ_data and the timestep scaling of the boundary condition (diffusers' defaults).
const SIGMA_DATA: f64 = 0.5;
const TIMESTEP_SCALING: f64 = 10.0;

pub struct Lcm {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    prediction: Prediction,
}

impl Lcm {
    /// `steps` at most `ORIGINAL_INFERENCE_STEPS` (the job refuses more).
    pub fn new(schedule: &TrainingSchedule, steps: usize, prediction: Prediction) -> Self {
        let alphas_cumprod = schedule.alphas_cumprod();
        let final_alpha_cumprod = if schedule.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        Self {
            timesteps: consistency_timesteps(schedule.num_train_timesteps, steps),
            alphas_cumprod,
            final_alpha_cumprod,
            prediction,
        }
    }
}

/// diffusers' `set_timesteps` (LCM's and TCD's): the original grid `k·i − 1` (k = train steps / 50), descending,
/// sampled at `floor(linspace(0, 50, steps, endpoint=False))`.
pub(super) fn consistency_timesteps(train: usize, steps: usize) -> Vec<f64> {
    let original = ORIGINAL_INFERENCE_STEPS;
    let k = (train / original).max(1);
    let grid: Vec<usize> = (1..=original)
        .rev()
        .map(|i| (i * k).saturating_sub(1))
        .collect();
    let steps = steps.clamp(1, original);
    (0..steps)
        .map(|j| {
            let index = (j as f64 * original as f64 / steps as f64).floor() as usize;
            grid[index.min(original - 1)] as f64
        })
        .collect()
}

impl Sampler for Lcm {
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
        let t = self.timesteps[i];
        let a_t = self.alphas_cumprod[t as usize] as f64;
        let (x0, _) = denoised_alpha(model_output, x, a_t, self.prediction)?;
        let scaled = t * TIMESTEP_SCALING;
        let c_skip = SIGMA_DATA * SIGMA_DATA / (scaled * scaled + SIGMA_DATA * SIGMA_DATA);
        let c_out = scaled / (scaled * scaled + SIGMA_DATA * SIGMA_DATA).sqrt();
        let denoised = lin(&x0, c_out, x, c_skip)?;
        let Some(&next) = self.timesteps.get(i + 1) else {
            return Ok(denoised);
        };
        let a_prev = if next >= 0.0 {
            self.alphas_cumprod[next as usize]
        } else {
            self.final_alpha_cumprod
        } as f64;
        let noise = rng.randn_like(&denoised)?;
        lin(&denoised, a_prev.sqrt(), &noise, (1.0 - a_prev).sqrt())
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        add_noise_alpha(
            x0,
            noise,
            self.alphas_cumprod[self.timesteps[i] as usize] as f64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps_as_diffusers_picks_them() {
        // LCMScheduler().set_timesteps(4).timesteps, and 1 and 8 steps.
        assert_eq!(consistency_timesteps(1000, 4), [999.0, 759.0, 499.0, 259.0]);
        assert_eq!(consistency_timesteps(1000, 1), [999.0]);
        assert_eq!(
            consistency_timesteps(1000, 8),
            [999.0, 879.0, 759.0, 639.0, 499.0, 379.0, 259.0, 139.0]
        );
    }
}
