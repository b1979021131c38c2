//! The training noise schedule and the arithmetic samplers share, computed the way diffusers
//! computes it (in f32, cumulative products accumulated in f64 as torch does on the CPU), so
//! that timesteps and sigmas agree to the last bit that matters.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    V,
}

impl std::str::FromStr for Prediction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "epsilon" | "eps" => Ok(Prediction::Epsilon),
            "v" | "v_prediction" | "v-prediction" => Ok(Prediction::V),
            other => Err(format!(
                "unknown prediction type {other:?} (expected epsilon or v)"
            )),
        }
    }
}

impl std::fmt::Display for Prediction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Prediction::Epsilon => "epsilon",
            Prediction::V => "v",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    ScaledLinear,
    Linear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

impl TimestepSpacing {
    pub const ALL: [TimestepSpacing; 3] = [
        TimestepSpacing::Leading,
        TimestepSpacing::Trailing,
        TimestepSpacing::Linspace,
    ];

    /// diffusers' name, as scheduler configs write it.
    pub fn name(self) -> &'static str {
        match self {
            TimestepSpacing::Leading => "leading",
            TimestepSpacing::Trailing => "trailing",
            TimestepSpacing::Linspace => "linspace",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

/// What a model was trained with: diffusers' `scheduler_config.json`, or SD's defaults for
/// single files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrainingSchedule {
    #[serde(default = "thousand")]
    pub num_train_timesteps: usize,
    #[serde(default = "beta_start")]
    pub beta_start: f64,
    #[serde(default = "beta_end")]
    pub beta_end: f64,
    #[serde(default = "scaled_linear")]
    pub beta_schedule: BetaSchedule,
    #[serde(default = "one")]
    pub steps_offset: usize,
    #[serde(default)]
    pub set_alpha_to_one: bool,
    /// `None`: each sampler's own default, as when diffusers builds it `from_config`.
    #[serde(default)]
    pub timestep_spacing: Option<TimestepSpacing>,
}

fn thousand() -> usize {
    1000
}
fn beta_start() -> f64 {
    0.00085
}
fn beta_end() -> f64 {
    0.012
}
fn scaled_linear() -> BetaSchedule {
    BetaSchedule::ScaledLinear
}
fn one() -> usize {
    1
}

impl Default for TrainingSchedule {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            steps_offset: 1,
            set_alpha_to_one: false,
            timestep_spacing: None,
        }
    }
}

/// The most training timesteps a scheduler config may declare: SD uses 1000; the bound keeps
/// the per-timestep tables small whatever a config says.
pub const MAX_TRAIN_TIMESTEPS: usize = 10_000;

impl TrainingSchedule {
    /// Refuses a schedule no model was trained with and the samplers cannot run: too few or
    /// too many timesteps, betas outside (0, 1) or decreasing, a non-finite value.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.num_train_timesteps;
        if !(2..=MAX_TRAIN_TIMESTEPS).contains(&n) {
            return Err(format!(
                "num_train_timesteps {n} is not between 2 and {MAX_TRAIN_TIMESTEPS}"
            ));
        }
        let (a, b) = (self.beta_start, self.beta_end);
        let ok = a.is_finite() && b.is_finite() && 0.0 < a && a <= b && b < 1.0;
        if !ok {
            return Err(format!(
                "betas from {a} to {b}: they must rise within (0, 1)"
            ));
        }
        if self.steps_offset >= n {
            return Err(format!(
                "steps_offset {} is not below num_train_timesteps {n}",
                self.steps_offset
            ));
        }
        Ok(())
    }

    pub fn betas(&self) -> Vec<f32> {
        let n = self.num_train_timesteps;
        match self.beta_schedule {
            BetaSchedule::Linear => linspace_f32(self.beta_start as f32, self.beta_end as f32, n),
            BetaSchedule::ScaledLinear => linspace_f32(
                self.beta_start.sqrt() as f32,
                self.beta_end.sqrt() as f32,
                n,
            )
            .into_iter()
            .map(|b| b * b)
            .collect(),
        }
    }

    /// ᾱ_t for t = 0 … num_train_timesteps − 1.
    pub fn alphas_cumprod(&self) -> Vec<f32> {
        let mut acc = 1f64;
        self.betas()
            .into_iter()
            .map(|b| {
                acc *= (1f32 - b) as f64;
                acc as f32
            })
            .collect()
    }

    /// σ_t = √((1 − ᾱ_t) / ᾱ_t) for every training timestep (f32, as diffusers has them).
    pub fn sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod()
            .into_iter()
            .map(|a| ((1f32 - a) / a).sqrt())
            .collect()
    }
}

/// `torch.linspace(start, end, n, dtype=float32)`: the first half counts up from `start`, the
/// second half down from `end`.
pub fn linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (n - i - 1) as f32
            }
        })
        .collect()
}

/// `np.linspace(start, end, n)` in f64.
pub fn linspace_f64(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n)
        .map(|i| {
            if i == n - 1 {
                end
            } else {
                start + step * i as f64
            }
        })
        .collect()
}

/// `np.interp(x, arange(len(ys)), ys)`.
pub fn interp(x: f64, ys: &[f32]) -> f64 {
    if x <= 0.0 {
        return ys[0] as f64;
    }
    let last = ys.len() - 1;
    if x >= last as f64 {
        return ys[last] as f64;
    }
    let i = x.floor() as usize;
    let frac = x - i as f64;
    let (a, b) = (ys[i] as f64, ys[i + 1] as f64);
    // numpy's formula for the slope form, which it uses between grid points.
    (b - a) * frac + a
}

/// Integer training timesteps spaced over `steps` inference steps, as diffusers' discrete
/// schedulers space them, highest first.
pub fn spaced_timesteps(
    schedule: &TrainingSchedule,
    steps: usize,
    spacing: TimestepSpacing,
) -> Vec<f64> {
    let n = schedule.num_train_timesteps;
    match spacing {
        TimestepSpacing::Leading => {
            let ratio = n / steps;
            // With as many steps as training timesteps the offset would reach past the last
            // one (diffusers fails there); the last timestep is taken instead.
            (0..steps)
                .rev()
                .map(|i| (i * ratio + schedule.steps_offset).min(n - 1) as f64)
                .collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = n as f64 / steps as f64;
            let mut t: Vec<f64> = (1..=steps)
                .rev()
                .map(|i| (i as f64 * ratio).round() - 1.0)
                .collect();
            t.iter_mut().for_each(|v| *v = v.max(0.0));
            t
        }
        TimestepSpacing::Linspace => linspace_f64(0.0, (n - 1) as f64, steps)
            .into_iter()
            .rev()
            .map(|t| t as f32 as f64)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_spacing_matches_diffusers() {
        let t = spaced_timesteps(&TrainingSchedule::default(), 20, TimestepSpacing::Leading);
        assert_eq!(t[0], 951.0);
        assert_eq!(t[19], 1.0);
    }

    #[test]
    fn interp_is_linear_between_points() {
        let ys = [0.0f32, 10.0, 20.0];
        assert_eq!(interp(0.5, &ys), 5.0);
        assert_eq!(interp(2.5, &ys), 20.0);
    }
}
