//! PNDM's pseudo linear multistep (PLMS) as diffusers' `PNDMScheduler` with
//! `skip_prk_steps = true` (SD's configuration): one extra evaluation at the second-to-last
//! timestep starts the linear multistep, whose order grows to 4.

use candle_core::{Result, Tensor};

use super::schedule::{spaced_timesteps, Prediction, TimestepSpacing, TrainingSchedule};
use super::{add_noise_alpha, lin, Sampler};
use crate::rng::TorchRng;

pub struct Pndm {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    step_ratio: usize,
    prediction: Prediction,
    ets: Vec<Tensor>,
    counter: usize,
    cur_sample: Option<Tensor>,
}

impl Pndm {
    pub fn new(schedule: &TrainingSchedule, steps: usize, prediction: Prediction) -> Self {
        let spacing = schedule
            .timestep_spacing
            .unwrap_or(TimestepSpacing::Leading);
        let base = spaced_timesteps(schedule, steps, spacing);
        // Ascending [t0 … t_{n−1}] becomes [t0 … t_{n−2}, t_{n−2}, t_{n−1}], then reversed.
        let mut ascending: Vec<f64> = base.iter().rev().copied().collect();
        if ascending.len() >= 2 {
            let repeat = ascending[ascending.len() - 2];
            ascending.insert(ascending.len() - 1, repeat);
        }
        let timesteps = ascending.into_iter().rev().collect();
        let alphas_cumprod = schedule.alphas_cumprod();
        let final_alpha_cumprod = if schedule.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        Self {
            timesteps,
            alphas_cumprod,
            final_alpha_cumprod,
            step_ratio: schedule.num_train_timesteps / steps,
            prediction,
            ets: vec![],
            counter: 0,
            cur_sample: None,
        }
    }

    fn alpha(&self, t: i64) -> f64 {
        if t >= 0 {
            let last = self.alphas_cumprod.len().saturating_sub(1);
            self.alphas_cumprod[(t as usize).min(last)] as f64
        } else {
            self.final_alpha_cumprod as f64
        }
    }

    /// Formula (9) of the PNDM paper: from `t` to `prev` given the combined ε.
    fn prev_sample(&self, x: &Tensor, t: i64, prev: i64, eps: &Tensor) -> Result<Tensor> {
        let (a_t, a_prev) = (self.alpha(t), self.alpha(prev));
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let eps = match self.prediction {
            Prediction::Epsilon => eps.clone(),
            Prediction::V => lin(eps, a_t.sqrt(), x, b_t.sqrt())?,
        };
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        lin(x, sample_coeff, &eps, -(a_prev - a_t) / denom)
    }
}

impl Sampler for Pndm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        x: &Tensor,
        _rng: &mut TorchRng,
    ) -> Result<Tensor> {
        let ratio = self.step_ratio as i64;
        let mut t = self.timesteps[i] as i64;
        let mut prev = t - ratio;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.remove(0);
            }
            self.ets.push(model_output.clone());
        } else {
            prev = t;
            t += ratio;
        }
        let n = self.ets.len();
        let (eps, sample) = if n == 1 && self.counter == 0 {
            self.cur_sample = Some(x.clone());
            (model_output.clone(), x.clone())
        } else if n == 1 && self.counter == 1 {
            let eps = ((model_output + &self.ets[0])? / 2.0)?;
            let sample = self.cur_sample.take().unwrap_or_else(|| x.clone());
            (eps, sample)
        } else if n == 2 {
            (lin(&self.ets[1], 1.5, &self.ets[0], -0.5)?, x.clone())
        } else if n == 3 {
            let e =
                ((lin(&self.ets[2], 23.0, &self.ets[1], -16.0)? + (&self.ets[0] * 5.0)?)? / 12.0)?;
            (e, x.clone())
        } else {
            let a = lin(&self.ets[n - 1], 55.0, &self.ets[n - 2], -59.0)?;
            let b = lin(&self.ets[n - 3], 37.0, &self.ets[n - 4], -9.0)?;
            (((a + b)? / 24.0)?, x.clone())
        };
        let out = self.prev_sample(&sample, t, prev, &eps)?;
        self.counter += 1;
        Ok(out)
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        add_noise_alpha(
            x0,
            noise,
            self.alphas_cumprod[self.timesteps[i] as usize] as f64,
        )
    }
}
