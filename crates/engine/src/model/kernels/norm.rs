//! GroupNorm, optionally followed by SiLU (as every ResNet block and output head uses it). On
//! the CPU in f32 it is one pass over the data per group in place of candle's eight tensor ops
//! with their temporaries; elsewhere it is those ops.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::model::cpu_storage::contiguous_f32;
use crate::model::fast_math::{self, with_wide_vectors};
use crate::model::kernels::layout::Plane;

#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

/// Loads `weight` and `bias` of `channels` as diffusers' `nn.GroupNorm`.
pub fn group_norm(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<GroupNorm> {
    if groups == 0 || !channels.is_multiple_of(groups) {
        candle_core::bail!("{channels} channels cannot form {groups} groups");
    }
    Ok(GroupNorm {
        weight: vb.get(channels, "weight")?,
        bias: vb.get(channels, "bias")?,
        groups,
        eps,
    })
}

impl GroupNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, false)
    }

    /// `silu(group_norm(x))`.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, true)
    }

    /// This norm's statistics of a whole-image activation, for `forward_with`.
    pub fn statistics(&self, x: &Plane) -> Result<Vec<(f64, f64)>> {
        x.group_statistics(self.groups, self.eps)
    }

    /// The norm of a tile of an image, with the whole image's `statistics` (mean and
    /// `1 / sqrt(var + eps)` per image and group), optionally followed by SiLU. Computed as the
    /// fused pass computes it, so a tiled pass gives the whole pass's values.
    pub fn forward_with(
        &self,
        x: &Tensor,
        statistics: &[(f64, f64)],
        silu: bool,
    ) -> Result<Tensor> {
        let (b, c) = (x.dim(0)?, x.dim(1)?);
        if statistics.len() != b * self.groups {
            candle_core::bail!(
                "{} group statistics for {b} images of {} groups",
                statistics.len(),
                self.groups
            );
        }
        if x.device().is_cpu() && x.dtype() == DType::F32 && self.weight.dtype() == DType::F32 {
            let op = Fused {
                groups: self.groups,
                eps: self.eps,
                silu,
                statistics: Some(statistics.to_vec()),
            };
            return x
                .contiguous()?
                .apply_op3_no_bwd(&self.weight, &self.bias, &op);
        }
        let weight = self.weight.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let bias = self.bias.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let per_group = c / self.groups;
        let (mut scale, mut shift) = (Vec::with_capacity(b * c), Vec::with_capacity(b * c));
        for bi in 0..b {
            for ch in 0..c {
                let (mean, inv) = statistics[bi * self.groups + ch / per_group];
                scale.push((inv * weight[ch]) as f32);
                shift.push((bias[ch] - mean * inv * weight[ch]) as f32);
            }
        }
        let as_tensor =
            |v: Vec<f32>| Tensor::from_vec(v, (b, c, 1, 1), x.device())?.to_dtype(x.dtype());
        let y = x
            .broadcast_mul(&as_tensor(scale)?)?
            .broadcast_add(&as_tensor(shift)?)?;
        if silu {
            y.silu()
        } else {
            Ok(y)
        }
    }

    fn apply(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 && self.weight.dtype() == DType::F32 {
            let op = Fused {
                groups: self.groups,
                eps: self.eps,
                silu,
                statistics: None,
            };
            return x
                .contiguous()?
                .apply_op3_no_bwd(&self.weight, &self.bias, &op);
        }
        let y = self.reference(x)?;
        if silu {
            y.silu()
        } else {
            Ok(y)
        }
    }

    /// The computation with tensor ops, statistics in f32 (what candle_nn does).
    fn reference(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (b, c) = (dims[0], dims[1]);
        let n = x.elem_count() / (b * self.groups);
        let xs = x.reshape((b, self.groups, n))?.to_dtype(DType::F32)?;
        let mean = (xs.sum_keepdim(2)? / n as f64)?;
        let centred = xs.broadcast_sub(&mean)?;
        let var = (centred.sqr()?.sum_keepdim(2)? / n as f64)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let mut wdims = vec![1; dims.len()];
        wdims[1] = c;
        normed
            .to_dtype(x.dtype())?
            .reshape(dims)?
            .broadcast_mul(&self.weight.reshape(wdims.clone())?)?
            .broadcast_add(&self.bias.reshape(wdims)?)
    }
}

struct Fused {
    groups: usize,
    eps: f64,
    silu: bool,
    /// Mean and `1 / sqrt(var + eps)` per image and group, when they come from elsewhere (the
    /// whole image, for a tile); computed from the input otherwise.
    statistics: Option<Vec<(f64, f64)>>,
}

