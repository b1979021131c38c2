//! Linear multistep (order 4) as diffusers' `LMSDiscreteScheduler`: the last four derivatives
//! combined with coefficients that integrate their Lagrange polynomials over the step.

use candle_core::{Result, Tensor};

use super::euler::init_sigma;
use super::schedule::{Prediction, TrainingSchedule};
use super::sigmas::{discrete, SigmaSchedule};
use super::{denoised_sigma, scale_sigma, NoiseLevel, Sampler};
use crate::rng::TorchRng;

const ORDER: usize = 4;

pub struct Lms {
    s: SigmaSchedule,
    prediction: Prediction,
    init_sigma: f64,
    derivatives: Vec<Tensor>,
}

impl Lms {
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
            derivatives: vec![],
        }
    }

    /// ∫ from σ_t to σ_{t+1} of the Lagrange basis polynomial of point `current` (0: σ_t,
    /// 1: σ_{t−1}, …) over the last `order` σs. Gauss–Legendre with 4 nodes is exact here.
    fn coefficient(&self, order: usize, t: usize, current: usize) -> f64 {
        let sig = |k: usize| self.s.sigmas[t - k] as f64;
        let basis = |tau: f64| -> f64 {
            (0..order)
                .filter(|&k| k != current)
                .map(|k| (tau - sig(k)) / (sig(current) - sig(k)))
                .product()
        };
        let (a, b) = (self.s.sigmas[t] as f64, self.s.sigmas[t + 1] as f64);
        const NODES: [(f64, f64); 4] = [
            (-0.861_136_311_594_052_6, 0.347_854_845_137_453_86),
            (-0.339_981_043_584_856_26, 0.652_145_154_862_546_1),
            (0.339_981_043_584_856_26, 0.652_145_154_862_546_1),
            (0.861_136_311_594_052_6, 0.347_854_845_137_453_86),
        ];
        let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
        NODES
            .iter()
            .map(|(x, w)| w * basis(mid + half * x))
            .sum::<f64>()
            * half
    }
}

impl Sampler for Lms {
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
        self.derivatives.push(((x - x0)? / sigma)?);
        if self.derivatives.len() > ORDER {
            self.derivatives.remove(0);
        }
        // diffusers takes the order from the step index, not from the derivatives it has: after
        // img2img skips steps, the first steps use high-order coefficients on fewer derivatives.
        let order = (i + 1).min(ORDER);
        let mut out = x.clone();
        for (current, d) in self.derivatives.iter().rev().take(order).enumerate() {
            out = (out + (d * self.coefficient(order, i, current))?)?;
        }
        Ok(out)
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
