//! ControlNet units of a job: which network, the condition image it sees, its weight, the part
//! of the steps it acts in and its control mode — and how their residuals are computed at each
//! model call, as diffusers' ControlNet pipelines and AUTOMATIC1111's extension do.

pub mod depth;
pub mod preprocess;

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result, TensorContext};
use crate::image::RgbImage;
use crate::mask::{Mask, Rect};
use crate::model::controlnet::ControlNet;
use crate::model::controlnets::MAX_CONTROLNETS;
use crate::model::unet::ControlResiduals;
pub use preprocess::Preprocessor;

/// The largest weight a unit may have (AUTOMATIC1111's slider ends at 2).
pub const MAX_CONTROL_WEIGHT: f64 = 10.0;

/// AUTOMATIC1111's "Control Mode".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlMode {
    /// Residuals at the unit's weight on both halves of classifier-free guidance.
    #[default]
    Balanced,
    /// Residuals fading from 1 at the middle block to 0.1 at the shallowest skip (the
    /// "soft injection"), on both halves.
    PromptMoreImportant,
    /// Soft injection on the conditional half only: diffusers' `guess_mode`.
    ControlNetMoreImportant,
}

impl ControlMode {
    pub const ALL: [ControlMode; 3] = [
        ControlMode::Balanced,
        ControlMode::PromptMoreImportant,
        ControlMode::ControlNetMoreImportant,
    ];

    /// The words AUTOMATIC1111 writes in its PNG record.
    pub fn a1111_name(&self) -> &'static str {
        match self {
            ControlMode::Balanced => "Balanced",
            ControlMode::PromptMoreImportant => "My prompt is more important",
            ControlMode::ControlNetMoreImportant => "ControlNet is more important",
        }
    }

    /// The short name the CLI takes.
    pub fn cli_name(&self) -> &'static str {
        match self {
            ControlMode::Balanced => "balanced",
            ControlMode::PromptMoreImportant => "prompt",
            ControlMode::ControlNetMoreImportant => "control",
        }
    }

    /// Either name (AUTOMATIC1111 also writes the mode's index, 0–2).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL.into_iter().find(|m| {
            m.a1111_name().eq_ignore_ascii_case(s)
                || m.cli_name().eq_ignore_ascii_case(s)
                || Self::ALL.iter().position(|x| x == m).map(|i| i.to_string()) == Some(s.into())
        })
    }

    fn soft(&self) -> bool {
        !matches!(self, ControlMode::Balanced)
    }
}

/// One ControlNet of a job.
#[derive(Debug, Clone)]
pub struct ControlUnit {
    /// A ControlNet file or diffusers folder.
    pub model: PathBuf,
    /// The condition the network sees (the preprocessor's output), at any size: it is scaled
    /// to the image the job works on.
    pub image: Arc<RgbImage>,
    /// What made `image` from the user's picture (recorded, not run again).
    pub module: Preprocessor,
    pub weight: f64,
    /// The fraction of the steps where the unit starts and stops acting (diffusers'
    /// `control_guidance_start/end`, AUTOMATIC1111's "Guidance Start/End").
    pub start: f64,
    pub end: f64,
    pub mode: ControlMode,
}

