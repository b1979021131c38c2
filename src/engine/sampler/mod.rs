//! Samplers, each its own module behind one trait, each computing its own schedule from the
//! model's training schedule the way its diffusers counterpart does.

mod ddim;
mod euler;
pub mod schedule;

use candle_core::{Result, Tensor};

pub use schedule::{Prediction, TrainingSchedule};

use crate::engine::rng::TorchRng;

/// One denoising algorithm, driven step by step by the sampling loop.
pub trait Sampler: Send {
    /// The timestep the model is evaluated at, one per model call.
    fn timesteps(&self) -> &[f64];

    /// The standard deviation of the initial noise.
    fn init_noise_sigma(&self) -> f64;

    /// What the model sees at call `i`.
    fn scale_model_input(&self, x: &Tensor, i: usize) -> Result<Tensor>;

    /// Advances `x` past call `i` given the model's output there. Ancestral samplers draw their
    /// noise from `rng`.
    fn step(&mut self, model_output: &Tensor, i: usize, x: &Tensor, rng: &mut TorchRng) -> Result<Tensor>;
}

/// Samplers by AUTOMATIC1111's display names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    Ddim,
    Euler,
}

impl SamplerKind {
    pub const ALL: [SamplerKind; 2] = [SamplerKind::Ddim, SamplerKind::Euler];

    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Ddim => "DDIM",
            SamplerKind::Euler => "Euler",
        }
    }

    /// Case-insensitive lookup of a display name.
    pub fn from_name(name: &str) -> Option<Self> {
        let wanted = normalize(name);
        Self::ALL.into_iter().find(|k| normalize(k.name()) == wanted)
    }

    pub fn known_names() -> String {
        Self::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
    }

    pub fn build(self, schedule: &TrainingSchedule, steps: usize, prediction: Prediction) -> Box<dyn Sampler> {
        match self {
            SamplerKind::Ddim => Box::new(ddim::Ddim::new(schedule, steps, prediction, 0.0)),
            SamplerKind::Euler => Box::new(euler::Euler::new(schedule, steps, prediction)),
        }
    }
}

impl std::fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn normalize(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_and_space_insensitive() {
        assert_eq!(SamplerKind::from_name("ddim"), Some(SamplerKind::Ddim));
        assert_eq!(SamplerKind::from_name("  EULER "), Some(SamplerKind::Euler));
        assert_eq!(SamplerKind::from_name("Euler b"), None);
    }
}
