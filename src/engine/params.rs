//! What a user asks for: one struct that the CLI fills, the app's panel edits, requests carry
//! and PNGs record.

use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result};
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
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: String::new(),
            seed: 0,
            steps: 20,
            cfg_scale: 7.5,
            sampler: SamplerKind::Euler.name().to_string(),
            width: 512,
            height: 512,
        }
    }
}

impl GenerationParams {
    /// Checks everything that can be checked before a model is touched.
    pub fn validate(&self) -> Result<SamplerKind> {
        let sampler = SamplerKind::from_name(&self.sampler).ok_or_else(|| EngineError::UnknownSampler {
            name: self.sampler.clone(),
            known: SamplerKind::known_names(),
        })?;
        for (what, v) in [("width", self.width), ("height", self.height)] {
            if v == 0 || v % 8 != 0 {
                return Err(EngineError::InvalidParams(format!("{what} {v} is not a positive multiple of 8")));
            }
            if v > 8192 {
                return Err(EngineError::InvalidParams(format!("{what} {v} is larger than 8192")));
            }
        }
        if self.steps == 0 || self.steps > 1000 {
            return Err(EngineError::InvalidParams(format!("steps {} is not between 1 and 1000", self.steps)));
        }
        if !self.cfg_scale.is_finite() || self.cfg_scale < 0.0 {
            return Err(EngineError::InvalidParams(format!("CFG scale {} is not a non-negative number", self.cfg_scale)));
        }
        Ok(sampler)
    }
}
