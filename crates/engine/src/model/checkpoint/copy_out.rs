//! A tensor's bytes copied out of a file mapping into memory of its own: on every core, into
//! huge pages where the kernel gives them. A model load is mostly this copy, and most of the copy
//! was the kernel zeroing and mapping fresh 4 KiB pages one fault at a time on one core.

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

/// Bytes each task copies (a multiple of every element size; a huge page).
const CHUNK: usize = 2 << 20;

/// Element types whose every bit pattern is a value (so raw file bytes make valid elements).
trait PlainFloat: candle_core::WithDType {}
impl PlainFloat for f32 {}
impl PlainFloat for half::f16 {}
impl PlainFloat for half::bf16 {}

/// `bytes` (little-endian, as safetensors and PyTorch store them) as a tensor of `dtype` and
/// `shape` on `device`; `None` for a dtype this does not copy (the caller's own path then).
pub(crate) fn tensor(
    bytes: &[u8],
    dtype: DType,
    shape: &[usize],
    device: &Device,
) -> candle_core::Result<Option<Tensor>> {
    if cfg!(target_endian = "big") {
        return Ok(None);
    }
    let t = match dtype {
        DType::F32 => copied::<f32>(bytes, shape)?,
        DType::F16 => copied::<half::f16>(bytes, shape)?,
        DType::BF16 => copied::<half::bf16>(bytes, shape)?,
        _ => return Ok(None),
    };
    t.to_device(device).map(Some)
}

fn copied<T: PlainFloat>(bytes: &[u8], shape: &[usize]) -> candle_core::Result<Tensor> {
    let size = std::mem::size_of::<T>();
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let Some(n) = n.filter(|n| n.checked_mul(size) == Some(bytes.len())) else {
        candle_core::bail!(
            "{} bytes for a {:?} tensor of shape {shape:?}",
            bytes.len(),
            T::DTYPE
        );
    };
    let mut v: Vec<T> = Vec::with_capacity(n);
    let base = v.as_mut_ptr() as usize;
    advise_huge_pages(base, bytes.len());
    bytes.par_chunks(CHUNK).enumerate().for_each(|(i, src)| {
        // SAFETY: chunk i is bytes [i·CHUNK, i·CHUNK + src.len()) of the n·size bytes `v` has
        // allocated; the chunks do not overlap, and the source is a different allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), (base as *mut u8).add(i * CHUNK), src.len())
        }
    });
    // SAFETY: all n elements were written above, and any bit pattern is a valid T.
    unsafe { v.set_len(n) };
    Tensor::from_vec(v, shape, &Device::Cpu)
}

/// Asks for transparent huge pages over the whole pages of a fresh allocation (where the system
/// is set to "madvise", as many are): a fault then maps 2 MiB instead of 4 KiB.
fn advise_huge_pages(start: usize, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let first = start.div_ceil(PAGE) * PAGE;
        let last = (start + len) / PAGE * PAGE;
        if last > first + (2 << 20) {
            // SAFETY: [first, last) lies inside an allocation this function's caller owns and
            // has not yet written; MADV_HUGEPAGE changes how its pages are backed, not what
            // they hold.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_the_bytes_and_wrong_lengths_are_refused() {
        let dev = Device::Cpu;
        // Larger than a chunk, not a multiple of it.
        let x = Tensor::randn(0f32, 1.0, (3, 700_001), &dev).unwrap();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let t = x.to_dtype(dtype).unwrap();
            let bytes = {
                let mut b = vec![];
                t.write_bytes(&mut b).unwrap();
                b
            };
            let back = tensor(&bytes, dtype, &[3, 700_001], &dev).unwrap().unwrap();
            let same = back
                .eq(&t)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(same as usize, 3 * 700_001, "{dtype:?}");
            assert!(tensor(&bytes[1..], dtype, &[3, 700_001], &dev).is_err());
            assert!(tensor(&bytes, dtype, &[3, 700_000], &dev).is_err());
            assert!(tensor(&bytes, dtype, &[usize::MAX, 3], &dev).is_err());
        }
        assert!(tensor(&[0; 8], DType::I64, &[1], &dev).unwrap().is_none());
    }
}
