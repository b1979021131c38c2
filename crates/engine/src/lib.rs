//! Pentimento's engine: Stable Diffusion 1.x/2.x models, samplers and jobs, and the PNG records
//! of what they make. It knows nothing of any GUI (this crate does not depend on one).
//!
//! Where to start reading: `model::StableDiffusion::load` opens a model (`checkpoint` reads
//! PyTorch files, `model::detect` and `model::ldm_yaml` decide its configuration); `generate`
//! and `inpaint` run jobs through `denoise::sample` with a `sampler`; `worker` runs them on a
//! thread for the app; `png_info` writes and reads the parameters PNGs carry.

pub mod atomic_file;
pub mod control;
pub mod denoise;
pub mod device;
pub mod error;
pub mod generate;
pub mod image;
pub mod inpaint;
pub mod interrupt;
pub mod job;
pub mod mask;
pub mod model;
pub mod params;
pub mod png_info;
pub mod preview;
pub mod prompt;
pub mod rect;
pub mod regular_file;
pub mod rng;
pub mod sampler;
pub mod sweep;
pub mod text;
pub mod worker;

pub use error::{EngineError, Result};
pub use image::RgbImage;
pub use job::{Generated, Job, JobKind};
pub use model::checkpoint;
pub use model::{LoadOptions, StableDiffusion};
pub use params::GenerationParams;
