//! Row-major f32 matrix products for our CPU kernels: the `gemm` crate behind one call whose
//! slice lengths are checked, in place of its raw-pointer interface at every use.

/// The shape and layout of one product `out[m × n] (+)= a[m × k] · b[k × n]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Product {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Distance between output rows (`n` for a dense output; more when it writes into part of a
    /// wider matrix).
    pub out_row_stride: usize,
    /// Distance between rows of `a` (`k` for a dense `a`; more when it is part of a wider
    /// matrix).
    pub a_row_stride: usize,
    /// `b` is stored as its transpose, `[n × k]`.
    pub b_transposed: bool,
    /// Distance between the stored rows of `b` (`n`, or `k` when transposed, for a dense `b`;
    /// more when `b` is part of a wider matrix).
    pub b_row_stride: usize,
    /// Add the product to the output's values rather than overwrite them.
    pub accumulate: bool,
    /// Threads for this product: 1 where the caller already runs products in parallel.
    pub threads: usize,
}

impl Product {
    pub fn run(&self, out: &mut [f32], a: &[f32], b: &[f32]) {
        let Product { m, k, n, .. } = *self;
        if m == 0 || n == 0 {
            return;
        }
        let (rs, a_rs, bs) = (self.out_row_stride, self.a_row_stride, self.b_row_stride);
        // (stored rows, stored row length) of b.
        let (b_rows, b_len) = if self.b_transposed { (n, k) } else { (k, n) };
        assert!(
            rs >= n
                && out.len() >= (m - 1) * rs + n
                && a_rs >= k
                && a.len() >= (m - 1) * a_rs + k
                && bs >= b_len
                && (b_rows == 0 || b.len() >= (b_rows - 1) * bs + b_len),
            "matrix product {m}×{k}·{k}×{n} (row strides: output {rs}, a {a_rs}, b {bs}) over slices of {}, {}, {}",
            out.len(),
            a.len(),
            b.len()
        );
        // (column stride, row stride) of b as gemm reads it.
        let (b_cs, b_rs) = if self.b_transposed {
            (bs as isize, 1)
        } else {
            (1, bs as isize)
        };
        let parallelism = if self.threads > 1 {
            gemm::Parallelism::Rayon(self.threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the assertion above keeps every element gemm reads or writes inside the slices.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                rs as isize,
                self.accumulate,
                a.as_ptr(),
                1,
                a_rs as isize,
                b.as_ptr(),
                b_cs,
                b_rs,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the schoolbook product, for each layout and mode.
    #[test]
    fn products_match_the_definition() {
        let (m, k, n, rs) = (5, 7, 3, 4);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.5 - 1.0).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let want = |i: usize, j: usize| (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum::<f32>();
        for (bs, transposed) in [(&b, false), (&bt, true)] {
            for accumulate in [false, true] {
                let mut out = vec![2f32; (m - 1) * rs + n];
                let p = Product {
                    m,
                    k,
                    n,
                    out_row_stride: rs,
                    a_row_stride: k,
                    b_transposed: transposed,
                    b_row_stride: if transposed { k } else { n },
                    accumulate,
                    threads: 1,
                };
                p.run(&mut out, &a, bs);
                for i in 0..m {
                    for j in 0..n {
                        let expect = want(i, j) + if accumulate { 2.0 } else { 0.0 };
                        assert_eq!(out[i * rs + j], expect, "{transposed} {accumulate}");
                    }
                    if i + 1 < m {
                        // Between rows, the output's other columns are left alone.
                        assert_eq!(out[i * rs + n], 2.0);
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "matrix product")]
    fn short_slices_are_refused() {
        let p = Product {
            m: 2,
            k: 2,
            n: 2,
            out_row_stride: 2,
            a_row_stride: 2,
            b_transposed: false,
            b_row_stride: 2,
            accumulate: false,
            threads: 1,
        };
        p.run(&mut [0.0; 3], &[1.0; 4], &[1.0; 4]);
    }
}
