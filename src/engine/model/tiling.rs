//! Tiled VAE passes for large images, as diffusers' `AutoencoderKL.tiled_decode` /
//! `tiled_encode` do: overlapping tiles run one at a time (so memory is that of one tile), then
//! each overlap is blended with a linear ramp and the tiles are cropped and joined.

use candle_core::{Result, Tensor};

/// When and how to tile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tiling {
    /// Tile side in latent cells (64 = 512 pixels, the size SD's VAE was trained at).
    pub tile_latent: usize,
    /// Fraction of a tile shared with its neighbour.
    pub overlap: f64,
    /// Images whose longer side exceeds this many pixels are tiled.
    pub threshold_px: usize,
}

impl Default for Tiling {
    fn default() -> Self {
        Self {
            tile_latent: 64,
            overlap: 0.25,
            threshold_px: 1024,
        }
    }
}

impl Tiling {
    pub fn applies(&self, height_px: usize, width_px: usize) -> bool {
        height_px.max(width_px) > self.threshold_px
    }
}

/// Runs `f` over overlapping `tile × tile` windows of `x` (`(b, c, h, w)`), where `f` scales the
/// spatial size by `num / den`, and joins the outputs. Every window is full-size (the last one
/// in a row or column is moved back to end at the edge), and where windows overlap their
/// outputs are averaged with weights that ramp linearly across the overlap, so no window edge
/// shows.
pub fn tiled_map(
    x: &Tensor,
    tile: usize,
    overlap: f64,
    (num, den): (usize, usize),
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let rows = starts(h, tile, overlap);
    let cols = starts(w, tile, overlap);
    let out = |v: usize| v * num / den;
    let mut sum: Option<Tensor> = None;
    let mut weight_sum: Option<Tensor> = None;
    for &(y, th) in &rows {
        let wy = ramp(&rows, y, th, out, x.device())?.reshape((1, 1, out(th), 1))?;
        for &(xx, tw) in &cols {
            let wx = ramp(&cols, xx, tw, out, x.device())?.reshape((1, 1, 1, out(tw)))?;
            let weight = wy.broadcast_mul(&wx)?;
            let y_out = f(&x.narrow(2, y, th)?.narrow(3, xx, tw)?)?;
            let (b, c, oh, ow) = y_out.dims4()?;
            let weight = weight.to_dtype(y_out.dtype())?;
            // Place the weighted tile on a full-size canvas by padding it with zeros.
            let place = |t: &Tensor| -> Result<Tensor> {
                t.pad_with_zeros(2, out(y), out(h) - out(y) - oh)?
                    .pad_with_zeros(3, out(xx), out(w) - out(xx) - ow)
            };
            let contribution = place(&y_out.broadcast_mul(&weight)?)?;
            let w_full = place(&weight.broadcast_as((1, 1, oh, ow))?.contiguous()?)?;
            sum = Some(match sum {
                Some(s) => (s + contribution)?,
                None => contribution,
            });
            weight_sum = Some(match weight_sum {
                Some(s) => (s + w_full)?,
                None => w_full,
            });
            let _ = (b, c);
        }
    }
    match (sum, weight_sum) {
        (Some(s), Some(ws)) => s.broadcast_div(&ws),
        _ => candle_core::bail!("nothing to tile"),
    }
}

/// Window starts and lengths along one axis of `len`: `tile` long, `tile · (1 − overlap)` apart,
/// the last moved back so that it ends at the edge. One window when `len ≤ tile`.
fn starts(len: usize, tile: usize, overlap: f64) -> Vec<(usize, usize)> {
    if len <= tile {
        return vec![(0, len)];
    }
    let stride = ((tile as f64 * (1.0 - overlap)) as usize).clamp(1, tile);
    let mut s = vec![];
    let mut at = 0;
    loop {
        if at + tile >= len {
            s.push((len - tile, tile));
            break;
        }
        s.push((at, tile));
        at += stride;
    }
    s
}

/// A window's weights along one axis (output units): rising across the overlap with the
/// previous window, falling across the overlap with the next, 1 elsewhere and at the edges.
fn ramp(
    windows: &[(usize, usize)],
    start: usize,
    len: usize,
    out: impl Fn(usize) -> usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let i = windows.iter().position(|&(s, _)| s == start).unwrap_or(0);
    let n = out(len);
    let mut w = vec![1f32; n];
    if i > 0 {
        let (ps, pl) = windows[i - 1];
        let overlap = out(ps + pl).saturating_sub(out(start)).min(n);
        for (k, v) in w.iter_mut().take(overlap).enumerate() {
            *v = v.min((k as f32 + 0.5) / overlap as f32);
        }
    }
    if i + 1 < windows.len() {
        let (ns, _) = windows[i + 1];
        let overlap = out(start + len).saturating_sub(out(ns)).min(n);
        for k in 0..overlap {
            let v = &mut w[n - 1 - k];
            *v = v.min((k as f32 + 0.5) / overlap as f32);
        }
    }
    Tensor::from_vec(w, n, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::cpu_storage::max_abs_diff;
    use candle_core::Device;

    #[test]
    fn windows_are_full_size_and_cover_the_axis() {
        assert_eq!(starts(10, 16, 0.25), vec![(0, 10)]);
        assert_eq!(starts(40, 16, 0.25), vec![(0, 16), (12, 16), (24, 16)]);
        assert_eq!(
            starts(41, 16, 0.25),
            vec![(0, 16), (12, 16), (24, 16), (25, 16)]
        );
    }

    #[test]
    fn a_pointwise_map_is_reproduced_exactly() {
        // Where every tile agrees on the overlap, blending changes nothing.
        let x = Tensor::arange(0f32, 2.0 * 40.0 * 56.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 40, 56))
            .unwrap();
        let double = |t: &Tensor| t.affine(2.0, 1.0);
        let tiled = tiled_map(&x, 16, 0.25, (1, 1), double).unwrap();
        let plain = double(&x).unwrap();
        let diff = max_abs_diff(&tiled, &plain);
        assert!(diff < 1e-3, "{diff}");
    }

    #[test]
    fn upsampling_maps_keep_the_output_size() {
        let x = Tensor::zeros((1, 1, 24, 37), candle_core::DType::F32, &Device::Cpu).unwrap();
        let up = |t: &Tensor| t.upsample_nearest2d(t.dim(2)? * 8, t.dim(3)? * 8);
        let out = tiled_map(&x, 16, 0.25, (8, 1), up).unwrap();
        assert_eq!(out.dims(), &[1, 1, 24 * 8, 37 * 8]);
        let down = |t: &Tensor| t.avg_pool2d(8);
        let y = Tensor::zeros((1, 3, 200, 136), candle_core::DType::F32, &Device::Cpu).unwrap();
        let out = tiled_map(&y, 64, 0.25, (1, 8), down).unwrap();
        assert_eq!(out.dims(), &[1, 3, 25, 17]);
    }
}
