//! Samplers, each its own module behind one trait, each computing its own schedule from the
//! model's training schedule the way its diffusers counterpart does.

mod ddim;
mod ddpm;
mod dpmpp_2m;
mod euler;
mod euler_ancestral;
mod heun;
mod lcm;
mod lms;
mod pndm;
pub mod schedule;
pub mod sigmas;
mod tcd;
pub use lcm::ORIGINAL_INFERENCE_STEPS as LCM_MAX_STEPS;
mod unipc;

use candle_core::{Result, Tensor};

pub use schedule::{Prediction, TrainingSchedule};

use crate::rng::TorchRng;

/// One denoising algorithm, driven step by step by the sampling loop.
pub trait Sampler: Send {
    /// The timestep the model is evaluated at, one per model call.
    fn timesteps(&self) -> &[f64];

    /// The σ schedule of samplers that have one (for display and tests).
    fn sigmas(&self) -> Option<&[f32]> {
        None
    }

    /// Model calls per step: img2img skips `order ×` the skipped steps, as diffusers does.
    fn order(&self) -> usize {
        1
    }

    /// The standard deviation of the initial noise: 1 in the ᾱ formulation (DDIM, DPM++,
    /// PNDM, UniPC, LCM, TCD, DDPM); the σ samplers start at their largest σ.
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    /// What the model sees at call `i`: the latents as they are in the ᾱ formulation; the σ
    /// samplers scale them by 1/√(σ² + 1).
    fn scale_model_input(&self, x: &Tensor, _i: usize) -> Result<Tensor> {
        Ok(x.clone())
    }

    /// Advances `x` past call `i` given the model's output there. Samplers that add fresh noise
    /// draw it from `rng`, in diffusers' order.
    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        x: &Tensor,
        rng: &mut TorchRng,
    ) -> Result<Tensor>;

    /// Clean latents `x0` noised to the level at which call `i` expects its input.
    fn add_noise(&self, x0: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor>;

    /// The noise level of the sample at the input of call `i` (`i` = number of calls: the
    /// result). `None` for samplers whose state spans calls in a way that forbids stepping
    /// back (Heun's predictor–corrector pairs, PNDM's warm-up), which RePaint's resampling needs.
    fn noise_level(&self, i: usize) -> Option<NoiseLevel> {
        let _ = i;
        None
    }
}

/// How noisy a sample is: k-diffusion's σ, and whether the sample is stored in the
/// variance-preserving scaling (√ᾱ·x₀ + √(1−ᾱ)·ε) or in σ-scaling (x₀ + σ·ε).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseLevel {
    pub sigma: f64,
    pub variance_preserving: bool,
}

impl NoiseLevel {
    pub fn from_alpha_bar(alpha_bar: f64) -> Self {
        Self {
            sigma: ((1.0 - alpha_bar) / alpha_bar).max(0.0).sqrt(),
            variance_preserving: true,
        }
    }

    fn alpha_bar(self) -> f64 {
        1.0 / (1.0 + self.sigma * self.sigma)
    }
}

/// Diffuses a sample forward from level `from` to the noisier level `to` with fresh noise:
/// q(x_to | x_from) of the forward process.
pub fn renoise(x: &Tensor, from: NoiseLevel, to: NoiseLevel, rng: &mut TorchRng) -> Result<Tensor> {
    let noise = rng.randn_like(x)?;
    if to.variance_preserving {
        let ratio = (to.alpha_bar() / from.alpha_bar()).min(1.0);
        lin(x, ratio.sqrt(), &noise, (1.0 - ratio).sqrt())
    } else {
        let extra = (to.sigma * to.sigma - from.sigma * from.sigma)
            .max(0.0)
            .sqrt();
        x + (noise * extra)?
    }
}

/// The algorithm behind a sampler name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ddim,
    Euler,
    EulerAncestral,
    DpmPp2m,
    Lms,
    Heun,
    Pndm,
    UniPc,
    Ddpm,
    Lcm,
    Tcd,
}

