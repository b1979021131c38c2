//! UniPC (Zhao et al. 2023) as diffusers' `UniPCMultistepScheduler` with its defaults: data
//! prediction, second order, the B(h) = eᴴ − 1 variant, a corrector after every step but the
//! first, first order at the final step.

use candle_core::{Result, Tensor};

use super::dpmpp_2m::{add_noise_vp, data_prediction};
use super::schedule::{Prediction, TrainingSchedule};
use super::sigmas::{alpha_sigma, lambda, multistep, SigmaSchedule};
use super::{lin, NoiseLevel, Sampler};
use crate::rng::TorchRng;

const SOLVER_ORDER: usize = 2;

pub struct UniPc {
    s: SigmaSchedule,
    prediction: Prediction,
    /// x̂₀ of the last `SOLVER_ORDER` steps, oldest first.
    outputs: Vec<Tensor>,
    last_sample: Option<Tensor>,
    this_order: usize,
    lower_order_nums: usize,
}

impl UniPc {
    pub fn new(
        schedule: &TrainingSchedule,
        steps: usize,
        prediction: Prediction,
        karras: bool,
    ) -> Self {
        Self {
            s: multistep(schedule, steps, karras),
            prediction,
            outputs: vec![],
            last_sample: None,
            this_order: 1,
            lower_order_nums: 0,
        }
    }

    fn sigma(&self, i: usize) -> f64 {
        self.s.sigmas[i] as f64
    }

    /// hφ₁ = e^{−h} − 1 and the right-hand side b of UniPC's linear system, for `order` terms.
    fn phi_b(h: f64, order: usize) -> (f64, Vec<f64>) {
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let b_h = hh.exp_m1();
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial = 1.0;
        let mut b = vec![];
        for i in 1..=order {
            b.push(h_phi_k * factorial / b_h);
            factorial *= (i + 1) as f64;
            h_phi_k = h_phi_k / hh - 1.0 / factorial;
        }
        (h_phi_1, b)
    }

    /// The predictor from the sample at step `i` to step `i + 1`.
    fn predict(&self, x: &Tensor, i: usize, order: usize) -> Result<Tensor> {
        let m0 = &self.outputs[self.outputs.len() - 1];
        let (sigma_t, sigma_s0) = (self.sigma(i + 1), self.sigma(i));
        let (alpha_t, sig_t) = alpha_sigma(sigma_t);
        let (_, sig_s0) = alpha_sigma(sigma_s0);
        let h = lambda(sigma_t) - lambda(sigma_s0);
        let (h_phi_1, _) = Self::phi_b(h, order);
        let b_h = (-h).exp_m1();
        let base = lin(x, sig_t / sig_s0, m0, -alpha_t * h_phi_1)?;
        if order < 2 {
            return Ok(base);
        }
        // Second order uses the fixed ρ = ½ (diffusers' simplification for order 2).
        let m1 = &self.outputs[self.outputs.len() - 2];
        let rk = (lambda(self.sigma(i - 1)) - lambda(sigma_s0)) / h;
        let d1 = ((m1 - m0)? / rk)?;
        base - (d1 * (alpha_t * b_h * 0.5))?
    }

    /// The corrector: refines the sample just predicted for step `i` using the model output
    /// there (`model_t`, as x̂₀).
    fn correct(
        &self,
        model_t: &Tensor,
        last_sample: &Tensor,
        i: usize,
        order: usize,
    ) -> Result<Tensor> {
        let m0 = &self.outputs[self.outputs.len() - 1];
        let (sigma_t, sigma_s0) = (self.sigma(i), self.sigma(i - 1));
        let (alpha_t, sig_t) = alpha_sigma(sigma_t);
        let (_, sig_s0) = alpha_sigma(sigma_s0);
        let h = lambda(sigma_t) - lambda(sigma_s0);
        let (h_phi_1, b) = Self::phi_b(h, order);
        let b_h = (-h).exp_m1();
        let base = lin(last_sample, sig_t / sig_s0, m0, -alpha_t * h_phi_1)?;
        let d1_t = (model_t - m0)?;
        if order == 1 {
            return base - (d1_t * (alpha_t * b_h * 0.5))?;
        }
        // Order 2: solve [[1, 1], [r, 1]] ρ = b.
        let m1 = &self.outputs[self.outputs.len() - 2];
        let rk = (lambda(self.sigma(i - 2)) - lambda(sigma_s0)) / h;
        let d1 = ((m1 - m0)? / rk)?;
        let det = 1.0 - rk;
        let rho0 = (b[0] - b[1]) / det;
        let rho1 = (b[1] - rk * b[0]) / det;
        let corr = lin(&d1, rho0, &d1_t, rho1)?;
        base - (corr * (alpha_t * b_h))?
    }
}

impl Sampler for UniPc {
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
        let x0 = data_prediction(model_output, x, self.sigma(i), self.prediction)?;
        let sample = match self.last_sample.take() {
            Some(last) if i > 0 => self.correct(&x0, &last, i, self.this_order)?,
            _ => x.clone(),
        };
        self.outputs.push(x0);
        if self.outputs.len() > SOLVER_ORDER {
            self.outputs.remove(0);
        }
        let remaining = self.s.timesteps.len() - i;
        self.this_order = SOLVER_ORDER.min(remaining).min(self.lower_order_nums + 1);
        let out = self.predict(&sample, i, self.this_order)?;
        self.last_sample = Some(sample);
        if self.lower_order_nums < SOLVER_ORDER {
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
        add_noise_vp(x0, noise, self.sigma(i))
    }
}
