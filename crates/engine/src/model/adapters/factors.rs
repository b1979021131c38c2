//! The products that rebuild a layer's change from an adapter's factors, as AUTOMATIC1111's
//! Lora extension and LyCORIS define them. Shapes are checked by the caller (`lora`) before any
//! factor is read; these only compute, in f32 on the CPU.

use candle_core::{Result, Tensor};

/// `up · down` with both flattened to matrices: `[out, r] · [r, n]` → `[out, n]`.
pub fn low_rank(up: &Tensor, down: &Tensor) -> Result<Tensor> {
    let up = up.flatten_from(1)?;
    let down = down.flatten_from(1)?;
    up.matmul(&down)
}

/// The Tucker (CP) form LyCORIS stores 3×3 convolutions in: `core [r1, r2, kh, kw]` with
/// `left [r1, out]` and `right [r2, in]` make `[out, in, kh, kw]`, each kernel position being
/// `leftᵀ · core[.., .., k, l] · right` (lyco_helpers' `make_weight_cp`).
pub fn tucker(core: &Tensor, left: &Tensor, right: &Tensor) -> Result<Tensor> {
    let (r1, r2, kh, kw) = core.dims4()?;
    let (_, out) = left.dims2()?;
    let (_, inp) = right.dims2()?;
    let k = kh * kw;
    // [k, r1, r2]: one core matrix per kernel position.
    let per_position = core
        .reshape((r1, r2, k))?
        .permute((2, 0, 1))?
        .contiguous()?;
    let left_t = left
        .t()?
        .contiguous()?
        .unsqueeze(0)?
        .broadcast_as((k, out, r1))?;
    let right = right
        .contiguous()?
        .unsqueeze(0)?
        .broadcast_as((k, r2, inp))?;
    let rebuilt = left_t
        .contiguous()?
        .matmul(&per_position)?
        .matmul(&right.contiguous()?)?;
    // [k, out, in] → [out, in, kh, kw]
    rebuilt
        .permute((1, 2, 0))?
        .contiguous()?
        .reshape((out, inp, kh, kw))
}

/// The Kronecker product of `a [p, q]` and `b [r, s]` (LoKr): `[p·r, q·s]` with
/// `out[i·r + k, j·s + l] = a[i, j] · b[k, l]`. A 4-D `b` (a convolution's `[c, d, kh, kw]`)
/// comes flattened to `[c, d·kh·kw]`, which lays out the same numbers as kron with `a`
/// widened to `[p, q, 1, 1]`.
pub fn kron(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (p, q) = a.dims2()?;
    let (r, s) = b.dims2()?;
    let a = a.reshape((p, 1, q, 1))?;
    let b = b.reshape((1, r, 1, s))?;
    a.broadcast_mul(&b)?.reshape((p * r, q * s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn kron_lays_blocks_out_row_major() {
        let a = t(&[1., 2., 3., 4.], &[2, 2]);
        let b = t(&[0., 1., 1., 0.], &[2, 2]);
        let k = kron(&a, &b).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(
            k,
            vec![
                vec![0., 1., 0., 2.],
                vec![1., 0., 2., 0.],
                vec![0., 3., 0., 4.],
                vec![3., 0., 4., 0.]
            ]
        );
    }

    /// The Tucker product against its definition written out as sums.
    #[test]
    fn tucker_matches_its_sums() {
        let (r1, r2, out, inp, kh, kw) = (2, 3, 4, 5, 3, 2);
        let n = |len: usize, seed: f32| -> Vec<f32> {
            (0..len).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
        };
        let (cv, lv, rv) = (
            n(r1 * r2 * kh * kw, 1.0),
            n(r1 * out, 2.0),
            n(r2 * inp, 3.0),
        );
        let got = tucker(
            &t(&cv, &[r1, r2, kh, kw]),
            &t(&lv, &[r1, out]),
            &t(&rv, &[r2, inp]),
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
        for o in 0..out {
            for i in 0..inp {
                for k in 0..kh {
                    for l in 0..kw {
                        let mut want = 0.0;
                        for a in 0..r1 {
                            for b in 0..r2 {
                                want += lv[a * out + o]
                                    * cv[((a * r2 + b) * kh + k) * kw + l]
                                    * rv[b * inp + i];
                            }
                        }
                        let at = ((o * inp + i) * kh + k) * kw + l;
                        assert!((got[at] - want).abs() < 1e-5, "{o} {i} {k} {l}");
                    }
                }
            }
        }
    }
}
