//! Heun's method (Karras et al. 2022, Algorithm 1 without churn) as diffusers'
//! `HeunDiscreteScheduler`: every σ but the first and last appears twice, once for the Euler
//! predictor and once for the trapezoidal corrector; the last step is plain Euler.

use candle_core::{Result, Tensor};

use super::euler::init_sigma;
use super::schedule::{Prediction, TrainingSchedule};
use super::sigmas::discrete;
use super::{denoised_sigma, scale_sigma, Sampler};
use crate::rng::TorchRng;

pub struct Heun {
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    prediction: Prediction,
    init_sigma: f64,
    /// Between predictor and corrector: the predictor's derivative, step size and start.
    pending: Option<(Tensor, f64, Tensor)>,
}

impl Heun {
    pub fn new(
        schedule: &TrainingSchedule,
        steps: usize,
        prediction: Prediction,
        karras: bool,
    ) -> Self {
        let (s, spacing) = discrete(schedule, steps, karras);
        let init_sigma = init_sigma(&s, spacing);
        let n = s.sigmas.len();
        let mut sigmas = vec![s.sigmas[0]];
        for &sig in &s.sigmas[1..n - 1] {
            sigmas.extend([sig, sig]);
        }
        sigmas.push(s.sigmas[n - 1]);
        let mut timesteps = vec![s.timesteps[0]];
        for &t in &s.timesteps[1..] {
            timesteps.extend([t, t]);
        }
        Self {
            timesteps,
            sigmas,
            prediction,
            init_sigma,
            pending: None,
        }
    }
}

impl Sampler for Heun {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.sigmas)
    }

    fn order(&self) -> usize {
        2
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_sigma
    }

    fn scale_model_input(&self, x: &Tensor, i: usize) -> Result<Tensor> {
        scale_sigma(x, self.sigmas[i])
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        x: &Tensor,
        _rng: &mut TorchRng,
    ) -> Result<Tensor> {
        match self.pending.take() {
            None => {
                let (sigma, next) = (self.sigmas[i] as f64, self.sigmas[i + 1] as f64);
                let x0 = denoised_sigma(model_output, x, sigma, self.prediction)?;
                let derivative = ((x - x0)? / sigma)?;
                let dt = next - sigma;
                let out = (x + (&derivative * dt)?)?;
                self.pending = Some((derivative, dt, x.clone()));
                Ok(out)
            }
            Some((first, dt, start)) => {
                let next = self.sigmas[i] as f64;
                let x0 = denoised_sigma(model_output, x, next, self.prediction)?;
                let second = ((x - x0)? / next)?;
                let derivative = ((first + second)? / 2.0)?;
                start + (derivative * dt)?
            }
        }
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        x0 + (noise * self.sigmas[i] as f64)?
    }
}
