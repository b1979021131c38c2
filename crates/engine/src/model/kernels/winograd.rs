//! 3×3, stride-1 convolution by Winograd's minimal filtering F(4×4, 3×3) (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", arXiv 1509.09308) on the CPU in f32.
//!
//! Each 4×4 block of output is computed from the 6×6 block of input around it: both the input
//! block and the 3×3 kernel are moved into a 36-point transformed space where the convolution is
//! an elementwise product, summed over input channels; that sum is 36 matrix products
//! `[cout × cin] · [cin × tiles]`, then one transform back. That is 36 multiplications per output
//! block and channel pair instead of 144: a quarter of the im2col product's work, for transforms
//! that cost a few percent of it. The kernels are transformed on every call rather than kept: the
//! transformed kernels are four times the size of the weights, too much memory for a whole UNet.
//!
//! The transforms' fractions (1/6, 1/24) are not exact in f32, so results differ from the im2col
//! product by a few units in the last place more; the tests bound it.

use rayon::prelude::*;

use crate::model::kernels::layout::Padding;
use crate::model::matmul::Product;

/// Output block side.
const M: usize = 4;
/// Input block side: the output block plus the kernel's reach.
const T: usize = M + 2;
/// Points in the transformed space.
const POINTS: usize = T * T;
/// Most f32 values in one band's transformed input or products (8 MiB): long enough rows for
/// the products, and the band's transforms are still partly read back from cache. 4 and
/// 16 MiB were within noise of it, 4 MiB slower for the UNet's 640-channel level.
const BAND_BUDGET: usize = 1 << 21;

/// Whether the transformed algorithm pays for a convolution of this size: its kernel transform
/// and per-block transforms are fixed costs that only many output blocks and channels amortise.
pub(crate) fn worthwhile(cin: usize, cout: usize, oh: usize, ow: usize, batch: usize) -> bool {
    cin >= 16 && cout >= 16 && oh >= 2 * M && ow >= 2 * M && batch * oh * ow >= 1024
}

/// The shape of one convolution: input `[batch, cin, h, w]`, kernel `[cout, cin, 3, 3]`,
/// `padding` zeros on each side, output `[batch, cout, oh, ow]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv3x3 {
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub padding: Padding,
}

impl Conv3x3 {
    pub fn output_size(&self) -> (usize, usize) {
        let p = self.padding;
        (
            (self.h + p.top + p.bottom).saturating_sub(2),
            (self.w + p.left + p.right).saturating_sub(2),
        )
    }

