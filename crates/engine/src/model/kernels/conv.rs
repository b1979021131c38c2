//! 2-D convolution. On the CPU in f32 it is one matrix product per band of output rows,
//! written straight into the NCHW output with the bias already in place: the kernel is used
//! where it lies, the im2col band is built from whole-row copies, and nothing is transposed.
//! candle's own CPU convolution re-packs the kernel and the input on every call and scatters
//! its result, which made convolution-heavy networks (the VAE, TAESD) 2.5–5× slower than
//! PyTorch's. Large 3×3, stride-1 convolutions (most of the VAE's and the UNet's outer levels)
//! go through Winograd's transform instead (`winograd.rs`), a quarter of the multiplications.
//! Other devices use candle's.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::layout::Geometry;
pub use super::layout::Padding;
use std::sync::Arc;

use crate::model::adapters::slots::{self, WeightSlot};
use crate::model::cpu_storage::{contiguous_f32, is_weight_dtype, with_weight_f32};
use crate::model::matmul::Product;
use crate::model::winograd::{self, Conv3x3};

/// Most f32 values in one im2col band (4 MiB): small enough to be read back from cache by the
/// product. 16 MiB bands made TAESD's 64-channel convolutions 1.4× slower; 1 MiB ones starve
/// the product with short rows. (Measured on the 2-core EPYC of `bench/RESULTS.md`.)
const BAND_BUDGET: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams {
    pub padding: usize,
    pub stride: usize,
}

impl Default for ConvParams {
    fn default() -> Self {
        Self {
            padding: 0,
            stride: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    params: ConvParams,
    /// Where an adapter (LoCon) puts the weight this layer computes with for a job.
    slot: Option<Arc<WeightSlot>>,
}

/// `weight` `[cout, cin, k, k]` and `bias` `[cout]`, as PyTorch's `nn.Conv2d`.
pub fn conv2d(
    cin: usize,
    cout: usize,
    kernel: usize,
    params: ConvParams,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let mut conv = conv2d_no_bias(cin, cout, kernel, params, vb.clone())?;
    conv.bias = Some(vb.get(cout, "bias")?);
    Ok(conv)
}

/// `weight` only, as `nn.Conv2d(…, bias=False)`.
pub fn conv2d_no_bias(
    cin: usize,
    cout: usize,
    kernel: usize,
    params: ConvParams,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let weight = vb.get((cout, cin, kernel, kernel), "weight")?;
    let slot = slots::register(vb.prefix(), &weight);
    Ok(Conv2d {
        weight,
        bias: None,
        params,
        slot,
    })
}

impl Conv2d {
    /// The convolution with `padding` in place of its own (a tile: zeros only where the tile
    /// meets the image's edge).
    pub fn forward_padded(&self, x: &Tensor, padding: Padding) -> Result<Tensor> {
        let adapted = self.slot.as_ref().and_then(|s| s.current());
        let weight = adapted.as_ref().unwrap_or(&self.weight);
        if self.cpu_fast(x, weight) {
            return self.cpu_forward(x, weight, padding);
        }
        let x = x
            .pad_with_zeros(2, padding.top, padding.bottom)?
            .pad_with_zeros(3, padding.left, padding.right)?;
        self.candle_forward(&x, weight, 0)
    }

    /// How this convolution maps input cells to output cells (symmetric padding).
    pub fn geometry(&self) -> Result<Geometry> {
        Ok(Geometry {
            upsample: false,
            kernel: self.weight.dim(2)?,
            stride: self.params.stride,
            pad_before: self.params.padding,
            pad_after: self.params.padding,
        })
    }

    fn cpu_fast(&self, x: &Tensor, weight: &Tensor) -> bool {
        x.device().is_cpu()
            && x.dtype() == DType::F32
            && is_weight_dtype(weight.dtype())
            && weight.is_contiguous()
    }

    fn cpu_forward(&self, x: &Tensor, weight: &Tensor, padding: Padding) -> Result<Tensor> {
        let cout = weight.dim(0)?;
        let bias = match &self.bias {
            Some(b) => b.clone(),
            None => Tensor::zeros(cout, DType::F32, x.device())?,
        };
        let op = CpuConv {
            padding,
            stride: self.params.stride,
        };
        x.contiguous()?.apply_op3_no_bwd(weight, &bias, &op)
    }

    fn candle_forward(&self, x: &Tensor, weight: &Tensor, padding: usize) -> Result<Tensor> {
        let weight = weight.to_dtype(x.dtype())?;
        let y = x.conv2d(&weight, padding, self.params.stride, 1, 1)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
            None => Ok(y),
        }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let adapted = self.slot.as_ref().and_then(|s| s.current());
        let weight = adapted.as_ref().unwrap_or(&self.weight);
        if self.cpu_fast(x, weight) {
            return self.cpu_forward(x, weight, Padding::uniform(self.params.padding));
        }
        self.candle_forward(x, weight, self.params.padding)
    }
}

struct CpuConv {
    padding: Padding,
    stride: usize,
}

impl CustomOp3 for CpuConv {
    fn name(&self) -> &'static str {
        "conv2d"
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
        with_weight_f32(s2, l2, "conv2d", |w| self.cpu_conv(s1, l1, w, l2, s3, l3))
    }
}

