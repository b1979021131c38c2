//! The shapes kernels and tiled passes share: padding, a whole-image activation held on the
//! host (`Plane`), spans of cells and how a layer maps input cells to output cells. A leaf:
//! convolution, Winograd, GroupNorm and tiling all build on it, and it on none of them.

use candle_core::{CpuStorage, DType, Device, Result, Tensor};
use rayon::prelude::*;

/// Zero padding on each side of an input, in cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Padding {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Padding {
    pub(crate) fn uniform(p: usize) -> Self {
        Self {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }
}

/// A whole-image activation `(b, c, h, w)` in host memory, in f32, that tiles are read from
/// and written to.
pub struct Plane {
    pub(crate) data: Vec<f32>,
    pub(crate) dims: [usize; 4],
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
    pub(crate) fn write(&mut self, tile: &Tensor, rows: Span, cols: Span) -> Result<()> {
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
            .map(|g| crate::model::norm::group_statistics(g, eps))
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

    pub(crate) fn output_len(&self, input: usize) -> usize {
        let len = if self.upsample { 2 * input } else { input };
        (len + self.pad_before + self.pad_after).saturating_sub(self.kernel) / self.stride + 1
    }

    /// The cells of the (upsampled) input that output span `out` reads, clipped to the image,
    /// and the zero padding that stands for the part outside it.
    pub(crate) fn window(&self, out: Span, input: usize) -> (Span, usize, usize) {
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