    /// `out = conv(x, weight) + bias`, every output element written (unless the job on this
    /// thread is interrupted: then the caller must not use `out`).
    pub fn run(&self, out: &mut [f32], x: &[f32], weight: &[f32], bias: &[f32]) {
        let Conv3x3 {
            batch,
            cin,
            cout,
            h,
            w,
            ..
        } = *self;
        let (oh, ow) = self.output_size();
        assert!(
            x.len() == batch * cin * h * w
                && weight.len() == cout * cin * 9
                && bias.len() == cout
                && out.len() == batch * cout * oh * ow,
            "winograd convolution {self:?} over slices of {}, {}, {}, {}",
            x.len(),
            weight.len(),
            bias.len(),
            out.len()
        );
        if oh == 0 || ow == 0 {
            return;
        }
        let u = transform_kernels(weight, cout, cin);
        let (th, tw) = (oh.div_ceil(M), ow.div_ceil(M));
        let rows_per_band = (BAND_BUDGET / (POINTS * cin.max(cout) * tw)).clamp(1, th);
        let most = rows_per_band * tw;
        let mut v = vec![0f32; cin * POINTS * most];
        let mut products = vec![0f32; POINTS * cout * most];
        for bi in 0..batch {
            let xin = &x[bi * cin * h * w..(bi + 1) * cin * h * w];
            let out_b = &mut out[bi * cout * oh * ow..(bi + 1) * cout * oh * ow];
            for ty0 in (0..th).step_by(rows_per_band) {
                // A cancelled job stops between bands; the caller reports it.
                if crate::interrupt::requested() {
                    return;
                }
                let band = Band {
                    ty0,
                    rows: rows_per_band.min(th - ty0),
                    tw,
                };
                let n = band.rows * tw;
                // v[c][point][block]
                v[..cin * POINTS * n]
                    .par_chunks_mut(POINTS * n)
                    .zip(xin.par_chunks(h * w))
                    .for_each(|(vc, plane)| band.transform_input(vc, plane, (h, w), self.padding));
                // products[point][co][block] = u[co][point][ci] · v[ci][point][block], over ci
                products[..POINTS * cout * n]
                    .par_chunks_mut(cout * n)
                    .enumerate()
                    .for_each(|(point, dst)| {
                        Product {
                            m: cout,
                            k: cin,
                            n,
                            out_row_stride: n,
                            a_row_stride: POINTS * cin,
                            b_transposed: false,
                            b_row_stride: POINTS * n,
                            accumulate: false,
                            threads: 1,
                        }
                        .run(dst, &u[point * cin..], &v[point * n..])
                    });
                let products = &products[..POINTS * cout * n];
                out_b
                    .par_chunks_mut(oh * ow)
                    .zip(bias.par_iter())
                    .enumerate()
                    .for_each(|(co, (plane, &b))| {
                        band.transform_output(plane, (oh, ow), products, (co, cout), b)
                    });
            }
        }
    }
}

/// `u[co][point][ci] = (G g Gᵀ)[point]` for every kernel `g = weight[co][ci]`: one output
/// channel's kernels are read once and give all their points, eight input channels at a time so
/// that each point's values are stored contiguously and the arithmetic runs in vector lanes.
fn transform_kernels(weight: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    const LANES: usize = 8;
    let mut u = vec![0f32; cout * POINTS * cin];
    u.par_chunks_mut(POINTS * cin)
        .zip(weight.par_chunks(cin * 9))
        .for_each(|(dst, kernels)| {
            for (group, block) in kernels.chunks(9 * LANES).enumerate() {
                let (ci0, lanes) = (group * LANES, block.len() / 9);
                // g[k][lane]: kernel value k of input channel ci0 + lane.
                let mut g = [[0f32; LANES]; 9];
                for (lane, kernel) in block.chunks_exact(9).enumerate() {
                    for (k, &v) in kernel.iter().enumerate() {
                        g[k][lane] = v;
                    }
                }
                // G g: the transform down each of the kernels' three columns, kept as rows:
                // rows[a][s] is point a of column s.
                let cols: [[[f32; LANES]; T]; 3] = std::array::from_fn(|s| {
                    lanes_of(|l| kernel_points([g[s][l], g[3 + s][l], g[6 + s][l]]))
                });
                let rows: [[[f32; LANES]; 3]; T] =
                    std::array::from_fn(|a| std::array::from_fn(|s| cols[s][a]));
                for (a, row) in rows.iter().enumerate() {
                    let p: [[f32; LANES]; T] =
                        lanes_of(|l| kernel_points([row[0][l], row[1][l], row[2][l]]));
                    for (b, v) in p.iter().enumerate() {
                        let at = (a * T + b) * cin + ci0;
                        dst[at..at + lanes].copy_from_slice(&v[..lanes]);
                    }
                }
            }
        });
    u
}

/// Six points for each of `L` lanes, `f(lane)` giving one lane's points.
#[inline(always)]
fn lanes_of<const L: usize>(f: impl Fn(usize) -> [f32; T]) -> [[f32; L]; T] {
    let per_lane: [[f32; T]; L] = std::array::from_fn(f);
    std::array::from_fn(|t| std::array::from_fn(|l| per_lane[l][t]))
}

