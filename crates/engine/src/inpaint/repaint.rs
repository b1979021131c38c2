//! RePaint (Lugmayr et al. 2022, arXiv 2201.09865) in latent space, for any sampler that can
//! step back: after every step the known region is replaced by the original latents noised to
//! that step's level; every `jump` steps the sample is diffused back `jump` levels with fresh
//! noise and denoised again, `resample` times in all, so that the generated region settles
//! into agreement with the known one. With `resample = 1` this is the plain per-step blend of
//! diffusers' inpainting pipeline (and of every other tool).
//!
//! Masks here are latent-resolution weights with 1 = regenerate (our convention); RePaint's
//! paper and diffusers' RePaint scheduler use 1 = keep.

use std::ops::ControlFlow;

use candle_core::{Result, Tensor};

use crate::denoise::{Denoiser, StepInfo};
use crate::rng::TorchRng;
use crate::sampler::{renoise, Sampler};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resampling {
    /// Passes over each block of steps; 1 = no resampling.
    pub resample: usize,
    /// Steps per block: how far back each resampling pass diffuses.
    pub jump: usize,
}

impl Resampling {
    pub const NONE: Resampling = Resampling {
        resample: 1,
        jump: 1,
    };
}

/// What stays: the clean latents of the input, the noise that diffuses them to each level
/// (the job's initial noise, as diffusers uses it), and where to blend.
pub struct KnownRegion {
    pub latents: Tensor,
    pub noise: Tensor,
    /// `(1, 1, h, w)` weights, 1 = regenerate, 0 = keep.
    pub blend: Tensor,
}

/// The sequence of model calls RePaint makes: indices into the sampler's calls, with the
/// points where it jumps back. Used for both the loop and the cost estimate.
fn plan(start: usize, calls: usize, r: Resampling) -> Vec<Action> {
    let mut actions = vec![];
    let mut i = start;
    let mut passes = 1;
    while i < calls {
        actions.push(Action::Call(i));
        i += 1;
        let at_block_end =
            r.resample > 1 && r.jump > 0 && i < calls && (i - start).is_multiple_of(r.jump);
        if at_block_end {
            if passes < r.resample {
                let back = i - r.jump;
                actions.push(Action::Back { from: i, to: back });
                i = back;
                passes += 1;
            } else {
                passes = 1;
            }
        }
    }
    actions
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Call(usize),
    Back { from: usize, to: usize },
}

/// Model calls for a job: the cost of a resampling setting.
pub fn model_calls(start: usize, calls: usize, r: Resampling) -> usize {
    plan(start, calls, r)
        .iter()
        .filter(|a| matches!(a, Action::Call(_)))
        .count()
}

/// Samples from call `start` with the known region held (none: plain sampling, which this is
/// exactly when `resampling` is `NONE`). `make_sampler` builds a fresh sampler: multistep
/// samplers restart their history after each jump back.
#[allow(clippy::too_many_arguments)]
pub fn repaint(
    denoiser: &dyn Denoiser,
    make_sampler: &dyn Fn() -> Box<dyn Sampler>,
    mut x: Tensor,
    known: Option<&KnownRegion>,
    resampling: Resampling,
    start: usize,
    rng: &mut TorchRng,
    on_step: &mut dyn FnMut(StepInfo) -> ControlFlow<()>,
) -> Result<Option<Tensor>> {
    let mut sampler = make_sampler();
    let calls = sampler.timesteps().len();
    if resampling.resample > 1 && sampler.noise_level(0).is_none() {
        candle_core::bail!("this sampler cannot step back; RePaint resampling needs another sampler (e.g. DDIM, Euler, DPM++ 2M)");
    }
    let actions = plan(start, calls, resampling);
    let total = actions
        .iter()
        .filter(|a| matches!(a, Action::Call(_)))
        .count();
    let mut done = 0;
    let timesteps = sampler.timesteps().to_vec();
    for action in actions {
        match action {
            Action::Call(i) => {
                let input = sampler.scale_model_input(&x, i)?;
                let at = crate::control::CallIndex {
                    call: i - start,
                    calls: calls - start,
                };
                let output = denoiser.predict(&input, timesteps[i], at)?;
                x = sampler.step(&output, i, &x, rng)?;
                if let Some(known) = known {
                    // The last step lands on clean latents, as in diffusers.
                    let known_now = if i + 1 < calls {
                        sampler.add_noise(&known.latents, &known.noise, i + 1)?
                    } else {
                        known.latents.clone()
                    };
                    x = blend(&x, &known_now, &known.blend)?;
                }
                done += 1;
                if on_step(StepInfo {
                    step: done,
                    total,
                    latents: &x,
                })
                .is_break()
                {
                    return Ok(None);
                }
            }
            Action::Back { from, to } => {
                let (Some(a), Some(b)) = (sampler.noise_level(from), sampler.noise_level(to))
                else {
                    candle_core::bail!("sampler has no noise level to step back to");
                };
                x = renoise(&x, a, b, rng)?;
                sampler = make_sampler();
            }
        }
    }
    Ok(Some(x))
}

/// `m · generated + (1 − m) · known`.
pub fn blend(generated: &Tensor, known: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let keep = (1.0 - mask)?;
    generated.broadcast_mul(mask)? + known.broadcast_mul(&keep)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_without_resampling_is_every_call_once() {
        assert_eq!(model_calls(0, 20, Resampling::NONE), 20);
        assert_eq!(
            model_calls(
                5,
                20,
                Resampling {
                    resample: 1,
                    jump: 4
                }
            ),
            15
        );
    }

    #[test]
    fn plan_jumps_back_each_block() {
        let p = plan(
            0,
            6,
            Resampling {
                resample: 2,
                jump: 2,
            },
        );
        use Action::*;
        assert_eq!(
            p,
            vec![
                Call(0),
                Call(1),
                Back { from: 2, to: 0 },
                Call(0),
                Call(1),
                Call(2),
                Call(3),
                Back { from: 4, to: 2 },
                Call(2),
                Call(3),
                Call(4),
                Call(5)
            ]
        );
        // Every block but the last is run `resample` times.
        assert_eq!(
            model_calls(
                0,
                20,
                Resampling {
                    resample: 3,
                    jump: 5
                }
            ),
            20 + 3 * 2 * 5
        );
    }
}
