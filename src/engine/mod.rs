//! The diffusion engine: models, samplers and the sampling loop. Knows nothing of any GUI.

pub mod checkpoint;
pub mod denoise;
pub mod device;
pub mod error;
pub mod generate;
pub mod image;
pub mod inpaint;
pub mod mask;
pub mod model;
pub mod params;
pub mod preview;
pub mod prompt;
pub mod rng;
pub mod sampler;
pub mod text;
pub mod worker;

pub use error::{EngineError, Result};
pub use image::RgbImage;
pub use model::{LoadOptions, StableDiffusion};
pub use params::GenerationParams;