/// `G g` for one column of three kernel values.
#[inline(always)]
fn kernel_points(g: [f32; 3]) -> [f32; T] {
    let (s, d) = ((g[0] + g[2]) / 6.0, g[1] / 6.0);
    let (s4, d2) = ((g[0] / 4.0 + g[2]) / 6.0, g[1] / 12.0);
    [g[0] / 4.0, -(s + d), d - s, s4 + d2, s4 - d2, g[2]]
}

/// `Bᵀ d` for one column of six input values.
#[inline(always)]
fn input_points(d: [f32; T]) -> [f32; T] {
    [
        4.0 * d[0] - 5.0 * d[2] + d[4],
        -4.0 * (d[1] + d[2]) + d[3] + d[4],
        4.0 * (d[1] - d[2]) - d[3] + d[4],
        2.0 * (d[3] - d[1]) - d[2] + d[4],
        2.0 * (d[1] - d[3]) - d[2] + d[4],
        4.0 * d[1] - 5.0 * d[3] + d[5],
    ]
}

/// `Aᵀ m` for one column of six transformed values.
#[inline(always)]
fn output_points(m: [f32; T]) -> [f32; M] {
    let (s12, d12) = (m[1] + m[2], m[1] - m[2]);
    let (s34, d34) = (m[3] + m[4], m[3] - m[4]);
    [
        m[0] + s12 + s34,
        d12 + 2.0 * d34,
        s12 + 4.0 * s34,
        d12 + 8.0 * d34 + m[5],
    ]
}

/// A band of whole block rows of one image: block rows `ty0 .. ty0 + rows`, `tw` blocks each.
#[derive(Debug, Clone, Copy)]
struct Band {
    ty0: usize,
    rows: usize,
    tw: usize,
}

impl Band {
    /// `vc[point][block]` for one input channel's plane: the transform runs down the columns of
    /// each block row's six input lines (contiguous, so it vectorises), then along each block.
    fn transform_input(&self, vc: &mut [f32], plane: &[f32], (h, w): (usize, usize), pad: Padding) {
        let n = self.rows * self.tw;
        // Input column x of a line is image column x − left (zero outside the image).
        let width = self.tw * M + 2;
        let mut lines = vec![0f32; T * width];
        let mut cols = vec![0f32; T * width];
        for r in 0..self.rows {
            let ty = self.ty0 + r;
            for (k, line) in lines.chunks_exact_mut(width).enumerate() {
                let iy = (ty * M + k) as isize - pad.top as isize;
                if iy < 0 || iy >= h as isize {
                    line.fill(0.0);
                    continue;
                }
                let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                let start = pad.left.min(width);
                let end = (pad.left + w).min(width);
                line[..start].fill(0.0);
                line[start..end].copy_from_slice(&src[..end - start]);
                line[end..].fill(0.0);
            }
            {
                let (l0, rest) = lines.split_at(width);
                let (l1, rest) = rest.split_at(width);
                let (l2, rest) = rest.split_at(width);
                let (l3, rest) = rest.split_at(width);
                let (l4, l5) = rest.split_at(width);
                let mut outs: Vec<&mut [f32]> = cols.chunks_exact_mut(width).collect();
                for x in 0..width {
                    let p = input_points([l0[x], l1[x], l2[x], l3[x], l4[x], l5[x]]);
                    for (o, v) in outs.iter_mut().zip(p) {
                        o[x] = v;
                    }
                }
            }
            for (i, col) in cols.chunks_exact(width).enumerate() {
                for tx in 0..self.tw {
                    let d = &col[tx * M..tx * M + T];
                    let p = input_points([d[0], d[1], d[2], d[3], d[4], d[5]]);
                    let at = r * self.tw + tx;
                    for (j, v) in p.into_iter().enumerate() {
                        vc[(i * T + j) * n + at] = v;
                    }
                }
            }
        }
    }

