//! The networks: UNet, VAE, CLIP text encoder and TAESD, built from a `VarBuilder` as plain
//! structs with explicit forwards (candle's model style), and their configs.

pub mod blocks;
pub mod clip;
pub mod config;
pub mod controlnet;
pub mod depth_anything;
pub mod taesd;
pub mod transformer;
pub mod unet;
pub mod vae;
pub mod vae_fallback;
