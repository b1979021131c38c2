//! A `VarBuilder` backend that makes up weights: normal with variance 1/fan-in for matrices and
//! kernels (so activations keep their scale through deep networks), ones for norm weights,
//! zeros for biases. (candle's device generators draw them; values are not reproducible and
//! need not be: only speed is measured.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

#[derive(Clone, Default)]
pub struct RandomWeights {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    bytes: AtomicU64,
}

impl RandomWeights {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                bytes: AtomicU64::new(0),
            }),
        }
    }

    /// Bytes of weights made so far.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }
}

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let dims = shape.dims();
        let leaf = name.rsplit('.').next().unwrap_or(name);
        let is_norm = name.contains("norm");
        let t = if leaf == "bias" {
            Tensor::zeros(dims, DType::F32, dev)?
        } else if is_norm && leaf == "weight" {
            Tensor::ones(dims, DType::F32, dev)?
        } else {
            let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
            Tensor::randn(0f32, (1.0 / fan_in as f64).sqrt() as f32, dims, dev)?
        };
        let t = t.to_dtype(dtype)?;
        self.inner.bytes.fetch_add(
            (t.elem_count() * dtype.size_in_bytes()) as u64,
            Ordering::Relaxed,
        );
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: random weights need a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}
