//! GEGLU's gating, `value · GELU(gate)` over the two halves of the feed-forward projection. On
//! the CPU in f32 it is one pass with a vectorised erf, reading the halves where they lie;
//! elsewhere it is tensor ops (which on the CPU went through strided views and libm's erf).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::model::cpu_storage::contiguous_f32;
use crate::model::fast_math::{gelu_erf, with_wide_vectors};

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 64;

/// `h[…, :inner] · gelu(h[…, inner:])` for `h` of last dimension `2 · inner`, with the exact
/// (erf) GELU as diffusers' GEGLU.
pub fn geglu(h: &Tensor) -> Result<Tensor> {
    let last = h.rank().saturating_sub(1);
    let width = h.dim(last)?;
    if width % 2 != 0 {
        candle_core::bail!("GEGLU over an odd width {width}");
    }
    if h.device().is_cpu() && h.dtype() == DType::F32 {
        return h.contiguous()?.apply_op1_no_bwd(&CpuGeglu);
    }
    let inner = width / 2;
    let value = h.narrow(last, 0, inner)?;
    let gate = h.narrow(last, inner, inner)?;
    value * gate.gelu_erf()?
}

struct CpuGeglu;

impl CustomOp1 for CpuGeglu {
    fn name(&self) -> &'static str {
        "geglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let h = contiguous_f32(storage, layout, "geglu")?;
        let mut dims = layout.shape().dims().to_vec();
        let width = dims.last().copied().unwrap_or(0);
        let inner = width / 2;
        if let Some(d) = dims.last_mut() {
            *d = inner;
        }
        let mut out = vec![0f32; h.len() / 2];
        if inner > 0 {
            out.par_chunks_mut(inner * ROWS_PER_TASK)
                .zip(h.par_chunks(width * ROWS_PER_TASK))
                .for_each(|(o, rows)| {
                    with_wide_vectors(
                        #[inline(always)]
                        || gate_rows(o, rows, inner),
                    )
                });
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

#[inline(always)]
fn gate_rows(out: &mut [f32], rows: &[f32], inner: usize) {
    for (o, row) in out.chunks_mut(inner).zip(rows.chunks(2 * inner)) {
        let (value, gate) = row.split_at(inner);
        for ((y, &v), &g) in o.iter_mut().zip(value).zip(gate) {
            *y = v * gelu_erf(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu_storage::max_abs_diff;
    use candle_core::Device;

    #[test]
    fn the_cpu_pass_matches_the_tensor_ops() {
        let h = Tensor::randn(0f32, 2.0, (2, 70, 2 * 24), &Device::Cpu).unwrap();
        let got = geglu(&h).unwrap();
        let want = (h.narrow(2, 0, 24).unwrap() * h.narrow(2, 24, 24).unwrap().gelu_erf().unwrap())
            .unwrap();
        assert_eq!(got.dims(), &[2, 70, 24]);
        let d = max_abs_diff(&got, &want);
        assert!(d < 1e-5, "{d}");
        let odd = Tensor::zeros((3, 5), DType::F32, &Device::Cpu).unwrap();
        assert!(geglu(&odd).is_err());
    }
}