impl CustomOp3 for Fused {
    fn name(&self) -> &'static str {
        "group-norm"
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
        let x = contiguous_f32(s1, l1, "group-norm")?;
        let weight = contiguous_f32(s2, l2, "group-norm")?;
        let bias = contiguous_f32(s3, l3, "group-norm")?;
        let dims = l1.shape().dims();
        let (b, c) = (dims[0], dims[1]);
        if self
            .statistics
            .as_ref()
            .is_some_and(|s| s.len() != b * self.groups)
        {
            candle_core::bail!("group-norm: statistics for another batch or grouping");
        }
        let spatial = x.len() / (b * c);
        let per_group = c / self.groups;
        let group_len = per_group * spatial;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(group_len)
            .zip(x.par_chunks(group_len))
            .enumerate()
            .for_each(|(i, (o, xg))| {
                let (mean, inv) = match &self.statistics {
                    Some(s) => s[i],
                    None => group_statistics(xg, self.eps),
                };
                let first_channel = (i % self.groups) * per_group;
                for (k, (oc, xc)) in o.chunks_mut(spatial).zip(xg.chunks(spatial)).enumerate() {
                    let ch = first_channel + k;
                    let scale = (inv * weight[ch] as f64) as f32;
                    let shift = (bias[ch] as f64 - mean * inv * weight[ch] as f64) as f32;
                    with_wide_vectors(
                        #[inline(always)]
                        || normalise(oc, xc, scale, shift, self.silu),
                    );
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Mean and `1 / sqrt(var + eps)` of one group: two passes in f64, as stable as PyTorch's, in
/// lanes so that they vectorise.
pub(crate) fn group_statistics(xg: &[f32], eps: f64) -> (f64, f64) {
    with_wide_vectors(
        #[inline(always)]
        || {
            let n = xg.len() as f64;
            let mean = lane_sum(xg, |v| v as f64) / n;
            let var = lane_sum(xg, |v| (v as f64 - mean).powi(2)) / n;
            (mean, 1.0 / (var + eps).sqrt())
        },
    )
}

#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    const LANES: usize = 8;
    let mut sums = [0f64; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (s, &v) in sums.iter_mut().zip(c) {
            *s += f(v);
        }
    }
    chunks.remainder().iter().map(|&v| f(v)).sum::<f64>() + sums.iter().sum::<f64>()
}

#[inline(always)]
fn normalise(out: &mut [f32], x: &[f32], scale: f32, shift: f32, silu: bool) {
    if silu {
        for (y, &v) in out.iter_mut().zip(x) {
            *y = fast_math::silu(v * scale + shift);
        }
    } else {
        for (y, &v) in out.iter_mut().zip(x) {
            *y = v * scale + shift;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu_storage::max_abs_diff;
    use candle_core::Device;

    #[test]
    fn the_fused_pass_matches_the_tensor_ops() {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 3.0, (2, 8, 5, 7), &dev).unwrap() + 1.5).unwrap();
        let norm = GroupNorm {
            weight: Tensor::randn(1f32, 0.5, 8, &dev).unwrap(),
            bias: Tensor::randn(0f32, 0.5, 8, &dev).unwrap(),
            groups: 4,
            eps: 1e-5,
        };
        let want = norm.reference(&x).unwrap();
        for (got, want) in [
            (norm.forward(&x).unwrap(), want.clone()),
            (norm.forward_silu(&x).unwrap(), want.silu().unwrap()),
        ] {
            let d = max_abs_diff(&got, &want);
            assert!(d < 1e-5, "{d}");
        }
    }

    /// With the whole image's statistics, a norm of part of it (the fused pass in f32, the
    /// tensor ops in another dtype) is that part of the whole norm.
    #[test]
    fn given_statistics_normalise_a_part_as_the_whole() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (2, 8, 6, 7), &dev)
            .unwrap()
            .affine(1.0, 1.5)
            .unwrap();
        let norm = GroupNorm {
            weight: Tensor::randn(1f32, 0.5, 8, &dev).unwrap(),
            bias: Tensor::randn(0f32, 0.5, 8, &dev).unwrap(),
            groups: 4,
            eps: 1e-5,
        };
        let stats = norm.statistics(&Plane::from_tensor(&x).unwrap()).unwrap();
        let whole = norm.forward_silu(&x).unwrap().narrow(2, 2, 3).unwrap();
        let part = x.narrow(2, 2, 3).unwrap();
        let fused = norm.forward_with(&part, &stats, true).unwrap();
        assert!(max_abs_diff(&fused, &whole) < 1e-6);
        let ops = norm
            .forward_with(&part.to_dtype(DType::F64).unwrap(), &stats, true)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert!(max_abs_diff(&ops, &whole) < 1e-5);
        assert!(norm.forward_with(&part, &stats[..4], true).is_err());
    }
}
