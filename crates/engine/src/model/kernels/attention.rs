//! Scaled dot-product attention whose memory does not grow with tokens²: queries are taken in
//! chunks so that at most `SCORE_BUDGET` attention scores exist at once. A 1024×1024 image has
//! 16384 tokens at the UNet's first level; all its scores at once would take 8 heads × 16384²
//! × 4 bytes × 2 (CFG) = 17 GiB; a chunk takes 16 MiB (small enough for the allocator to reuse
//! rather than map fresh zeroed pages each time).

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::model::cpu_storage::contiguous_f32;
use crate::model::fast_math::{exp_non_positive, with_wide_vectors};
use crate::model::matmul::Product;

/// Most f32 attention scores held at once: 2²² (16 MiB).
pub const SCORE_BUDGET: usize = 1 << 22;

/// Multi-head attention over `(batch, tokens, heads · head_dim)` tensors, computed in f32
/// whatever the weights' dtype (SD 2.x overflows in f16 otherwise).
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
) -> Result<Tensor> {
    chunked_attention(q, k, v, heads, SCORE_BUDGET)
}

/// The same with an explicit budget of scores (tests use small ones).
pub fn chunked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    budget: usize,
) -> Result<Tensor> {
    let (b, n, d) = q.dims3()?;
    let m = k.dim(1)?;
    let head_dim = d / heads;
    let dtype = q.dtype();
    let split = |t: &Tensor, len: usize| -> Result<Tensor> {
        t.reshape((b, len, heads, head_dim))?
            .transpose(1, 2)?
            .contiguous()?
            .to_dtype(DType::F32)
    };
    let q = (split(q, n)? * (head_dim as f64).powf(-0.5))?;
    if q.device().is_cpu() {
        let out = q.apply_op3_no_bwd(
            &split(k, m)?,
            &split(v, m)?,
            &CpuAttention {
                budget,
                interrupt: crate::interrupt::current(),
            },
        )?;
        return out.to_dtype(dtype)?.transpose(1, 2)?.reshape((b, n, d));
    }
    let k_t = split(k, m)?.t()?;
    let v = split(v, m)?;
    let rows = (budget / (b * heads * m).max(1)).clamp(1, n);
    let attend = |q: &Tensor| -> Result<Tensor> {
        candle_nn::ops::softmax_last_dim(&q.matmul(&k_t)?)?.matmul(&v)
    };
    let out = if rows >= n {
        attend(&q)?
    } else {
        let chunks = (0..n)
            .step_by(rows)
            .map(|start| attend(&q.narrow(2, start, rows.min(n - start))?))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&chunks, 2)?
    };
    out.to_dtype(dtype)?.transpose(1, 2)?.reshape((b, n, d))
}

/// The CPU path in one pass per block of query rows: scores into a small reused buffer by one
/// matrix product, softmax in place, then the product with the values straight into the output.
/// Heads and row blocks run in parallel.
struct CpuAttention {
    budget: usize,
    /// The job's cancel check, consulted between row blocks (they run on rayon's threads).
    interrupt: Option<crate::interrupt::Interrupt>,
}

