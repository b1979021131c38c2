//! Noise levels for the samplers that work in σ (k-diffusion's formulation): interpolation of
//! the training schedule, the Karras et al. (2022) schedule, and σ → timestep.

use super::schedule::{interp, spaced_timesteps, TimestepSpacing, TrainingSchedule};

/// Timesteps (one per step) and σs (one more, ending at 0).
#[derive(Debug, Clone)]
pub struct SigmaSchedule {
    pub timesteps: Vec<f64>,
    pub sigmas: Vec<f32>,
}

/// Karras et al.'s ρ = 7 ramp from `sigma_max` down to `sigma_min`.
pub fn karras(sigma_min: f64, sigma_max: f64, steps: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    let ramp = super::schedule::linspace_f64(0.0, 1.0, steps);
    ramp.into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
        .collect()
}

/// The fractional training timestep whose σ is `sigma`, interpolating in log σ.
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // The last index whose log σ is ≤ the target, clipped so that a next one exists.
    let count = log_sigmas
        .iter()
        .filter(|&&ls| log_sigma - ls >= 0.0)
        .count();
    let low = count.saturating_sub(1).min(log_sigmas.len() - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

pub fn log_sigmas(schedule: &TrainingSchedule) -> Vec<f64> {
    schedule
        .sigmas()
        .into_iter()
        .map(|s| (s as f64).ln())
        .collect()
}

/// The schedule of diffusers' Euler, Euler a, LMS and Heun: σ interpolated at spaced
/// timesteps (default "linspace"), optionally replaced by the Karras ramp between the same ends.
pub fn discrete(
    schedule: &TrainingSchedule,
    steps: usize,
    karras_sigmas: bool,
) -> (SigmaSchedule, TimestepSpacing) {
    let spacing = schedule
        .timestep_spacing
        .unwrap_or(TimestepSpacing::Linspace);
    let mut timesteps = spaced_timesteps(schedule, steps, spacing);
    let table = schedule.sigmas();
    let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &table)).collect();
    if karras_sigmas {
        let (max, min) = (sigmas[0], sigmas[sigmas.len() - 1]);
        sigmas = karras(min, max, steps);
        let logs = log_sigmas(schedule);
        timesteps = sigmas
            .iter()
            .map(|&s| sigma_to_t(s, &logs) as f32 as f64)
            .collect();
    }
    let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
    sigmas.push(0.0);
    (SigmaSchedule { timesteps, sigmas }, spacing)
}

/// The schedule of diffusers' multistep solvers (DPM-Solver++, UniPC): integer timesteps over
/// `steps + 1` points, or rounded Karras timesteps.
pub fn multistep(schedule: &TrainingSchedule, steps: usize, karras_sigmas: bool) -> SigmaSchedule {
    let n = schedule.num_train_timesteps;
    let spacing = schedule
        .timestep_spacing
        .unwrap_or(TimestepSpacing::Linspace);
    let mut timesteps: Vec<f64> = match spacing {
        TimestepSpacing::Linspace => {
            let mut t: Vec<f64> = super::schedule::linspace_f64(0.0, (n - 1) as f64, steps + 1)
                .into_iter()
                .map(round_half_even)
                .collect();
            t.reverse();
            t.pop();
            t
        }
        TimestepSpacing::Leading => {
            let ratio = n / (steps + 1);
            let mut t: Vec<f64> = (0..=steps)
                .rev()
                .map(|i| (i * ratio + schedule.steps_offset) as f64)
                .collect();
            t.pop();
            t
        }
        TimestepSpacing::Trailing => {
            let ratio = n as f64 / steps as f64;
            (0..steps)
                .map(|i| round_half_even(n as f64 - i as f64 * ratio) - 1.0)
                .collect()
        }
    };
    let table = schedule.sigmas();
    let sigmas: Vec<f64> = if karras_sigmas {
        let s = karras(table[0] as f64, table[n - 1] as f64, steps);
        let logs = log_sigmas(schedule);
        timesteps = s
            .iter()
            .map(|&sig| round_half_even(sigma_to_t(sig, &logs)))
            .collect();
        s
    } else {
        timesteps.iter().map(|&t| interp(t, &table)).collect()
    };
    let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
    sigmas.push(0.0);
    SigmaSchedule { timesteps, sigmas }
}

/// numpy's `round`: halves go to the even neighbour.
pub fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// α_t and σ_t of the variance-preserving process for a k-diffusion σ.
pub fn alpha_sigma(sigma: f64) -> (f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// λ = log α − log σ, +∞ at σ = 0.
pub fn lambda(sigma: f64) -> f64 {
    let (a, s) = alpha_sigma(sigma);
    a.ln() - s.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_half_even_matches_numpy() {
        assert_eq!(round_half_even(0.5), 0.0);
        assert_eq!(round_half_even(1.5), 2.0);
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(2.6), 3.0);
    }

    #[test]
    fn sigma_to_t_inverts_the_table() {
        let schedule = TrainingSchedule::default();
        let logs = log_sigmas(&schedule);
        let table = schedule.sigmas();
        for t in [0usize, 1, 500, 998, 999] {
            assert!(
                (sigma_to_t(table[t] as f64, &logs) - t as f64).abs() < 1e-3,
                "{t}"
            );
        }
    }
}
