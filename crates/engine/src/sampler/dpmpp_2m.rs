//! DPM-Solver++(2M) (Lu et al. 2022) as diffusers' `DPMSolverMultistepScheduler` with its
//! defaults: data prediction, second order, midpoint solver, first order at the final step.

use candle_core::{Result, Tensor};

use super::schedule::{Prediction, TrainingSchedule};
use super::sigmas::{alpha_sigma, lambda, multistep, SigmaSchedule};
use super::{lin, NoiseLevel, Sampler};
use crate::rng::TorchRng;

pub struct DpmPp2m {
    s: SigmaSchedule,
    prediction: Prediction,
    /// x̂₀ of the previous step.
    previous: Option<Tensor>,
    lower_order_nums: usize,
}

impl DpmPp2m {
    pub fn new(
        schedule: &TrainingSchedule,
        steps: usize,
        prediction: Prediction,
        karras: bool,
    ) -> Self {
        Self {
            s: multistep(schedule, steps, karras),
            prediction,
            previous: None,
            lower_order_nums: 0,
        }
    }
}

/// x̂₀ from a model output on the variance-preserving sample at σ.
pub fn data_prediction(
    model_output: &Tensor,
    x: &Tensor,
    sigma: f64,
    prediction: Prediction,
) -> Result<Tensor> {
    let (alpha, sigma_t) = alpha_sigma(sigma);
    match prediction {
        Prediction::Epsilon => lin(x, 1.0 / alpha, model_output, -sigma_t / alpha),
        Prediction::V => lin(x, alpha, model_output, -sigma_t),
    }
}

/// Adds noise at σ in the variance-preserving form α·x₀ + σ_t·ε.
pub fn add_noise_vp(x0: &Tensor, noise: &Tensor, sigma: f64) -> Result<Tensor> {
    let (alpha, sigma_t) = alpha_sigma(sigma);
    lin(x0, alpha, noise, sigma_t)
}

impl Sampler for DpmPp2m {
    fn timesteps(&self) -> &[f64] {
        &self.s.timesteps
    }

    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.s.sigmas)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        x: &Tensor,
        _rng: &mut TorchRng,
    ) -> Result<Tensor> {
        let steps = self.s.timesteps.len();
        let (sigma_s0, sigma_t) = (self.s.sigmas[i] as f64, self.s.sigmas[i + 1] as f64);
        let x0 = data_prediction(model_output, x, sigma_s0, self.prediction)?;
        let (alpha_t, sig_t) = alpha_sigma(sigma_t);
        let (_, sig_s0) = alpha_sigma(sigma_s0);
        let h = lambda(sigma_t) - lambda(sigma_s0);
        let coeff = alpha_t * ((-h).exp() - 1.0);
        // The final σ is 0, so diffusers' `final_sigmas_type = "zero"` forces first order there.
        let final_step = i == steps - 1;
        let second_order = self.lower_order_nums >= 1 && !final_step;
        let out = match (&self.previous, second_order) {
            (Some(m1), true) => {
                let sigma_s1 = self.s.sigmas[i - 1] as f64;
                let r0 = (lambda(sigma_s0) - lambda(sigma_s1)) / h;
                let d1 = ((&x0 - m1)? / r0)?;
                let base = lin(x, sig_t / sig_s0, &x0, -coeff)?;
                (base - (d1 * (0.5 * coeff))?)?
            }
            _ => lin(x, sig_t / sig_s0, &x0, -coeff)?,
        };
        self.previous = Some(x0);
        if self.lower_order_nums < 2 {
            self.lower_order_nums += 1;
        }
        Ok(out)
    }

    fn noise_level(&self, i: usize) -> Option<NoiseLevel> {
        Some(NoiseLevel {
            sigma: self.s.sigmas[i] as f64,
            variance_preserving: true,
        })
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        add_noise_vp(x0, noise, self.s.sigmas[i] as f64)
    }
}