impl ControlUnit {
    pub fn new(model: PathBuf, image: Arc<RgbImage>) -> Self {
        Self {
            model,
            image,
            module: Preprocessor::None,
            weight: 1.0,
            start: 0.0,
            end: 1.0,
            mode: ControlMode::Balanced,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !self.weight.is_finite() || !(0.0..=MAX_CONTROL_WEIGHT).contains(&self.weight) {
            return Err(EngineError::InvalidParams(format!(
                "ControlNet weight {} is outside 0–{MAX_CONTROL_WEIGHT}",
                self.weight
            )));
        }
        let fraction = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !fraction(self.start) || !fraction(self.end) || self.start >= self.end {
            return Err(EngineError::InvalidParams(format!(
                "ControlNet steps {}–{}: start and end are fractions of the steps, 0 ≤ start < end ≤ 1",
                self.start, self.end
            )));
        }
        if self.image.width == 0 || self.image.height == 0 {
            return Err(EngineError::InvalidParams(
                "the ControlNet image is empty".into(),
            ));
        }
        Ok(())
    }

    /// Whether the unit acts at model call `call` of `calls`: diffusers' `controlnet_keep`.
    pub fn acts_at(&self, call: usize, calls: usize) -> bool {
        let n = calls as f64;
        !((call as f64) / n < self.start || (call as f64 + 1.0) / n > self.end)
    }
}

/// Checks a job's units (`inpainting`: whether the job has an image and a mask).
pub fn validate_for(units: &[ControlUnit], inpainting: bool) -> Result<()> {
    if !inpainting && units.iter().any(|u| u.module == Preprocessor::InpaintOnly) {
        return Err(EngineError::InvalidParams(
            "the inpaint preprocessor works on inpainting jobs (an image and a mask)".into(),
        ));
    }
    validate(units)
}

/// Checks a job's units.
pub fn validate(units: &[ControlUnit]) -> Result<()> {
    if units.len() > MAX_CONTROLNETS {
        return Err(EngineError::InvalidParams(format!(
            "{} ControlNets (at most {MAX_CONTROLNETS} at once)",
            units.len()
        )));
    }
    units.iter().try_for_each(ControlUnit::validate)
}

/// A unit ready to run: its network and its condition at the working size.
pub struct ActiveControl {
    pub net: Arc<ControlNet>,
    /// `(1, 3, h, w)` in [0, 1], in the model's dtype.
    pub hint: Tensor,
    pub unit: ControlUnit,
}

/// Which part of the job's source image the model works on, and at what size.
#[derive(Debug, Clone, Copy)]
pub struct WorkingArea {
    /// The size of the image the job starts from (or would, for txt2img: the output).
    pub source: (usize, usize),
    /// The part of it the model sees (only-masked inpainting); `None`: all of it.
    pub crop: Option<Rect>,
    /// The model's working size.
    pub size: (usize, usize),
}

/// A job's units with their networks loaded.
#[derive(Default)]
pub struct JobControls<'a> {
    units: &'a [ControlUnit],
    nets: Vec<Arc<ControlNet>>,
}

impl<'a> JobControls<'a> {
    pub fn new(units: &'a [ControlUnit], nets: Vec<Arc<ControlNet>>) -> Self {
        Self { units, nets }
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Each unit's condition image mapped as the job's image is: scaled to the source's size,
    /// cropped like it, scaled to the working size.
    /// `inpainting` is the image and mask the model works on (at the working size), for the
    /// units whose condition is made from them (`inpaint_only`).
    pub fn activate(
        &self,
        area: WorkingArea,
        inpainting: Option<(&RgbImage, &Mask)>,
        device: &Device,
        dtype: DType,
    ) -> Result<Vec<ActiveControl>> {
        activate(self.units, &self.nets, area, inpainting, device, dtype)
    }
}

/// The inpaint ControlNet's condition: the image in [0, 1], −1 where the mask is over half.
fn inpaint_condition(image: &RgbImage, mask: &Mask, device: &Device) -> Result<Tensor> {
    let (w, h) = (image.width, image.height);
    if (mask.width, mask.height) != (w, h) {
        return Err(EngineError::InvalidParams(
            "the inpaint condition's mask and image differ in size".into(),
        ));
    }
    let mut data = vec![0f32; 3 * w * h];
    for (i, (px, &m)) in image.pixels.chunks_exact(3).zip(&mask.values).enumerate() {
        for c in 0..3 {
            data[c * w * h + i] = if m > 0.5 { -1.0 } else { px[c] as f32 / 255.0 };
        }
    }
    Tensor::from_vec(data, (1, 3, h, w), device).context("inpaint condition")
}

fn activate(
    units: &[ControlUnit],
    nets: &[Arc<ControlNet>],
    area: WorkingArea,
    inpainting: Option<(&RgbImage, &Mask)>,
    device: &Device,
    dtype: DType,
) -> Result<Vec<ActiveControl>> {
    units
        .iter()
        .zip(nets)
        .map(|(unit, net)| {
            let (w, h) = area.size;
            if unit.module == Preprocessor::InpaintOnly {
                let (image, mask) = inpainting.ok_or_else(|| {
                    EngineError::InvalidParams(
                        "the inpaint preprocessor works on inpainting jobs (an image and a mask)"
                            .into(),
                    )
                })?;
                let hint = inpaint_condition(image, mask, device)?
                    .to_dtype(dtype)
                    .context("ControlNet image")?;
                return Ok(ActiveControl {
                    net: net.clone(),
                    hint,
                    unit: unit.clone(),
                });
            }
            let image = match area.crop {
                Some(crop) => unit
                    .image
                    .resized(area.source.0, area.source.1)
                    .crop(crop)
                    .resized(w, h),
                None => unit.image.resized(w, h),
            };
            let hint = image
                .to_unit_tensor(device)?
                .to_dtype(dtype)
                .context("ControlNet image")?;
            Ok(ActiveControl {
                net: net.clone(),
                hint,
                unit: unit.clone(),
            })
        })
        .collect()
}

/// Where a model call stands among the calls a job makes (for the units' step ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallIndex {
    pub call: usize,
    pub calls: usize,
}