impl Algorithm {
    pub const ALL: [Algorithm; 11] = [
        Algorithm::Euler,
        Algorithm::EulerAncestral,
        Algorithm::Lms,
        Algorithm::Heun,
        Algorithm::DpmPp2m,
        Algorithm::Ddim,
        Algorithm::Pndm,
        Algorithm::UniPc,
        Algorithm::Ddpm,
        Algorithm::Lcm,
        Algorithm::Tcd,
    ];

    fn name(self) -> &'static str {
        match self {
            Algorithm::Ddim => "DDIM",
            Algorithm::Euler => "Euler",
            Algorithm::EulerAncestral => "Euler a",
            Algorithm::DpmPp2m => "DPM++ 2M",
            Algorithm::Lms => "LMS",
            Algorithm::Heun => "Heun",
            Algorithm::Pndm => "PNDM",
            Algorithm::UniPc => "UniPC",
            Algorithm::Ddpm => "DDPM",
            Algorithm::Lcm => "LCM",
            Algorithm::Tcd => "TCD",
        }
    }

    /// Whether diffusers offers Karras σs for it.
    fn has_karras(self) -> bool {
        matches!(
            self,
            Algorithm::Euler
                | Algorithm::DpmPp2m
                | Algorithm::Lms
                | Algorithm::Heun
                | Algorithm::UniPc
        )
    }
}

/// A sampler as users pick it: AUTOMATIC1111's display name, e.g. "DPM++ 2M Karras".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplerKind {
    pub algorithm: Algorithm,
    pub karras: bool,
}

/// What a sampler needs besides the training schedule.
#[derive(Debug, Clone, Copy)]
pub struct SamplerSettings {
    pub steps: usize,
    pub prediction: Prediction,
    /// DDIM's η and TCD's γ (0: deterministic).
    pub eta: f64,
    /// The timestep spacing in place of the model's scheduler config (`None`: the config's,
    /// else each sampler's diffusers default): "trailing" is what SD-Turbo needs at 1–4 steps.
    pub spacing: Option<schedule::TimestepSpacing>,
}

impl SamplerKind {
    pub const DDIM: SamplerKind = SamplerKind {
        algorithm: Algorithm::Ddim,
        karras: false,
    };
    pub const EULER: SamplerKind = SamplerKind {
        algorithm: Algorithm::Euler,
        karras: false,
    };

    /// Every sampler name, in the order AUTOMATIC1111 lists them.
    pub fn all() -> Vec<SamplerKind> {
        let mut all = vec![];
        for algorithm in Algorithm::ALL {
            all.push(SamplerKind {
                algorithm,
                karras: false,
            });
            if algorithm.has_karras() {
                all.push(SamplerKind {
                    algorithm,
                    karras: true,
                });
            }
        }
        all
    }

    pub fn name(self) -> String {
        if self.karras {
            format!("{} Karras", self.algorithm.name())
        } else {
            self.algorithm.name().to_string()
        }
    }

    /// Case-insensitive lookup of a display name ("PLMS" is AUTOMATIC1111's name for PNDM).
    pub fn from_name(name: &str) -> Option<Self> {
        let wanted = normalize(name);
        if wanted == "plms" {
            return Some(SamplerKind {
                algorithm: Algorithm::Pndm,
                karras: false,
            });
        }
        Self::all()
            .into_iter()
            .find(|k| normalize(&k.name()) == wanted)
    }

