//! What our CPU kernels (convolution, GroupNorm, attention) share: reading a tensor's storage as
//! a contiguous f32 slice, and a weight kept in half precision as f32.

use std::cell::RefCell;

use candle_core::{CpuStorage, Layout, Result};
use half::slice::HalfFloatSliceExt as _;
use rayon::prelude::*;

/// The elements of a contiguous f32 tensor.
pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("{op}: contiguous f32 expected"),
    }
}

thread_local! {
    /// Where this thread widens half-precision weights: reused from layer to layer, so a step
    /// allocates (and faults in) no new pages for them.
    static WIDENED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Elements widened per task: large enough that a task's overhead vanishes.
const WIDEN_CHUNK: usize = 1 << 16;

/// Runs `f` on a contiguous weight as f32: in place when stored in f32, else widened from f16
/// or bf16 (exactly: every half value is an f32 value) into this thread's buffer. The buffer is
/// taken while `f` runs: a kernel that widens again on this thread (rayon may run another
/// layer's task while this one waits) gets a buffer of its own.
pub(crate) fn with_weight_f32<R>(
    s: &CpuStorage,
    l: &Layout,
    op: &str,
    f: impl FnOnce(&[f32]) -> Result<R>,
) -> Result<R> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: a contiguous weight expected");
    };
    let widen = |into: &mut [f32]| match s {
        CpuStorage::F16(v) => into
            .par_chunks_mut(WIDEN_CHUNK)
            .zip(v[start..end].par_chunks(WIDEN_CHUNK))
            .for_each(|(o, i)| i.convert_to_f32_slice(o)),
        CpuStorage::BF16(v) => into
            .par_chunks_mut(WIDEN_CHUNK)
            .zip(v[start..end].par_chunks(WIDEN_CHUNK))
            .for_each(|(o, i)| i.convert_to_f32_slice(o)),
        _ => unreachable!("matched below"),
    };
    match s {
        CpuStorage::F32(data) => f(&data[start..end]),
        CpuStorage::F16(_) | CpuStorage::BF16(_) => {
            let mut buffer = WIDENED.with(|b| std::mem::take(&mut *b.borrow_mut()));
            if buffer.len() < end - start {
                buffer.resize(end - start, 0.0);
            }
            widen(&mut buffer[..end - start]);
            let out = f(&buffer[..end - start]);
            WIDENED.with(|b| {
                let mut kept = b.borrow_mut();
                if kept.len() < buffer.len() {
                    *kept = buffer;
                }
            });
            out
        }
        _ => candle_core::bail!("{op}: an f32, f16 or bf16 weight expected"),
    }
}

/// Whether a weight of this dtype can go to our CPU kernels (kept half, it is widened there).
pub(crate) fn is_weight_dtype(dtype: candle_core::DType) -> bool {
    use candle_core::DType;
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

/// Largest absolute difference between two tensors of one shape (for tests).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("tensors of one shape")
}
