//! Fully connected layers, as PyTorch's `nn.Linear` (`weight` `[out, in]`, optional `bias`).
//! On the CPU in f32 all rows of the input, whatever its batch, go through one matrix product
//! against the weight where it lies, into an output that already holds the bias. candle's
//! `Linear` broadcasts the weight over the batch and the product packs it again for each batch
//! element, then adds the bias in a second pass: the text encoder's short sequences (77 tokens,
//! a batch of two for CFG) paid for that. Other devices use candle's.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;

use std::sync::Arc;

use crate::model::adapters::slots::{self, WeightSlot};
use crate::model::cpu_storage::{contiguous_f32, is_weight_dtype, with_weight_f32};
use crate::model::matmul::Product;

#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    /// Where an adapter (LoRA) puts the weight this layer computes with for a job.
    slot: Option<Arc<WeightSlot>>,
}

/// `weight` and `bias`, as `nn.Linear(in_dim, out_dim)`.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear::new(
        vb.get((out_dim, in_dim), "weight")?,
        Some(vb.get(out_dim, "bias")?),
    )
    .adaptable(vb.prefix()))
}

/// `weight` only, as `nn.Linear(in_dim, out_dim, bias=False)`.
pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear::new(vb.get((out_dim, in_dim), "weight")?, None).adaptable(vb.prefix()))
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            slot: None,
        }
    }

    /// The layer, registered as `name` for adapters when its network is being collected.
    pub fn adaptable(mut self, name: String) -> Self {
        self.slot = slots::register(name, &self.weight);
        self
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The dtype the layer computes in. A bias is always held in the network's compute dtype
    /// (f32 beside a weight kept half on the CPU, f16 in a network that computes in f16, on
    /// the CPU too); without one, a half weight on the CPU is taken as kept half.
    pub fn compute_dtype(&self) -> DType {
        if let Some(bias) = &self.bias {
            return bias.dtype();
        }
        match self.weight.dtype() {
            DType::F16 | DType::BF16 if self.weight.device().is_cpu() => DType::F32,
            dtype => dtype,
        }
    }

    fn cpu_fast(&self, x: &Tensor, weight: &Tensor) -> bool {
        x.device().is_cpu()
            && x.dtype() == DType::F32
            && is_weight_dtype(weight.dtype())
            && weight.is_contiguous()
            && self.bias.as_ref().is_none_or(|b| b.dtype() == DType::F32)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let adapted = self.slot.as_ref().and_then(|s| s.current());
        let weight = adapted.as_ref().unwrap_or(&self.weight);
        if self.cpu_fast(x, weight) {
            let out_dim = weight.dim(0)?;
            let bias = match &self.bias {
                Some(b) => b.clone(),
                None => Tensor::zeros(out_dim, DType::F32, x.device())?,
            };
            return x.contiguous()?.apply_op3_no_bwd(weight, &bias, &CpuLinear);
        }
        // candle 0.11's Linear is wrong on a transposed input with a batch above 1.
        let weight = weight.to_dtype(x.dtype())?;
        candle_nn::Linear::new(weight, self.bias.clone()).forward(&x.contiguous()?)
    }
}

struct CpuLinear;

impl CustomOp3 for CpuLinear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, bias) = (
            contiguous_f32(s1, l1, "linear")?,
            contiguous_f32(s3, l3, "linear")?,
        );
        let (out_dim, in_dim) = l2.shape().dims2()?;
        let dims = l1.shape().dims();
        if dims.last() != Some(&in_dim) || bias.len() != out_dim {
            candle_core::bail!(
                "linear: input {:?} against a weight [{out_dim}, {in_dim}] and a bias of {}",
                dims,
                bias.len()
            );
        }
        let rows = x.len() / in_dim.max(1);
        let mut out = Vec::with_capacity(rows * out_dim);
        for _ in 0..rows {
            out.extend_from_slice(bias);
        }
        // out[rows × out] += x[rows × in] · wᵀ, w stored as [out × in].
        with_weight_f32(s2, l2, "linear", |w| {
            Product {
                m: rows,
                k: in_dim,
                n: out_dim,
                out_row_stride: out_dim,
                a_row_stride: in_dim,
                b_transposed: true,
                b_row_stride: in_dim,
                accumulate: true,
                threads: candle_core::utils::get_num_threads(),
            }
            .run(&mut out, x, w);
            Ok(())
        })?;
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = out_dim;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu_storage::max_abs_diff;
    use candle_core::Device;

    /// Against candle's `Linear`, with and without a bias, for 2-, 3- and 4-D inputs and a
    /// transposed (non-contiguous) one.
    #[test]
    fn matches_candles_linear() {
        let dev = Device::Cpu;
        let weight = Tensor::randn(0f32, 0.2, (7, 5), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 7, &dev).unwrap();
        let inputs = [
            Tensor::randn(0f32, 1.0, (3, 5), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (2, 4, 5), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (2, 5, 6), &dev)
                .unwrap()
                .transpose(1, 2)
                .unwrap(),
        ];
        for bias in [Some(bias), None] {
            let ours = Linear::new(weight.clone(), bias.clone());
            let theirs = candle_nn::Linear::new(weight.clone(), bias.clone());
            for x in &inputs {
                let got = ours.forward(x).unwrap();
                let want = theirs.forward(&x.contiguous().unwrap()).unwrap();
                assert_eq!(got.dims(), want.dims());
                let d = max_abs_diff(&got, &want);
                assert!(d < 1e-5, "{:?} bias {}: {d}", x.dims(), bias.is_some());
            }
        }
    }

    #[test]
    fn a_mismatched_input_is_an_error() {
        let dev = Device::Cpu;
        let layer = Linear::new(Tensor::zeros((7, 5), DType::F32, &dev).unwrap(), None);
        let x = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
        assert!(layer.forward(&x).is_err());
    }
}