impl CustomOp3 for CpuAttention {
    fn name(&self) -> &'static str {
        "attention"
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
        let (q, k, v) = (
            contiguous_f32(s1, l1, "attention")?,
            contiguous_f32(s2, l2, "attention")?,
            contiguous_f32(s3, l3, "attention")?,
        );
        let (b, h, n, hd) = l1.shape().dims4()?;
        let m = l2.shape().dims4()?.2;
        // Per task: a block of rows whose scores stay within a slice of the budget, so that all
        // tasks together hold about `budget` scores.
        let tasks = rayon::current_num_threads().max(1);
        let rows = (self.budget / tasks / m.max(1)).clamp(1, n);
        let mut out = vec![0f32; b * h * n * hd];
        out.par_chunks_mut(n * hd).enumerate().for_each(|(i, o)| {
            let (qi, ki, vi) = (
                &q[i * n * hd..(i + 1) * n * hd],
                &k[i * m * hd..(i + 1) * m * hd],
                &v[i * m * hd..(i + 1) * m * hd],
            );
            o.par_chunks_mut(rows * hd).enumerate().for_each(|(c, oc)| {
                if self.interrupt.as_ref().is_some_and(|i| i.requested()) {
                    return;
                }
                let r = oc.len() / hd;
                let mut scores = vec![0f32; r * m];
                let q_block = &qi[c * rows * hd..];
                let single = |m, k, n, b_transposed| Product {
                    m,
                    k,
                    n,
                    out_row_stride: n,
                    a_row_stride: k,
                    b_transposed,
                    b_row_stride: if b_transposed { k } else { n },
                    accumulate: false,
                    threads: 1,
                };
                // scores[r × m] = q_block[r × hd] · kᵀ[hd × m]
                single(r, hd, m, true).run(&mut scores, q_block, ki);
                let sums: Vec<f32> = scores.chunks_mut(m).map(exp_shifted_in_place).collect();
                // oc[r × hd] = scores[r × m] · v[m × hd], then each row over its softmax sum:
                // hd divisions per row instead of m.
                single(r, m, hd, false).run(oc, &scores, vi);
                for (row, sum) in oc.chunks_mut(hd).zip(sums) {
                    let inv = 1.0 / sum;
                    row.iter_mut().for_each(|v| *v *= inv);
                }
            });
        });
        if self.interrupt.as_ref().is_some_and(|i| i.requested()) {
            return Err(crate::interrupt::interrupted());
        }
        Ok((CpuStorage::F32(out), Shape::from((b, h, n, hd))))
    }
}

/// Lanes of the reductions below: independent partial maxima and sums let the compiler use
/// vector registers (one running f32 sum would pin the loop to scalar code).
const LANES: usize = 16;

/// `e^(x − max)` for each value of `row`, in place; returns their sum (the softmax's divisor).
fn exp_shifted_in_place(row: &mut [f32]) -> f32 {
    with_wide_vectors(
        #[inline(always)]
        || exp_shifted_lanes(row),
    )
}

#[inline(always)]
fn exp_shifted_lanes(row: &mut [f32]) -> f32 {
    let mut maxima = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (m, &v) in maxima.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&maxima)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (s, v) in sums.iter_mut().zip(c.iter_mut()) {
            *v = exp_non_positive(*v - max);
            *s += *v;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp_non_positive(*v - max);
        sum += *v;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu_storage::max_abs_diff;
    use candle_core::Device;

    #[test]
    fn softmax_rows_of_any_length() {
        for len in [1, 5, 16, 17, 100, 4096] {
            let row: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % 97) as f32 * 0.3 - 9.0)
                .collect();
            let max = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let total: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            let mut got = row.clone();
            let sum = exp_shifted_in_place(&mut got);
            for (g, &v) in got.iter().zip(&row) {
                let g = g / sum;
                let want = (v as f64 - max).exp() / total;
                assert!(
                    (g as f64 - want).abs() < 1e-6 * want.max(1e-3),
                    "{len}: {g} vs {want}"
                );
            }
        }
    }

    #[test]
    fn the_cpu_pass_matches_the_tensor_ops() {
        let dev = Device::Cpu;
        let (b, h, n, m, hd) = (2, 3, 29, 17, 8);
        let q = Tensor::randn(0f32, 1.0, (b, h, n, hd), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, h, m, hd), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, h, m, hd), &dev).unwrap();
        let want = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t().unwrap()).unwrap())
            .unwrap()
            .matmul(&v)
            .unwrap();
        for budget in [1, 100, usize::MAX / 4] {
            let got = q
                .apply_op3_no_bwd(
                    &k,
                    &v,
                    &CpuAttention {
                        budget,
                        interrupt: crate::interrupt::current(),
                    },
                )
                .unwrap();
            let d = max_abs_diff(&got, &want);
            assert!(d < 1e-5, "budget {budget}: {d}");
        }
    }

    #[test]
    fn chunks_give_the_same_attention() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (2, 37, 16), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (2, 23, 16), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (2, 23, 16), &dev).unwrap();
        let whole = chunked_attention(&q, &k, &v, 4, usize::MAX).unwrap();
        // 2 · 4 · 23 scores per query row: a budget of 500 takes 2 rows at a time.
        for budget in [1, 500, 2000] {
            let chunked = chunked_attention(&q, &k, &v, 4, budget).unwrap();
            let diff = max_abs_diff(&whole, &chunked);
            assert!(diff < 1e-6, "budget {budget}: {diff}");
        }
    }
}
