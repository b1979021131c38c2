//! What our CPU kernels (convolution, GroupNorm, attention) share: reading a tensor's storage as
//! a contiguous f32 slice, and a weight kept in half precision as f32.

use std::cell::RefCell;

use candle_core::{CpuStorage, DType, Layout, Result};
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
    let widen = |into: &mut [f32]| widen_into(s, start..end, into);
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

/// `t` in `dtype`: half to f32 on the CPU through [`widened_to_f32`], anything else through
/// candle.
pub(crate) fn to_dtype(t: &candle_core::Tensor, dtype: DType) -> Result<candle_core::Tensor> {
    if t.dtype() == dtype {
        return Ok(t.clone());
    }
    if dtype == DType::F32 {
        if let Some(wide) = widened_to_f32(t)? {
            return Ok(wide);
        }
    }
    t.to_dtype(dtype)
}

/// A contiguous f16/bf16 tensor on the CPU widened to f32 on every core (`half`'s F16C path;
/// candle's element-by-element `to_dtype` took ten times as long, most of a model's load).
/// `None` for any other tensor.
pub(crate) fn widened_to_f32(t: &candle_core::Tensor) -> Result<Option<candle_core::Tensor>> {
    if !t.device().is_cpu() || !t.is_contiguous() {
        return Ok(None);
    }
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Ok(None);
    };
    if !matches!(cpu, CpuStorage::F16(_) | CpuStorage::BF16(_)) {
        return Ok(None);
    }
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Ok(None);
    };
    // Zeroed lazily by the allocator: the pages are first touched by the widening, on every core.
    let mut out = vec![0f32; end - start];
    widen_into(cpu, start..end, &mut out);
    drop(storage);
    candle_core::Tensor::from_vec(out, t.shape(), t.device()).map(Some)
}

/// Whether every value of a CPU float buffer is finite: exponent bits tested a chunk at a time
/// on every core (no early exit inside a chunk, so it vectorises).
pub(crate) fn all_finite_cpu(s: &CpuStorage, range: std::ops::Range<usize>) -> bool {
    fn check<T: Sync>(v: &[T], finite: impl Fn(&T) -> bool + Sync) -> bool {
        v.par_chunks(WIDEN_CHUNK)
            .all(|c| c.iter().fold(true, |ok, x| ok & finite(x)))
    }
    match s {
        CpuStorage::F32(v) => check(&v[range], |x| x.is_finite()),
        CpuStorage::F64(v) => check(&v[range], |x| x.is_finite()),
        // An all-ones exponent is an infinity or a NaN.
        CpuStorage::F16(v) => check(&v[range], |x| x.to_bits() & 0x7C00 != 0x7C00),
        CpuStorage::BF16(v) => check(&v[range], |x| x.to_bits() & 0x7F80 != 0x7F80),
        _ => true,
    }
}

/// Widens `s[range]` (f16 or bf16) into `into`, on every core.
fn widen_into(s: &CpuStorage, range: std::ops::Range<usize>, into: &mut [f32]) {
    match s {
        CpuStorage::F16(v) => into
            .par_chunks_mut(WIDEN_CHUNK)
            .zip(v[range].par_chunks(WIDEN_CHUNK))
            .for_each(|(o, i)| i.convert_to_f32_slice(o)),
        CpuStorage::BF16(v) => into
            .par_chunks_mut(WIDEN_CHUNK)
            .zip(v[range].par_chunks(WIDEN_CHUNK))
            .for_each(|(o, i)| i.convert_to_f32_slice(o)),
        _ => unreachable!("callers pass half-precision storage"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    #[test]
    fn widening_is_candles_conversion_and_the_finite_check_finds_every_non_finite() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (3, 70_001), &dev).unwrap();
        for dtype in [DType::F16, DType::BF16] {
            let half = x.to_dtype(dtype).unwrap();
            let ours = widened_to_f32(&half).unwrap().unwrap();
            let theirs = half.to_dtype(DType::F32).unwrap();
            assert_eq!(
                ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
            let finite = |t: &Tensor| {
                let (s, l) = t.storage_and_layout();
                let candle_core::Storage::Cpu(cpu) = &*s else {
                    unreachable!()
                };
                all_finite_cpu(cpu, l.start_offset()..l.start_offset() + t.elem_count())
            };
            assert!(finite(&half));
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                // At the end of the last chunk, where a fold that stopped early would miss it.
                let mut v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let last = v.len() - 1;
                v[last] = bad;
                let t = Tensor::from_vec(v, x.shape(), &dev).unwrap();
                assert!(!finite(&t), "f32 {bad}");
                assert!(!finite(&t.to_dtype(dtype).unwrap()), "{dtype:?} {bad}");
            }
        }
        // f32 and non-contiguous tensors are not widened here.
        assert!(widened_to_f32(&x).unwrap().is_none());
        let t = x.to_dtype(DType::F16).unwrap().t().unwrap();
        assert!(widened_to_f32(&t).unwrap().is_none());
    }
}
