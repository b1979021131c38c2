//! Scaled dot-product attention whose memory does not grow with tokens²: queries are taken in
//! chunks so that at most `SCORE_BUDGET` attention scores exist at once. A 1024×1024 image has
//! 16384 tokens at the UNet's first level; all its scores at once would take 8 heads × 16384²
//! × 4 bytes × 2 (CFG) = 17 GiB; a chunk takes 16 MiB (small enough for the allocator to reuse
//! rather than map fresh zeroed pages each time).

use candle_core::{DType, Result, Tensor};

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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
            let diff: f32 = (&whole - &chunked)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(diff < 1e-6, "budget {budget}: {diff}");
        }
    }
}