/// The UNet's input for one model call, as the guided denoiser builds it.
pub struct ControlInput<'a> {
    /// The latents as the UNet gets them: unconditional half first when guided, without an
    /// inpainting UNet's extra channels.
    pub sample: &'a Tensor,
    pub timesteps: &'a Tensor,
    /// One row per row of `sample`.
    pub context: &'a Tensor,
    /// Images per half.
    pub images: usize,
    pub guided: bool,
}

/// diffusers' guess-mode scales: `logspace(-1, 0, n + 1)` as torch computes it (in f64,
/// stored as f32), times the weight in f32.
fn soft_scales(n: usize, weight: f64) -> Vec<f32> {
    let steps = n + 1;
    let (start, end) = (-1.0f32, 0.0f32);
    let step = f64::from(end - start) / (steps - 1) as f64;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            let e = if i < halfway {
                f64::from(start) + step * i as f64
            } else {
                f64::from(end) - step * (steps - i - 1) as f64
            };
            (10f64.powf(e) as f32) * (weight as f32)
        })
        .collect()
}

fn scale(r: ControlResiduals, mode: ControlMode, weight: f64) -> Result<ControlResiduals> {
    let by = |t: &Tensor, s: f32| t.affine(f64::from(s), 0.0).context("ControlNet");
    if mode.soft() {
        let scales = soft_scales(r.down.len(), weight);
        Ok(ControlResiduals {
            down: r
                .down
                .iter()
                .zip(&scales)
                .map(|(t, &s)| by(t, s))
                .collect::<Result<_>>()?,
            mid: by(&r.mid, scales[scales.len() - 1])?,
        })
    } else {
        let s = weight as f32;
        Ok(ControlResiduals {
            down: r.down.iter().map(|t| by(t, s)).collect::<Result<_>>()?,
            mid: by(&r.mid, s)?,
        })
    }
}

/// The summed residuals of the units acting at `at`, or `None` when none does.
pub fn residuals(
    controls: &[ActiveControl],
    input: &ControlInput,
    at: CallIndex,
) -> Result<Option<ControlResiduals>> {
    let mut total: Option<ControlResiduals> = None;
    for control in controls {
        if !control.unit.acts_at(at.call, at.calls) {
            // diffusers runs it at scale 0: its residuals add nothing.
            continue;
        }
        let unit = &control.unit;
        let cond_only = input.guided
            && (unit.mode == ControlMode::ControlNetMoreImportant
                || control.net.config().global_pool_conditions);
        let images = input.images;
        let r = if cond_only {
            let sample = input
                .sample
                .narrow(0, images, images)
                .context("ControlNet")?;
            let context = input
                .context
                .narrow(0, images, images)
                .context("ControlNet")?;
            let ts = input
                .timesteps
                .narrow(0, images, images)
                .context("ControlNet")?;
            let hint = repeat_batch(&control.hint, images)?;
            let r = control
                .net
                .forward(&sample, &ts, &context, &hint)
                .context("ControlNet")?;
            let r = scale(r, soft_mode(unit, control), unit.weight)?;
            let zeros_first = |t: &Tensor| -> Result<Tensor> {
                t.zeros_like()
                    .and_then(|z| Tensor::cat(&[&z, t], 0))
                    .context("ControlNet")
            };
            ControlResiduals {
                down: r.down.iter().map(zeros_first).collect::<Result<_>>()?,
                mid: zeros_first(&r.mid)?,
            }
        } else {
            let batch = input.sample.dim(0).context("ControlNet")?;
            let hint = repeat_batch(&control.hint, batch)?;
            let r = control
                .net
                .forward(input.sample, input.timesteps, input.context, &hint)
                .context("ControlNet")?;
            scale(r, soft_mode(unit, control), unit.weight)?
        };
        total = Some(match total {
            None => r,
            Some(t) => t.add(&r).context("ControlNet")?,
        });
    }
    Ok(total)
}

