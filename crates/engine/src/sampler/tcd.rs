//! Trajectory Consistency Distillation's sampler as diffusers' `TCDScheduler`: the timesteps of
//! LCM (picked from the 50-step distillation grid), each step an estimate of x₀ and ε carried to
//! an intermediate timestep `s = ⌊(1 − γ)·t_prev⌋`, then, for γ > 0 and before the last step,
//! renoised forward to `t_prev` with fresh noise. γ (the job's eta, 0 to 1) sets how much of
//! each step is fresh noise: 0 is deterministic. For TCD-LoRAs in 2–8 steps at CFG 1.

use candle_core::{Result, Tensor};

use super::lcm::consistency_timesteps;
use super::schedule::{Prediction, TrainingSchedule};
use super::{add_noise_alpha, denoised_alpha, lin, Sampler};
use crate::rng::TorchRng;

pub struct Tcd {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f32>,
    prediction: Prediction,
    gamma: f64,
}

impl Tcd {
    /// `steps` at most the distillation grid's (the job refuses more); `gamma` in [0, 1].
    pub fn new(
        schedule: &TrainingSchedule,
        steps: usize,
        prediction: Prediction,
        gamma: f64,
    ) -> Self {
        Self {
            timesteps: consistency_timesteps(schedule.num_train_timesteps, steps),
            alphas_cumprod: schedule.alphas_cumprod(),
            prediction,
            gamma: gamma.clamp(0.0, 1.0),
        }
    }

    fn alpha(&self, t: usize) -> f64 {
        self.alphas_cumprod[t.min(self.alphas_cumprod.len() - 1)] as f64
    }
}

impl Sampler for Tcd {
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
        // After the last step the trajectory ends at timestep 0, not at a clean x₀.
        let last = i + 1 >= self.timesteps.len();
        let prev = if last {
            0
        } else {
            self.timesteps[i + 1] as usize
        };
        // In f32 as torch computes it: in f64 the floor differs for some (γ, t_prev).
        let s = ((1.0 - self.gamma) as f32 * prev as f32).floor() as usize;
        let (x0, eps) = denoised_alpha(model_output, x, self.alpha(t), self.prediction)?;
        let a_s = self.alpha(s);
        let x_s = add_noise_alpha(&x0, &eps, a_s)?;
        if self.gamma <= 0.0 || last {
            return Ok(x_s);
        }
        let ratio = self.alpha(prev) / a_s;
        let noise = rng.randn_like(&x_s)?;
        lin(&x_s, ratio.sqrt(), &noise, (1.0 - ratio).sqrt())
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        add_noise_alpha(x0, noise, self.alpha(self.timesteps[i] as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// With γ = 0 the intermediate timestep is the next one: a deterministic DDIM step.
    #[test]
    fn gamma_zero_is_a_ddim_step() {
        let schedule = TrainingSchedule::default();
        let mut tcd = Tcd::new(&schedule, 2, Prediction::Epsilon, 0.0);
        let x = Tensor::ones((1, 4, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let eps = (x.clone() * 0.5).unwrap();
        let mut rng = TorchRng::new(0);
        let a = tcd.step(&eps, 0, &x, &mut rng).unwrap();
        let (t, prev) = (tcd.timesteps[0] as usize, tcd.timesteps[1] as usize);
        let (x0, _) = denoised_alpha(&eps, &x, tcd.alpha(t), Prediction::Epsilon).unwrap();
        let ddim = add_noise_alpha(&x0, &eps, tcd.alpha(prev)).unwrap();
        let diff = (a - ddim)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "{diff}");
    }
}
