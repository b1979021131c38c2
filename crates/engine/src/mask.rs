//! Inpainting masks: white (1) = regenerate, black (0) = keep, anything between = partly.
//! Loading, the latent-resolution versions the samplers use, the bounding box for only-masked
//! mode, and the feathered weights of the paste-back.

use candle_core::{Device, Tensor};

use super::error::{EngineError, Result, TensorContext};
use super::image::RgbImage;

#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    /// Row-major, in [0, 1].
    pub values: Vec<f32>,
}

pub use crate::rect::Rect;

impl Mask {
    pub fn new(width: usize, height: usize, values: Vec<f32>) -> Result<Self> {
        if values.len() != width * height {
            return Err(EngineError::InvalidParams(format!(
                "a {width}×{height} mask needs {} values, got {}",
                width * height,
                values.len()
            )));
        }
        Ok(Self {
            width,
            height,
            values,
        })
    }

    pub fn filled(width: usize, height: usize, value: f32) -> Self {
        Self {
            width,
            height,
            values: vec![value; width * height],
        }
    }

    /// From 8-bit grey levels (PIL's "L" conversion of an RGB image: ITU-R 601 luma).
    pub fn from_luma(width: usize, height: usize, luma: &[u8]) -> Result<Self> {
        Self::new(
            width,
            height,
            luma.iter().map(|&v| v as f32 / 255.0).collect(),
        )
    }

    /// The grey level PIL computes when it converts RGB to "L".
    pub fn luma(r: u8, g: u8, b: u8) -> u8 {
        ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
    }

    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.values[y * self.width + x]
    }

    pub fn is_empty(&self) -> bool {
        self.values.iter().all(|&v| v <= 0.0)
    }

    /// Whether every value is 0 or 1: a painted mask without feathering.
    pub fn is_binary(&self) -> bool {
        self.values.iter().all(|&v| v == 0.0 || v == 1.0)
    }

    /// diffusers' mask processing: values ≥ ½ become 1, the rest 0.
    pub fn binarized(&self) -> Mask {
        Mask {
            values: self
                .values
                .iter()
                .map(|&v| if v >= 0.5 { 1.0 } else { 0.0 })
                .collect(),
            ..self.clone()
        }
    }

    /// Nearest-neighbour resampling (torch's `interpolate(mode="nearest")` index rule).
    pub fn resize_nearest(&self, width: usize, height: usize) -> Mask {
        let mut values = Vec::with_capacity(width * height);
        for y in 0..height {
            let sy =
                ((y as f64 * self.height as f64 / height as f64) as usize).min(self.height - 1);
            for x in 0..width {
                let sx =
                    ((x as f64 * self.width as f64 / width as f64) as usize).min(self.width - 1);
                values.push(self.at(sx, sy));
            }
        }
        Mask {
            width,
            height,
            values,
        }
    }

    /// Mean over each `factor`×`factor` block: how much of a latent cell is to be regenerated.
    pub fn downsample_area(&self, factor: usize) -> Mask {
        let (w, h) = (self.width / factor, self.height / factor);
        let mut values = Vec::with_capacity(w * h);
        for by in 0..h {
            for bx in 0..w {
                let mut sum = 0.0;
                for y in by * factor..(by + 1) * factor {
                    for x in bx * factor..(bx + 1) * factor {
                        sum += self.at(x, y);
                    }
                }
                values.push(sum / (factor * factor) as f32);
            }
        }
        Mask {
            width: w,
            height: h,
            values,
        }
    }

    /// Resampling for any size change, smooth (for soft masks and only-masked crops).
    pub fn resize_linear(&self, width: usize, height: usize) -> Mask {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let buf: image::ImageBuffer<image::Luma<f32>, Vec<f32>> = match image::ImageBuffer::from_raw(
            self.width as u32,
            self.height as u32,
            self.values.clone(),
        ) {
            Some(b) => b,
            None => return self.resize_nearest(width, height),
        };
        let out = image::imageops::resize(
            &buf,
            width as u32,
            height as u32,
            image::imageops::FilterType::Triangle,
        );
        Mask {
            width,
            height,
            values: out
                .into_raw()
                .into_iter()
                .map(|v| v.clamp(0.0, 1.0))
                .collect(),
        }
    }

    pub fn crop(&self, r: Rect) -> Mask {
        let mut values = Vec::with_capacity(r.width * r.height);
        for y in r.y..r.y + r.height {
            values.extend_from_slice(
                &self.values[y * self.width + r.x..y * self.width + r.x + r.width],
            );
        }
        Mask {
            width: r.width,
            height: r.height,
            values,
        }
    }

    /// The smallest rectangle holding every pixel with a non-zero value.
    pub fn bounding_box(&self) -> Option<Rect> {
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for y in 0..self.height {
            for x in 0..self.width {
                if self.at(x, y) > 0.0 {
                    x0 = x0.min(x);
                    y0 = y0.min(y);
                    x1 = x1.max(x);
                    y1 = y1.max(y);
                }
            }
        }
        (x0 != usize::MAX).then(|| Rect {
            x: x0,
            y: y0,
            width: x1 - x0 + 1,
            height: y1 - y0 + 1,
        })
    }

    /// `(1, 1, h, w)` tensor.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Tensor::from_vec(self.values.clone(), (1, 1, self.height, self.width), device)
            .context("mask")
    }

    /// Paste-back weights: the mask itself, widened by a ramp that falls from 1 at the edge of
    /// the region to regenerate (values ≥ ½) to 0 at `blur` pixels outside it. The feather lies
    /// outside the mask so that everything inside it is the generated image; `blur = 0` gives
    /// the mask unchanged, and pixels beyond the ramp keep the input exactly.
    pub fn feathered(&self, blur: usize) -> Mask {
        if blur == 0 {
            return self.clone();
        }
        let inside: Vec<bool> = self.values.iter().map(|&v| v >= 0.5).collect();
        let dist2 = squared_distance_to(&inside, self.width, self.height);
        let values = self
            .values
            .iter()
            .zip(dist2)
            .map(|(&m, d2)| {
                let ramp = (1.0 - (d2 as f32).sqrt() / (blur as f32 + 1.0)).max(0.0);
                m.max(smoothstep(ramp))
            })
            .collect();
        Mask {
            values,
            ..self.clone()
        }
    }
}