/// A shuffle-style (pooled) ControlNet is scaled plainly even in guess mode, as diffusers does.
fn soft_mode(unit: &ControlUnit, control: &ActiveControl) -> ControlMode {
    if control.net.config().global_pool_conditions {
        ControlMode::Balanced
    } else {
        unit.mode
    }
}

fn repeat_batch(t: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(t.clone());
    }
    let mut reps = vec![1; t.rank()];
    reps[0] = n;
    t.repeat(reps).context("ControlNet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ranges_follow_diffusers_keep() {
        let unit = |start, end| ControlUnit {
            start,
            end,
            ..ControlUnit::new(
                "x".into(),
                Arc::new(RgbImage::new(8, 8, vec![0; 192]).unwrap()),
            )
        };
        let acts = |u: &ControlUnit, n| (0..n).map(|i| u.acts_at(i, n)).collect::<Vec<_>>();
        assert_eq!(acts(&unit(0.0, 1.0), 4), [true; 4]);
        // 10 calls, 0.2–0.8: i/10 < 0.2 drops 0 and 1; (i+1)/10 > 0.8 drops 8 and 9.
        assert_eq!(
            acts(&unit(0.2, 0.8), 10),
            [false, false, true, true, true, true, true, true, false, false]
        );
    }

    #[test]
    fn soft_scales_run_from_a_tenth_to_one() {
        let s = soft_scales(12, 1.0);
        assert_eq!(s.len(), 13);
        assert!((s[0] - 0.1).abs() < 1e-7 && s[12] == 1.0);
        // AUTOMATIC1111 writes the same fade as 0.825^(12 − i).
        for (i, v) in s.iter().enumerate() {
            assert!((v - 0.825f32.powi(12 - i as i32)).abs() < 2e-3);
        }
    }

    #[test]
    fn modes_parse_from_either_tool() {
        for m in ControlMode::ALL {
            assert_eq!(ControlMode::parse(m.a1111_name()), Some(m));
            assert_eq!(ControlMode::parse(m.cli_name()), Some(m));
        }
        assert_eq!(
            ControlMode::parse("2"),
            Some(ControlMode::ControlNetMoreImportant)
        );
        assert_eq!(ControlMode::parse("louder"), None);
    }

    #[test]
    fn bad_units_are_refused() {
        let ok = ControlUnit::new(
            "x".into(),
            Arc::new(RgbImage::new(8, 8, vec![0; 192]).unwrap()),
        );
        assert!(ok.validate().is_ok());
        for bad in [
            ControlUnit {
                weight: f64::NAN,
                ..ok.clone()
            },
            ControlUnit {
                weight: -1.0,
                ..ok.clone()
            },
            ControlUnit {
                weight: 1e9,
                ..ok.clone()
            },
            ControlUnit {
                start: 0.5,
                end: 0.5,
                ..ok.clone()
            },
            ControlUnit {
                start: -0.1,
                ..ok.clone()
            },
            ControlUnit {
                end: f64::INFINITY,
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(validate(&vec![ok; MAX_CONTROLNETS + 1]).is_err());
    }
}
