//! Tiled VAE passes for large images. The full-resolution layers run one tile at a time on the
//! model's device, with the neighbouring cells each convolution needs (a halo) read from the
//! whole-image activation kept in host memory, and every GroupNorm normalises with the whole
//! image's statistics. The result is the untiled pass's, not an approximation: no seams and no
//! colour shift between tiles. (diffusers' `tiled_decode` runs each tile through the whole VAE
//! on its own, so every tile gets its own GroupNorm statistics and the tiles disagree; blending
//! their overlaps hides the edges but not the shift.) The device holds one tile's working set;
//! the host holds a few whole-image activations.

use candle_core::{DType, Device, Result, Tensor};

pub use super::layout::Plane;
use super::layout::{Geometry, Padding, Span};

/// When and how to tile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tiling {
    /// Tile side in cells of the layer being computed.
    pub tile: usize,
    /// Images whose longer side exceeds this many pixels are tiled.
    pub threshold_px: usize,
}

impl Default for Tiling {
    fn default() -> Self {
        Self {
            tile: 256,
            threshold_px: 1024,
        }
    }
}

impl Tiling {
    pub fn applies(&self, height_px: usize, width_px: usize) -> bool {
        height_px.max(width_px) > self.threshold_px
    }
}

/// `len` cut into spans of at most `tile`.
fn spans(len: usize, tile: usize) -> Vec<Span> {
    let tile = tile.max(1);
    (0..len)
        .step_by(tile)
        .map(|start| Span {
            start,
            end: (start + tile).min(len),
        })
        .collect()
}

/// The output rows and columns of one tile, and the zero padding its input needs where it
/// meets the image's edge.
pub struct Tile {
    pub rows: Span,
    pub cols: Span,
    pub pad: Padding,
}

/// Where the tiles of a pass are computed: their side, device and dtype.
#[derive(Debug, Clone)]
pub struct TilePass {
    pub tile: usize,
    pub device: Device,
    pub dtype: DType,
}

impl TilePass {
    /// The cells of `plane` under `tile`, on the pass's device.
    pub fn read(&self, plane: &Plane, tile: &Tile) -> Result<Tensor> {
        plane.read(tile.rows, tile.cols, &self.device, self.dtype)
    }

    /// Computes a convolution-like layer over `input` tile by tile: each tile's input window
    /// is read onto the device, passed through `pre` (pointwise: it sees real cells only),
    /// doubled when the geometry upsamples, and handed to `conv`, which must pad it as the
    /// tile says (zeros only where the window leaves the image) and return its output cells.
    pub fn conv(
        &self,
        input: &Plane,
        geometry: Geometry,
        pre: impl Fn(&Tensor) -> Result<Tensor>,
        conv: impl Fn(&Tensor, &Tile) -> Result<Tensor>,
    ) -> Result<Plane> {
        conv_tiles(
            input,
            geometry,
            self.tile,
            (&self.device, self.dtype),
            pre,
            conv,
        )
    }
}

