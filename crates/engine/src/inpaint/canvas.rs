//! Canvas operations around inpainting: outpainting's extended canvas and the "fill" start.

use crate::error::{EngineError, Result};
use crate::image::RgbImage;
use crate::mask::Mask;

/// Margins to add around an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Margins {
    pub left: usize,
    pub top: usize,
    pub right: usize,
    pub bottom: usize,
}

impl std::str::FromStr for Margins {
    type Err = String;
    /// `LEFT,TOP,RIGHT,BOTTOM`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [l, t, r, b] = parts.as_slice() else {
            return Err(format!(
                "expected LEFT,TOP,RIGHT,BOTTOM in pixels, got {s:?}"
            ));
        };
        let n = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{v:?} is not a number of pixels"))
        };
        Ok(Margins {
            left: n(l)?,
            top: n(t)?,
            right: n(r)?,
            bottom: n(b)?,
        })
    }
}

/// The image on a larger canvas for outpainting: the new area repeats the nearest edge pixels
/// (a better start than black), and the mask is white exactly there.
pub fn extend(image: &RgbImage, m: Margins) -> Result<(RgbImage, Mask)> {
    if m == Margins::default() {
        return Err(EngineError::InvalidParams(
            "outpainting needs at least one non-zero margin".into(),
        ));
    }
    let (w, h) = (
        image.width + m.left + m.right,
        image.height + m.top + m.bottom,
    );
    if w > 16384 || h > 16384 {
        return Err(EngineError::InvalidParams(format!(
            "an outpainted canvas of {w}×{h} is too large"
        )));
    }
    let mut pixels = Vec::with_capacity(w * h * 3);
    let mut mask = Vec::with_capacity(w * h);
    for y in 0..h {
        let sy = y.saturating_sub(m.top).min(image.height - 1);
        for x in 0..w {
            let sx = x.saturating_sub(m.left).min(image.width - 1);
            let k = (sy * image.width + sx) * 3;
            pixels.extend_from_slice(&image.pixels[k..k + 3]);
            let inside =
                x >= m.left && x < m.left + image.width && y >= m.top && y < m.top + image.height;
            mask.push(if inside { 0.0 } else { 1.0 });
        }
    }
    Ok((RgbImage::new(w, h, pixels)?, Mask::new(w, h, mask)?))
}

/// AUTOMATIC1111's "fill": the masked area painted with the blurred colours around it, coarse
/// to fine, so that the start holds the surroundings' palette and no trace of what was there.
pub fn fill_masked(image: &RgbImage, mask: &Mask) -> RgbImage {
    let (w, h) = (image.width, image.height);
    // Colours premultiplied by "known" weight, blurred; dividing by the blurred weight gives the
    // average colour of the known pixels nearby.
    let mut premultiplied =
        image::ImageBuffer::<image::Rgba<f32>, Vec<f32>>::new(w as u32, h as u32);
    for (i, px) in premultiplied.pixels_mut().enumerate() {
        let known = 1.0 - mask.values[i].min(1.0);
        let k = i * 3;
        *px = image::Rgba([
            image.pixels[k] as f32 * known,
            image.pixels[k + 1] as f32 * known,
            image.pixels[k + 2] as f32 * known,
            known,
        ]);
    }
    let mut out = image.clone();
    for sigma in [64.0, 16.0, 4.0, 1.0] {
        let blurred = image::imageops::blur(&premultiplied, sigma);
        for (i, px) in blurred.pixels().enumerate() {
            let weight = px.0[3];
            if mask.values[i] < 0.5 || weight < 1e-3 {
                continue;
            }
            for c in 0..3 {
                out.pixels[i * 3 + c] = (px.0[c] / weight).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_repeats_edges_and_masks_the_new_area() {
        let img = RgbImage::new(2, 1, vec![10, 20, 30, 40, 50, 60]).unwrap();
        let (canvas, mask) = extend(
            &img,
            Margins {
                left: 1,
                top: 0,
                right: 2,
                bottom: 1,
            },
        )
        .unwrap();
        assert_eq!((canvas.width, canvas.height), (5, 2));
        assert_eq!(&canvas.pixels[0..3], &[10, 20, 30]);
        assert_eq!(&canvas.pixels[12..15], &[40, 50, 60]);
        assert_eq!(mask.values[..5], [1.0, 0.0, 0.0, 1.0, 1.0]);
        assert!(mask.values[5..].iter().all(|&v| v == 1.0));
        assert!("1,2,3".parse::<Margins>().is_err());
        assert_eq!(
            "0, 8,16,0".parse::<Margins>().unwrap(),
            Margins {
                left: 0,
                top: 8,
                right: 16,
                bottom: 0
            }
        );
    }

    #[test]
    fn fill_replaces_only_the_masked_area() {
        let mut pixels = vec![0u8; 8 * 8 * 3];
        for i in 0..64 {
            pixels[i * 3] = if i % 8 < 4 { 200 } else { 0 };
        }
        let img = RgbImage::new(8, 8, pixels).unwrap();
        let values: Vec<f32> = (0..64)
            .map(|i| if i % 8 >= 4 { 1.0 } else { 0.0 })
            .collect();
        let mask = Mask::new(8, 8, values).unwrap();
        let filled = fill_masked(&img, &mask);
        for i in 0..64 {
            if i % 8 < 4 {
                assert_eq!(filled.pixels[i * 3], 200);
            } else {
                assert!(
                    filled.pixels[i * 3] > 150,
                    "masked pixel {i} took the surrounding colour"
                );
            }
        }
    }
}
