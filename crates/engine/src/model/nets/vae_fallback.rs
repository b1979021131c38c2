//! SD's VAE overflows in f16 on some images (diffusers marks it `force_upcast`). A model that
//! computes in f16 keeps a way to build its VAE again in f32, built only the first time a
//! half-precision decode or encode comes out with NaN or infinity.

use std::sync::OnceLock;

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::model::vae::Vae;

type Loader = Box<dyn Fn(DType) -> Result<Vae> + Send + Sync>;

pub struct VaeFallback {
    load: Loader,
    full: OnceLock<Vae>,
}

impl VaeFallback {
    pub fn new(load: impl Fn(DType) -> Result<Vae> + Send + Sync + 'static) -> Self {
        Self {
            load: Box::new(load),
            full: OnceLock::new(),
        }
    }

    /// The VAE in f32, loaded on first use.
    pub fn full_precision(&self) -> Result<&Vae> {
        if let Some(v) = self.full.get() {
            return Ok(v);
        }
        let vae = (self.load)(DType::F32)?;
        Ok(self.full.get_or_init(|| vae))
    }

    pub fn is_loaded(&self) -> bool {
        self.full.get().is_some()
    }
}

/// Whether `t` holds a NaN or an infinity.
pub fn has_non_finite(t: &Tensor) -> candle_core::Result<bool> {
    let sum = t
        .to_dtype(DType::F32)?
        .abs()?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(!sum.is_finite())
}
