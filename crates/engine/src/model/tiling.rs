//! Tiled VAE passes for large images. The full-resolution layers run one tile at a time on the
//! model's device, with the neighbouring cells each convolution needs (a halo) read from the
//! whole-image activation kept in host memory, and every GroupNorm normalises with the whole
//! image's statistics. The result is the untiled pass's, not an approximation: no seams and no
//! colour shift between tiles. (diffusers' `tiled_decode` runs each tile through the whole VAE
//! on its own, so every tile gets its own GroupNorm statistics and the tiles disagree; blending
//! their overlaps hides the edges but not the shift.) The device holds one tile's working set;
//! the host holds a few whole-image activations.

use candle_core::{CpuStorage, DType, Device, Result, Tensor};

use super::conv::Padding;
use rayon::prelude::*;

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

/// A whole-image activation `(b, c, h, w)` in host memory, in f32, that tiles are read from
/// and written to.
pub struct Plane {
    data: Vec<f32>,
    dims: [usize; 4],
}

impl Plane {
    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let (b, c, h, w) = t.dims4()?;
        let data = t
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(Self {
            data,
            dims: [b, c, h, w],
        })
    }

    pub fn to_tensor(&self, device: &Device, dtype: DType) -> Result<Tensor> {
        Tensor::from_slice(&self.data, self.dims.to_vec(), &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)
    }

    pub fn dims(&self) -> [usize; 4] {
        self.dims
    }

    /// Rows `rows` and columns `cols` of every channel, as a tensor on `device`.
    pub fn read(&self, rows: Span, cols: Span, device: &Device, dtype: DType) -> Result<Tensor> {
        let [b, c, h, w] = self.dims;
        let (th, tw) = (rows.len(), cols.len());
        let mut out = vec![0f32; b * c * th * tw];
        out.par_chunks_mut(th * tw)
            .zip(self.data.par_chunks(h * w))
            .for_each(|(o, plane)| {
                for (r, orow) in o.chunks_mut(tw).enumerate() {
                    let at = (rows.start + r) * w + cols.start;
                    orow.copy_from_slice(&plane[at..at + tw]);
                }
            });
        Tensor::from_vec(out, (b, c, th, tw), &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)
    }

    /// Stores `tile` `(b, c, rows, cols)` at rows `rows.start`…, columns `cols.start`….
    fn write(&mut self, tile: &Tensor, rows: Span, cols: Span) -> Result<()> {
        let [b, c, h, w] = self.dims;
        let (tb, tc, th, tw) = tile.dims4()?;
        if (tb, tc, th, tw) != (b, c, rows.len(), cols.len()) {
            candle_core::bail!(
                "tile of shape ({tb}, {tc}, {th}, {tw}) for a ({b}, {c}, {}, {}) window",
                rows.len(),
                cols.len()
            );
        }
        let tile = tile.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        let tile = tile.contiguous()?;
        let (storage, layout) = tile.storage_and_layout();
        let values = match (&*storage, layout.contiguous_offsets()) {
            (candle_core::Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => &v[a..b],
            _ => candle_core::bail!("a tile that is not contiguous f32 on the host"),
        };
        self.data
            .par_chunks_mut(h * w)
            .zip(values.par_chunks(th * tw))
            .for_each(|(plane, t)| {
                for (r, trow) in t.chunks(tw).enumerate() {
                    let at = (rows.start + r) * w + cols.start;
                    plane[at..at + tw].copy_from_slice(trow);
                }
            });
        Ok(())
    }

    /// Mean and `1 / sqrt(var + eps)` of each group of channels of each image, as the fused
    /// GroupNorm computes them.
    pub fn group_statistics(&self, groups: usize, eps: f64) -> Result<Vec<(f64, f64)>> {
        let [b, c, h, w] = self.dims;
        if groups == 0 || c % groups != 0 {
            candle_core::bail!("{c} channels cannot form {groups} groups");
        }
        let group_len = c / groups * h * w;
        Ok(self
            .data
            .par_chunks(group_len)
            .take(b * groups)
            .map(|g| super::norm::group_statistics(g, eps))
            .collect())
    }
}

/// A half-open range of rows or columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
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

/// How a layer maps input cells to output cells along each axis: an optional nearest-neighbour
/// doubling, then a convolution with `kernel`, `stride` and zero padding `pad_before` /
/// `pad_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub upsample: bool,
    pub kernel: usize,
    pub stride: usize,
    pub pad_before: usize,
    pub pad_after: usize,
}

impl Geometry {
    /// A 3×3 convolution that keeps the size.
    pub const SAME_3X3: Self = Self {
        upsample: false,
        kernel: 3,
        stride: 1,
        pad_before: 1,
        pad_after: 1,
    };

    fn output_len(&self, input: usize) -> usize {
        let len = if self.upsample { 2 * input } else { input };
        (len + self.pad_before + self.pad_after).saturating_sub(self.kernel) / self.stride + 1
    }

    /// The cells of the (upsampled) input that output span `out` reads, clipped to the image,
    /// and the zero padding that stands for the part outside it.
    fn window(&self, out: Span, input: usize) -> (Span, usize, usize) {
        let len = if self.upsample { 2 * input } else { input } as isize;
        let start = (out.start * self.stride) as isize - self.pad_before as isize;
        let end = ((out.end - 1) * self.stride + self.kernel) as isize - self.pad_before as isize;
        let (lo, hi) = (start.max(0), end.min(len));
        (
            Span {
                start: lo as usize,
                end: hi as usize,
            },
            (lo - start) as usize,
            (end - hi) as usize,
        )
    }
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
