//! What a user asks for: one struct that the CLI fills, the app's panel edits, requests carry
//! and PNGs record.

use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result};
use super::prompt::Fragment;

/// The longest prompt (and negative prompt) accepted: hundreds of 75-token chunks, far past
/// any real prompt, and a bound on tokenizer and text-encoder time.
pub const MAX_PROMPT_BYTES: usize = 32 * 1024;
/// Most 75-token chunks a prompt may ask for with `BREAK`: each is a text-encoder pass and
/// widens every cross-attention.
pub const MAX_PROMPT_CHUNKS: usize = 64;
/// The largest emphasis `(word:W)` or nesting may give: beyond it the embedding overflows to
/// an image of noise.
pub const MAX_EMPHASIS: f64 = 100.0;
/// The largest CFG scale: AUTOMATIC1111's slider ends at 30; far above that the guidance only
/// overflows.
pub const MAX_CFG_SCALE: f64 = 100.0;
/// DDIM's eta: 0 is deterministic, 1 is DDPM's variance; far above, the noise swamps the image.
pub const MAX_ETA: f64 = 10.0;
use super::sampler::SamplerKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: String,
    pub seed: u64,
    pub steps: usize,
    pub cfg_scale: f64,
    /// AUTOMATIC1111's display name.
    pub sampler: String,
    pub width: usize,
    pub height: usize,
    /// DDIM's η and TCD's γ: 0 is deterministic.
    #[serde(default)]
    pub eta: f64,
    /// AUTOMATIC1111's "Clip skip": 1 uses the text encoder's last layer, 2 the one before.
    #[serde(default = "one")]
    pub clip_skip: usize,
    /// img2img denoising strength: 1 replaces the image entirely, 0 keeps it.
    #[serde(default = "default_strength")]
    pub strength: f64,
    /// AUTOMATIC1111's variation seed: its noise is blended (slerp) into the seed's.
    #[serde(default)]
    pub variation_seed: Option<u64>,
    #[serde(default)]
    pub variation_strength: f64,
    /// Timestep spacing in place of the model's scheduler config (SD-Turbo: trailing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestep_spacing: Option<crate::sampler::schedule::TimestepSpacing>,
}

fn one() -> usize {
    1
}

fn default_strength() -> f64 {
    0.75
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: String::new(),
            seed: 0,
            steps: 20,
            cfg_scale: 7.5,
            sampler: SamplerKind::EULER.name(),
            eta: 0.0,
            clip_skip: 1,
            strength: 0.75,
            width: 512,
            height: 512,
            variation_seed: None,
            variation_strength: 0.0,
            timestep_spacing: None,
        }
    }
}

impl GenerationParams {
    /// The parameters of image `i` of a batch: AUTOMATIC1111 numbers seeds consecutively.
    pub fn for_batch_image(&self, i: usize) -> Self {
        Self {
            seed: self.seed.wrapping_add(i as u64),
            ..self.clone()
        }
    }

    /// Checks everything that can be checked before a model is touched.
    pub fn validate(&self) -> Result<SamplerKind> {
        let sampler =
            SamplerKind::from_name(&self.sampler).ok_or_else(|| EngineError::UnknownSampler {
                name: self.sampler.clone(),
                known: SamplerKind::known_names(),
            })?;
        for (what, v) in [("width", self.width), ("height", self.height)] {
            if v == 0 || v % 8 != 0 {
                return Err(EngineError::InvalidParams(format!(
                    "{what} {v} is not a positive multiple of 8"
                )));
            }
            if v > 8192 {
                return Err(EngineError::InvalidParams(format!(
                    "{what} {v} is larger than 8192"
                )));
            }
        }
        if self.steps == 0 || self.steps > 1000 {
            return Err(EngineError::InvalidParams(format!(
                "steps {} is not between 1 and 1000",
                self.steps
            )));
        }
        let lcm_max = crate::sampler::LCM_MAX_STEPS;
        let consistency = matches!(
            sampler.algorithm,
            crate::sampler::Algorithm::Lcm | crate::sampler::Algorithm::Tcd
        );
        if consistency && self.steps > lcm_max {
            return Err(EngineError::InvalidParams(format!(
                "{sampler} takes at most {lcm_max} steps (the grid it was distilled on), not {}",
                self.steps
            )));
        }
        if sampler.algorithm == crate::sampler::Algorithm::Tcd && self.eta > 1.0 {
            return Err(EngineError::InvalidParams(format!(
                "TCD's gamma (eta) {} is not between 0 and 1",
                self.eta
            )));
        }
        if !self.cfg_scale.is_finite() || !(0.0..=MAX_CFG_SCALE).contains(&self.cfg_scale) {
            return Err(EngineError::InvalidParams(format!(
                "CFG scale {} is not between 0 and {MAX_CFG_SCALE}",
                self.cfg_scale
            )));
        }
        validate_prompt("prompt", &self.prompt)?;
        validate_prompt("negative prompt", &self.negative_prompt)?;
        if !self.eta.is_finite() || !(0.0..=MAX_ETA).contains(&self.eta) {
            return Err(EngineError::InvalidParams(format!(
                "eta {} is not between 0 and {MAX_ETA}",
                self.eta
            )));
        }
        if self.clip_skip == 0 || self.clip_skip > 12 {
            return Err(EngineError::InvalidParams(format!(
                "clip skip {} is not between 1 and 12",
                self.clip_skip
            )));
        }
        if !(0.0..=1.0).contains(&self.variation_strength) {
            return Err(EngineError::InvalidParams(format!(
                "variation strength {} is not between 0 and 1",
                self.variation_strength
            )));
        }
        if !(0.0..=1.0).contains(&self.strength) {
            return Err(EngineError::InvalidParams(format!(
                "strength {} is not between 0 and 1",
                self.strength
            )));
        }
        Ok(sampler)
    }
}

/// A prompt the text encoder can take: bounded length, no control characters (PNG text cannot
/// carry NUL), bounded chunks and emphasis.
fn validate_prompt(what: &str, text: &str) -> Result<()> {
    let bad = |m: String| Err(EngineError::InvalidParams(format!("{what}: {m}")));
    if text.len() > MAX_PROMPT_BYTES {
        return bad(format!(
            "{} bytes is longer than the {MAX_PROMPT_BYTES} allowed",
            text.len()
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return bad("contains control characters".into());
    }
    let fragments = crate::prompt::parse(text);
    let breaks = fragments
        .iter()
        .filter(|f| matches!(f, Fragment::Break))
        .count();
    if breaks + 1 > MAX_PROMPT_CHUNKS {
        return bad(format!(
            "{breaks} BREAKs make more than the {MAX_PROMPT_CHUNKS} chunks allowed"
        ));
    }
    for f in &fragments {
        if let Fragment::Text { text, weight } = f {
            if !weight.is_finite() || weight.abs() > MAX_EMPHASIS {
                let shown: String = text.chars().take(30).collect();
                return bad(format!(
                    "emphasis {weight} on {shown:?} is beyond ±{MAX_EMPHASIS}"
                ));
            }
        }
    }
    Ok(())
}

/// A seed chosen at random, in AUTOMATIC1111's range (32 bits), for "-1" and unlocked seeds.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() % 4_294_967_296
}
