//! Fast previews of latents while a job runs: a linear projection of the four latent channels
//! to RGB (the approximation AUTOMATIC1111 and ComfyUI use for SD 1.x/2.x), one pixel per
//! latent cell.

use candle_core::{DType, Tensor};

use super::error::{Result, TensorContext};
use super::image::RgbImage;

/// RGB contribution of each SD latent channel.
const FACTORS: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];

/// `(1, 4, h, w)` latents → an `w × h` RGB image.
pub fn latent_to_rgb(latents: &Tensor) -> Result<RgbImage> {
    let (_, c, h, w) = latents.dims4().context("preview")?;
    let data: Vec<f32> = latents
        .narrow(0, 0, 1)
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .context("preview")?;
    let mut pixels = Vec::with_capacity(w * h * 3);
    for i in 0..w * h {
        for rgb in 0..3 {
            let v: f32 = (0..c.min(4))
                .map(|ch| data[ch * w * h + i] * FACTORS[ch][rgb])
                .sum();
            pixels.push(((v + 1.0) * 127.5).clamp(0.0, 255.0) as u8);
        }
    }
    RgbImage::new(w, h, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_each_cell() {
        let t = Tensor::from_vec(
            vec![1f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            (1, 4, 1, 2),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let img = latent_to_rgb(&t).unwrap();
        assert_eq!((img.width, img.height), (2, 1));
        assert_eq!(&img.pixels[0..3], &[172, 156, 168]);
        assert_eq!(&img.pixels[3..6], &[127, 127, 127]);
    }
}
