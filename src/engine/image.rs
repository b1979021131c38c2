//! Images as they cross the engine's boundary: plain 8-bit RGB buffers with their size.

use candle_core::{DType, Tensor};

use super::error::{Result, TensorContext};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    /// Row-major, 3 bytes a pixel.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// A decoded VAE output `(1, 3, h, w)` in [-1, 1], quantised as diffusers does:
    /// `round(clamp(x / 2 + 0.5, 0, 1) · 255)`.
    pub fn from_vae_output(t: &Tensor) -> Result<Self> {
        let (_, c, h, w) = t.dims4().context("decoded image")?;
        if c != 3 {
            return Err(super::error::EngineError::InvalidParams(format!("decoded image has {c} channels, expected 3")));
        }
        let unit = ((t.to_dtype(DType::F32).context("decoded image")? / 2.0).context("scale")? + 0.5)
            .and_then(|t| t.clamp(0f32, 1f32))
            .context("decoded image")?;
        let hwc: Vec<f32> = unit
            .squeeze(0)
            .and_then(|t| t.permute((1, 2, 0)))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .context("decoded image")?;
        let pixels = hwc.into_iter().map(|v| (v * 255.0).round() as u8).collect();
        Ok(Self { width: w, height: h, pixels })
    }
}