    pub fn known_names() -> String {
        Self::all()
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn build(self, schedule: &TrainingSchedule, settings: SamplerSettings) -> Box<dyn Sampler> {
        let SamplerSettings {
            steps,
            prediction,
            eta,
            spacing,
        } = settings;
        let spaced;
        let schedule = match spacing {
            Some(spacing) => {
                spaced = TrainingSchedule {
                    timestep_spacing: Some(spacing),
                    ..schedule.clone()
                };
                &spaced
            }
            None => schedule,
        };
        let karras = self.karras;
        match self.algorithm {
            Algorithm::Ddim => Box::new(ddim::Ddim::new(schedule, steps, prediction, eta as f32)),
            Algorithm::Euler => Box::new(euler::Euler::new(schedule, steps, prediction, karras)),
            Algorithm::EulerAncestral => Box::new(euler_ancestral::EulerAncestral::new(
                schedule, steps, prediction,
            )),
            Algorithm::DpmPp2m => {
                Box::new(dpmpp_2m::DpmPp2m::new(schedule, steps, prediction, karras))
            }
            Algorithm::Lms => Box::new(lms::Lms::new(schedule, steps, prediction, karras)),
            Algorithm::Heun => Box::new(heun::Heun::new(schedule, steps, prediction, karras)),
            Algorithm::Pndm => Box::new(pndm::Pndm::new(schedule, steps, prediction)),
            Algorithm::UniPc => Box::new(unipc::UniPc::new(schedule, steps, prediction, karras)),
            Algorithm::Ddpm => Box::new(ddpm::Ddpm::new(schedule, steps, prediction)),
            Algorithm::Lcm => Box::new(lcm::Lcm::new(schedule, steps, prediction)),
            Algorithm::Tcd => Box::new(tcd::Tcd::new(schedule, steps, prediction, eta)),
        }
    }
}

impl std::fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

fn normalize(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// `a·x + b·y`.
pub(crate) fn lin(x: &Tensor, a: f64, y: &Tensor, b: f64) -> Result<Tensor> {
    (x * a)? + (y * b)?
}

/// x̂₀ from a model output at noise level σ (k-diffusion's scaling: x = x₀ + σ·ε).
pub(crate) fn denoised_sigma(
    model_output: &Tensor,
    x: &Tensor,
    sigma: f64,
    prediction: Prediction,
) -> Result<Tensor> {
    match prediction {
        Prediction::Epsilon => x - (model_output * sigma)?,
        Prediction::V => {
            let s2 = sigma * sigma + 1.0;
            lin(model_output, -sigma / s2.sqrt(), x, 1.0 / s2)
        }
    }
}

/// (x̂₀, ε̂) from a model output at ᾱ (the variance-preserving scaling: x = √ᾱ·x₀ + √(1−ᾱ)·ε).
pub(crate) fn denoised_alpha(
    model_output: &Tensor,
    x: &Tensor,
    alpha_bar: f64,
    prediction: Prediction,
) -> Result<(Tensor, Tensor)> {
    let (a, b) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
    match prediction {
        Prediction::Epsilon => Ok((lin(x, 1.0 / a, model_output, -b / a)?, model_output.clone())),
        Prediction::V => Ok((lin(x, a, model_output, -b)?, lin(model_output, a, x, b)?)),
    }
}

/// √ᾱ·x₀ + √(1−ᾱ)·ε.
pub(crate) fn add_noise_alpha(x0: &Tensor, noise: &Tensor, alpha_bar: f64) -> Result<Tensor> {
    lin(x0, alpha_bar.sqrt(), noise, (1.0 - alpha_bar).sqrt())
}

/// x / √(σ² + 1), what the UNet sees in the σ formulation.
pub(crate) fn scale_sigma(x: &Tensor, sigma: f32) -> Result<Tensor> {
    x / ((sigma * sigma + 1.0).sqrt() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_and_space_insensitive() {
        assert_eq!(SamplerKind::from_name("ddim"), Some(SamplerKind::DDIM));
        assert_eq!(SamplerKind::from_name("  EULER "), Some(SamplerKind::EULER));
        assert_eq!(
            SamplerKind::from_name("dpm++  2m karras"),
            Some(SamplerKind {
                algorithm: Algorithm::DpmPp2m,
                karras: true
            })
        );
        assert_eq!(
            SamplerKind::from_name("PLMS").map(|k| k.algorithm),
            Some(Algorithm::Pndm)
        );
        assert_eq!(SamplerKind::from_name("Euler b"), None);
        assert_eq!(SamplerKind::from_name("Euler a Karras"), None);
    }

    #[test]
    fn every_name_round_trips() {
        for kind in SamplerKind::all() {
            assert_eq!(SamplerKind::from_name(&kind.name()), Some(kind));
        }
    }
}
