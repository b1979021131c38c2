//! The diffusion engine: models, samplers and the sampling loop. Knows nothing of any GUI.

pub mod error;
pub mod model;
pub mod rng;
pub mod sampler;
pub mod text;