fn smoothstep(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Exact squared Euclidean distance from every pixel to the nearest `true` pixel
/// (Felzenszwalb & Huttenlocher's separable transform); `f64::INFINITY` where there is none.
fn squared_distance_to(on: &[bool], width: usize, height: usize) -> Vec<f64> {
    const FAR: f64 = 1e20;
    let mut grid: Vec<f64> = on.iter().map(|&b| if b { 0.0 } else { FAR }).collect();
    let mut line = vec![0.0; width.max(height)];
    let mut out = vec![0.0; width.max(height)];
    for x in 0..width {
        for y in 0..height {
            line[y] = grid[y * width + x];
        }
        edt_1d(&line[..height], &mut out[..height]);
        for y in 0..height {
            grid[y * width + x] = out[y];
        }
    }
    for y in 0..height {
        line[..width].copy_from_slice(&grid[y * width..(y + 1) * width]);
        edt_1d(&line[..width], &mut out[..width]);
        grid[y * width..(y + 1) * width].copy_from_slice(&out[..width]);
    }
    grid.into_iter()
        .map(|d| if d >= FAR / 2.0 { f64::INFINITY } else { d })
        .collect()
}

/// The lower envelope of parabolas rooted at each sample.
fn edt_1d(f: &[f64], d: &mut [f64]) {
    let n = f.len();
    if n == 0 {
        return;
    }
    let mut v = vec![0usize; n];
    let mut z = vec![0f64; n + 1];
    let mut k = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    let meet = |q: usize, p: usize| {
        ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * (q as f64 - p as f64))
    };
    for q in 1..n {
        let mut s = meet(q, v[k]);
        // z[0] is −∞, so k never goes below 0.
        while s <= z[k] {
            k -= 1;
            s = meet(q, v[k]);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    k = 0;
    for (q, out) in d.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        *out = (q as f64 - p as f64).powi(2) + f[p];
    }
}

/// `original · (1 − w) + generated · w`, per pixel, in 8 bits. Where w is 0 the original
/// bytes are kept as they are.
pub fn composite(original: &RgbImage, generated: &RgbImage, weights: &Mask) -> Result<RgbImage> {
    let same = |a: (usize, usize)| a == (original.width, original.height);
    if !same((generated.width, generated.height)) || !same((weights.width, weights.height)) {
        return Err(EngineError::InvalidParams(
            "paste-back: image, result and mask sizes differ".into(),
        ));
    }
    let mut pixels = original.pixels.clone();
    for (i, &w) in weights.values.iter().enumerate() {
        if w <= 0.0 {
            continue;
        }
        for c in 0..3 {
            let k = i * 3 + c;
            let v = original.pixels[k] as f32 * (1.0 - w) + generated.pixels[k] as f32 * w;
            pixels[k] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    RgbImage::new(original.width, original.height, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_transform_is_euclidean() {
        let (w, h) = (9, 7);
        let mut on = vec![false; w * h];
        on[3 * w + 4] = true;
        let d = squared_distance_to(&on, w, h);
        for y in 0..h {
            for x in 0..w {
                let want = (x as f64 - 4.0).powi(2) + (y as f64 - 3.0).powi(2);
                assert_eq!(d[y * w + x], want, "({x}, {y})");
            }
        }
    }

    #[test]
    fn feather_keeps_the_inside_and_fades_outside() {
        let (w, h) = (20, 1);
        let values: Vec<f32> = (0..w).map(|x| if x < 10 { 1.0 } else { 0.0 }).collect();
        let m = Mask::new(w, h, values).unwrap();
        let f = m.feathered(4);
        assert!(f.values[..10].iter().all(|&v| v == 1.0));
        assert!(f.values[10] > 0.0 && f.values[10] < 1.0);
        assert!(f.values[10..].windows(2).all(|p| p[0] >= p[1]));
        assert!(f.values[15..].iter().all(|&v| v == 0.0));
        assert_eq!(m.feathered(0), m);
    }

    #[test]
    fn bounding_box_and_binarize() {
        let mut m = Mask::filled(10, 8, 0.0);
        m.values[2 * 10 + 3] = 0.4;
        m.values[5 * 10 + 7] = 1.0;
        assert_eq!(
            m.bounding_box(),
            Some(Rect {
                x: 3,
                y: 2,
                width: 5,
                height: 4
            })
        );
        let b = m.binarized();
        assert_eq!(b.at(3, 2), 0.0);
        assert_eq!(b.at(7, 5), 1.0);
        assert_eq!(Mask::filled(4, 4, 0.0).bounding_box(), None);
    }

    #[test]
    fn pil_luma() {
        assert_eq!(Mask::luma(255, 255, 255), 255);
        assert_eq!(Mask::luma(0, 0, 0), 0);
        assert_eq!(Mask::luma(255, 0, 0), 76);
    }
}