impl CpuConv {
    fn cpu_conv(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        w: &[f32],
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, bias) = (
            contiguous_f32(s1, l1, "conv2d")?,
            contiguous_f32(s3, l3, "conv2d")?,
        );
        let (b, cin, h, wd) = l1.shape().dims4()?;
        let (cout, wcin, kh, kw) = l2.shape().dims4()?;
        if wcin != cin {
            candle_core::bail!("conv2d: {cin} input channels, kernel expects {wcin}");
        }
        let (pad, s) = (self.padding, self.stride);
        let (ph, pw) = (pad.top + pad.bottom, pad.left + pad.right);
        if h + ph < kh || wd + pw < kw {
            candle_core::bail!("conv2d: kernel larger than the padded input");
        }
        let oh = (h + ph - kh) / s + 1;
        let ow = (wd + pw - kw) / s + 1;
        if kh == 3 && kw == 3 && s == 1 && winograd::worthwhile(cin, cout, oh, ow, b) {
            let mut out = vec![0f32; b * cout * oh * ow];
            Conv3x3 {
                batch: b,
                cin,
                cout,
                h,
                w: wd,
                padding: pad,
            }
            .run(&mut out, x, w, bias);
            crate::interrupt::check()?;
            return Ok((CpuStorage::F32(out), Shape::from((b, cout, oh, ow))));
        }
        let k_size = cin * kh * kw;
        let mut out = vec![0f32; b * cout * oh * ow];
        // The bias, in place before the product adds to it.
        for (plane, &bv) in out
            .chunks_mut(oh * ow)
            .zip(bias.iter().cycle())
            .take(b * cout)
        {
            plane.fill(bv);
        }
        let direct = kh == 1 && kw == 1 && s == 1 && ph + pw == 0;
        let rows_per_band = if direct {
            oh
        } else {
            (BAND_BUDGET / (k_size * ow).max(1)).clamp(1, oh)
        };
        let threads = candle_core::utils::get_num_threads();
        let mut col = if direct {
            vec![]
        } else {
            vec![0f32; k_size * rows_per_band * ow]
        };
        for bi in 0..b {
            let xin = &x[bi * cin * h * wd..(bi + 1) * cin * h * wd];
            let out_b = &mut out[bi * cout * oh * ow..(bi + 1) * cout * oh * ow];
            for y0 in (0..oh).step_by(rows_per_band) {
                crate::interrupt::check()?;
                let rows = rows_per_band.min(oh - y0);
                let n = rows * ow;
                let rhs: &[f32] = if direct {
                    xin
                } else {
                    fill_band(
                        &mut col[..k_size * n],
                        xin,
                        (h, wd),
                        (kh, kw),
                        (pad, s),
                        (y0, rows, ow),
                    );
                    &col[..k_size * n]
                };
                // out[:, y0·ow ..][cout × n] += w[cout × k_size] · rhs[k_size × n]
                Product {
                    m: cout,
                    k: k_size,
                    n,
                    out_row_stride: oh * ow,
                    a_row_stride: k_size,
                    b_transposed: false,
                    b_row_stride: n,
                    accumulate: true,
                    threads,
                }
                .run(&mut out_b[y0 * ow..], w, rhs);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, cout, oh, ow))))
    }
}

