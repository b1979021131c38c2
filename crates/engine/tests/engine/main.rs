//! The engine's tests in one binary (it links once): references against diffusers, prompt
//! encoding, batches, tiling, half precision, RePaint's statistics and the worker thread.

#[path = "../../../../tests/support/fixtures.rs"]
mod common;

mod adapters;
mod batch;
mod half_precision;
mod half_weights;
mod lycoris;
mod prompt_encoding;
mod reference;
mod repaint_gaussian;
mod vae_tiling;
mod worker;