    /// Output channel `co`'s blocks of this band, from `products[point][co][block]`, plus its
    /// bias, written into its plane where they fall inside the output.
    fn transform_output(
        &self,
        plane: &mut [f32],
        (oh, ow): (usize, usize),
        products: &[f32],
        (co, cout): (usize, usize),
        bias: f32,
    ) {
        let (tw, n) = (self.tw, self.rows * self.tw);
        let at = |point: usize, block: usize| products[(point * cout + co) * n + block];
        // rows[i][b][tx]: the transform along each block's rows, for block row r.
        let mut rows = vec![0f32; T * M * tw];
        for r in 0..self.rows {
            for i in 0..T {
                for tx in 0..tw {
                    let block = r * tw + tx;
                    let m = std::array::from_fn(|j| at(i * T + j, block));
                    for (b, v) in output_points(m).into_iter().enumerate() {
                        rows[(i * M + b) * tw + tx] = v;
                    }
                }
            }
            let oy0 = (self.ty0 + r) * M;
            for b in 0..M {
                for tx in 0..tw {
                    let ox = tx * M + b;
                    if ox >= ow {
                        continue;
                    }
                    let m = std::array::from_fn(|i| rows[(i * M + b) * tw + tx]);
                    for (a, v) in output_points(m).into_iter().enumerate() {
                        let oy = oy0 + a;
                        if oy < oh {
                            plane[oy * ow + ox] = v + bias;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution by its definition, in f64.
    fn direct(c: &Conv3x3, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f64> {
        let (oh, ow) = c.output_size();
        let mut out = vec![0f64; c.batch * c.cout * oh * ow];
        for b in 0..c.batch {
            for co in 0..c.cout {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = bias[co] as f64;
                        for ci in 0..c.cin {
                            for i in 0..3 {
                                for j in 0..3 {
                                    let iy = (oy + i) as isize - c.padding.top as isize;
                                    let ix = (ox + j) as isize - c.padding.left as isize;
                                    if iy < 0 || ix < 0 || iy >= c.h as isize || ix >= c.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((b * c.cin + ci) * c.h + iy as usize) * c.w
                                        + ix as usize];
                                    let wv = weight[(co * c.cin + ci) * 9 + i * 3 + j];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                        out[((b * c.cout + co) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        out
    }

    /// A deterministic spread of values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Against the definition, for sizes that are and are not multiples of the block, paddings
    /// that differ per side (tiles) and bands smaller than the image; the error stays within a
    /// few f32 roundings of the output's scale.
    #[test]
    fn matches_the_definition() {
        let cases = [
            (1, 3, 5, 8, 8, Padding::default()),
            (2, 4, 3, 9, 13, Padding::uniform(1)),
            (
                1,
                5,
                6,
                11,
                7,
                Padding {
                    top: 1,
                    bottom: 0,
                    left: 0,
                    right: 1,
                },
            ),
            (
                1,
                2,
                2,
                6,
                10,
                Padding {
                    top: 0,
                    bottom: 2,
                    left: 1,
                    right: 0,
                },
            ),
            // 130 columns × 64 channels: bands of a few block rows.
            (1, 64, 64, 40, 130, Padding::uniform(1)),
        ];
        for (seed, (batch, cin, cout, h, w, padding)) in cases.into_iter().enumerate() {
            let c = Conv3x3 {
                batch,
                cin,
                cout,
                h,
                w,
                padding,
            };
            let x = values(batch * cin * h * w, seed as u64);
            let weight = values(cout * cin * 9, 100 + seed as u64);
            let bias = values(cout, 200 + seed as u64);
            let (oh, ow) = c.output_size();
            let mut out = vec![f32::NAN; batch * cout * oh * ow];
            c.run(&mut out, &x, &weight, &bias);
            let want = direct(&c, &x, &weight, &bias);
            let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            let err = out
                .iter()
                .zip(&want)
                .fold(0f64, |m, (&g, &w)| m.max((g as f64 - w).abs()));
            assert!(err <= 1e-5 * scale, "{c:?}: error {err} at scale {scale}");
        }
    }
}