/// The im2col band for output rows `y0 .. y0 + rows`: row `(c, i, j)` holds input channel `c`
/// shifted by kernel offset `(i, j)`, zero where it falls in the padding.
fn fill_band(
    col: &mut [f32],
    x: &[f32],
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
    (pad, s): (Padding, usize),
    (y0, rows, ow): (usize, usize, usize),
) {
    let n = rows * ow;
    col.par_chunks_mut(n).enumerate().for_each(|(r, dst)| {
        let (c, i, j) = (r / (kh * kw), (r / kw) % kh, r % kw);
        let plane = &x[c * h * w..(c + 1) * h * w];
        for (ry, line) in dst.chunks_mut(ow).enumerate() {
            let iy = ((y0 + ry) * s + i) as isize - pad.top as isize;
            if iy < 0 || iy >= h as isize {
                line.fill(0.0);
                continue;
            }
            let src = &plane[iy as usize * w..(iy as usize + 1) * w];
            if s == 1 {
                // Output x reads input x + j − left: one copy between two zero margins.
                let p = pad.left;
                let start = p.saturating_sub(j).min(ow);
                let end = (w + p).saturating_sub(j).min(ow).max(start);
                line[..start].fill(0.0);
                line[start..end].copy_from_slice(&src[start + j - p..end + j - p]);
                line[end..].fill(0.0);
            } else {
                for (ox, v) in line.iter_mut().enumerate() {
                    let ix = (ox * s + j) as isize - pad.left as isize;
                    *v = if ix >= 0 && (ix as usize) < w {
                        src[ix as usize]
                    } else {
                        0.0
                    };
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu_storage::max_abs_diff;
    use candle_core::Device;

    #[test]
    fn matches_candles_convolution() {
        let dev = Device::Cpu;
        for (cin, cout, k, p, s, h, w) in [
            (3, 8, 3, 1, 1, 9, 13),
            (4, 6, 3, 1, 2, 10, 7),
            (5, 4, 3, 0, 2, 11, 9),
            (6, 5, 1, 0, 1, 4, 6),
            (2, 3, 3, 0, 1, 5, 5),
            // Large enough for the Winograd path.
            (32, 24, 3, 1, 1, 33, 35),
        ] {
            let x = Tensor::randn(0f32, 1.0, (2, cin, h, w), &dev).unwrap();
            // Weights at a trained network's scale, so outputs stay near 1.
            let std = 1.0 / ((cin * k * k) as f32).sqrt();
            let conv = Conv2d {
                weight: Tensor::randn(0f32, std, (cout, cin, k, k), &dev).unwrap(),
                bias: Some(Tensor::randn(0f32, 1.0, cout, &dev).unwrap()),
                params: ConvParams {
                    padding: p,
                    stride: s,
                },
                slot: None,
            };
            let got = conv.forward(&x).unwrap();
            let want = x
                .conv2d(&conv.weight, p, s, 1, 1)
                .unwrap()
                .broadcast_add(
                    &conv
                        .bias
                        .as_ref()
                        .unwrap()
                        .reshape((1, cout, 1, 1))
                        .unwrap(),
                )
                .unwrap();
            assert_eq!(got.dims(), want.dims());
            let d = max_abs_diff(&got, &want);
            assert!(d < 1e-4, "{cin}->{cout} k{k} p{p} s{s}: {d}");
        }
    }

    #[test]
    fn bands_smaller_than_the_image_give_the_same_result() {
        let dev = Device::Cpu;
        // 64 channels × 9 × 200 columns: a band holds 9 rows of 150.
        let x = Tensor::randn(0f32, 1.0, (1, 64, 150, 200), &dev).unwrap();
        let conv = Conv2d {
            weight: Tensor::randn(0f32, 0.1, (4, 64, 3, 3), &dev).unwrap(),
            bias: None,
            params: ConvParams {
                padding: 1,
                stride: 1,
            },
            slot: None,
        };
        let got = conv.forward(&x).unwrap();
        let want = x.conv2d(&conv.weight, 1, 1, 1, 1).unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d < 1e-3, "{d}");
    }

    /// Padding that differs per side (a tile at the image's edge) on the CPU path equals
    /// padding with zeros first, for both strides.
    #[test]
    fn padding_per_side_equals_padding_first() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 9, 8), &dev).unwrap();
        for stride in [1, 2] {
            let conv = Conv2d {
                weight: Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev).unwrap(),
                bias: Some(Tensor::randn(0f32, 1.0, 4, &dev).unwrap()),
                params: ConvParams { padding: 1, stride },
                slot: None,
            };
            for pad in [
                Padding::default(),
                Padding {
                    top: 1,
                    bottom: 0,
                    left: 0,
                    right: 1,
                },
                Padding {
                    top: 0,
                    bottom: 2,
                    left: 1,
                    right: 0,
                },
            ] {
                let got = conv.forward_padded(&x, pad).unwrap();
                let padded = x
                    .pad_with_zeros(2, pad.top, pad.bottom)
                    .unwrap()
                    .pad_with_zeros(3, pad.left, pad.right)
                    .unwrap();
                let want = conv.candle_forward(&padded, &conv.weight, 0).unwrap();
                assert_eq!(got.dims(), want.dims(), "{pad:?} stride {stride}");
                let d = max_abs_diff(&got, &want);
                assert!(d < 1e-4, "{pad:?} stride {stride}: {d}");
            }
        }
    }
}