fn conv_tiles(
    input: &Plane,
    geometry: Geometry,
    tile: usize,
    (device, dtype): (&Device, DType),
    pre: impl Fn(&Tensor) -> Result<Tensor>,
    conv: impl Fn(&Tensor, &Tile) -> Result<Tensor>,
) -> Result<Plane> {
    let [b, _, h, w] = input.dims;
    let (oh, ow) = (geometry.output_len(h), geometry.output_len(w));
    let mut out: Option<Plane> = None;
    for rows in spans(oh, tile) {
        for cols in spans(ow, tile) {
            crate::interrupt::check()?;
            let (in_rows, top, bottom) = geometry.window(rows, h);
            let (in_cols, left, right) = geometry.window(cols, w);
            let x = if geometry.upsample {
                // The doubled window's cells come from these input cells.
                let src = |s: Span| Span {
                    start: s.start / 2,
                    end: s.end.div_ceil(2),
                };
                let (sr, sc) = (src(in_rows), src(in_cols));
                let x = pre(&input.read(sr, sc, device, dtype)?)?;
                x.upsample_nearest2d(2 * sr.len(), 2 * sc.len())?
                    .narrow(2, in_rows.start - 2 * sr.start, in_rows.len())?
                    .narrow(3, in_cols.start - 2 * sc.start, in_cols.len())?
            } else {
                pre(&input.read(in_rows, in_cols, device, dtype)?)?
            };
            let pad = Padding {
                top,
                bottom,
                left,
                right,
            };
            let tile = Tile { rows, cols, pad };
            let y = conv(&x, &tile)?;
            let plane = match &mut out {
                Some(p) => p,
                None => out.insert(Plane {
                    data: vec![0f32; b * y.dim(1)? * oh * ow],
                    dims: [b, y.dim(1)?, oh, ow],
                }),
            };
            plane.write(&y, rows, cols)?;
        }
    }
    out.ok_or_else(|| candle_core::Error::Msg("tiling an empty image".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu_storage::max_abs_diff;

    fn random(dims: (usize, usize, usize, usize)) -> Tensor {
        Tensor::randn(0f32, 1.0, dims, &Device::Cpu).unwrap()
    }

    #[test]
    fn spans_cover_the_axis() {
        let s = spans(10, 4);
        assert_eq!(
            s.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>(),
            vec![(0, 4), (4, 8), (8, 10)]
        );
    }

    #[test]
    fn planes_round_trip_windows() {
        let t = random((2, 3, 7, 9));
        let p = Plane::from_tensor(&t).unwrap();
        let rows = Span { start: 2, end: 6 };
        let cols = Span { start: 1, end: 8 };
        let w = p.read(rows, cols, &Device::Cpu, DType::F32).unwrap();
        let want = t.narrow(2, 2, 4).unwrap().narrow(3, 1, 7).unwrap();
        assert_eq!(max_abs_diff(&w, &want), 0.0);
        assert_eq!(
            max_abs_diff(&p.to_tensor(&Device::Cpu, DType::F32).unwrap(), &t),
            0.0
        );
    }

    /// Equal up to f32 rounding, which grows with the values' size (the candle convolution
    /// sums in another order per tile).
    fn close(got: &Tensor, want: &Tensor) -> bool {
        let scale: f32 = want.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        max_abs_diff(got, want) < 1e-6 * (1.0 + scale)
    }

    /// Tiles of a convolution, including odd sizes and tiles of one cell, equal the whole.
    #[test]
    fn tiled_convolutions_equal_whole_ones() {
        let x = random((2, 3, 11, 13));
        let k = random((4, 3, 3, 3));
        let p = Plane::from_tensor(&x).unwrap();
        let on = (&Device::Cpu, DType::F32);
        let square = |t: &Tensor| t.sqr();
        let padded = |t: &Tensor, tile: &Tile| {
            t.pad_with_zeros(2, tile.pad.top, tile.pad.bottom)?
                .pad_with_zeros(3, tile.pad.left, tile.pad.right)
        };
        let unpadded = |t: &Tensor, tile: &Tile| padded(t, tile)?.conv2d(&k, 0, 1, 1, 1);
        for tile in [1, 4, 5, 64] {
            // 3×3, padding 1, a pointwise map before it.
            let got = conv_tiles(&p, Geometry::SAME_3X3, tile, on, square, unpadded).unwrap();
            let want = x.sqr().unwrap().conv2d(&k, 1, 1, 1, 1).unwrap();
            let got = got.to_tensor(&Device::Cpu, DType::F32).unwrap();
            assert!(close(&got, &want), "same, tile {tile}");

            // Upsampling, then 3×3 padding 1.
            let up = Geometry {
                upsample: true,
                ..Geometry::SAME_3X3
            };
            let got = conv_tiles(&p, up, tile, on, |t| Ok(t.clone()), unpadded).unwrap();
            let want = x
                .upsample_nearest2d(22, 26)
                .unwrap()
                .conv2d(&k, 1, 1, 1, 1)
                .unwrap();
            let got = got.to_tensor(&Device::Cpu, DType::F32).unwrap();
            assert!(close(&got, &want), "upsample, tile {tile}");

            // The VAE's downsampler: pad right and bottom by one, 3×3 stride 2.
            let down = Geometry {
                upsample: false,
                kernel: 3,
                stride: 2,
                pad_before: 0,
                pad_after: 1,
            };
            let strided = |t: &Tensor, tile: &Tile| padded(t, tile)?.conv2d(&k, 0, 2, 1, 1);
            let got = conv_tiles(&p, down, tile, on, |t| Ok(t.clone()), strided).unwrap();
            let want = x
                .pad_with_zeros(2, 0, 1)
                .unwrap()
                .pad_with_zeros(3, 0, 1)
                .unwrap()
                .conv2d(&k, 0, 2, 1, 1)
                .unwrap();
            let got = got.to_tensor(&Device::Cpu, DType::F32).unwrap();
            assert!(close(&got, &want), "downsample, tile {tile}");
        }
    }

    #[test]
    fn group_statistics_are_the_whole_images() {
        let x = random((2, 4, 5, 6)).affine(3.0, 1.0).unwrap();
        let stats = Plane::from_tensor(&x)
            .unwrap()
            .group_statistics(2, 1e-5)
            .unwrap();
        let g = x.reshape((2, 2, 60)).unwrap();
        let mean = g.mean_keepdim(2).unwrap();
        let var = g
            .broadcast_sub(&mean)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_keepdim(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mean = mean.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (i, &(m, inv)) in stats.iter().enumerate() {
            assert!((m - mean[i] as f64).abs() < 1e-5);
            assert!((inv - 1.0 / (var[i] as f64 + 1e-5).sqrt()).abs() < 1e-4);
        }
    }
}
