//! Images as they cross the engine's boundary: plain 8-bit RGB buffers with their size.

use candle_core::{DType, Tensor};

use candle_core::Device;

use super::error::{EngineError, Result, TensorContext};

/// The widest or tallest image read from a file: four times beyond what SD models work at, and
/// a bound on what a crafted header can make a decoder allocate.
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// What decoding one image may allocate (a 16384² RGBA image is 1 GiB).
pub const MAX_DECODE_BYTES: u64 = 1 << 30;

/// What any image decoder of the app may read and allocate.
pub fn decode_limits() -> ::image::Limits {
    let mut limits = ::image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// Reads an image file of any format the `image` crate knows, chosen by its content (a JPEG
/// named `.png` opens), flattened to RGB, within [`MAX_IMAGE_SIDE`] and [`MAX_DECODE_BYTES`].
pub fn read_image_file(path: &std::path::Path) -> Result<RgbImage> {
    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = crate::regular_file::open(path).map_err(io)?;
    let reader = ::image::ImageReader::new(std::io::BufReader::new(file))
        .with_guessed_format()
        .map_err(io)?;
    let decoded = decode_guessed(reader).map_err(|message| EngineError::BadImage {
        path: path.to_path_buf(),
        message,
    })?;
    RgbImage::from_decoded(decoded)
}

/// An image in memory (PNG, JPEG, WebP, by its content) decoded to RGB within the same limits
/// as [`read_image_file`].
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage> {
    RgbImage::from_decoded(
        decode_bytes(bytes).map_err(|m| EngineError::InvalidParams(format!("image: {m}")))?,
    )
}

/// An image in memory decoded as it is (alpha kept), within the limits.
pub fn decode_bytes(bytes: &[u8]) -> std::result::Result<::image::DynamicImage, String> {
    let reader = ::image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    decode_guessed(reader)
}

/// Decodes what a reader whose format was guessed from its content holds, within
/// [`decode_limits`]: the decoding behind the three functions above.
fn decode_guessed<R: std::io::BufRead + std::io::Seek>(
    mut reader: ::image::ImageReader<R>,
) -> std::result::Result<::image::DynamicImage, String> {
    reader.limits(decode_limits());
    if reader.format().is_none() {
        return Err("not an image format this app reads (PNG, JPEG, WebP)".into());
    }
    reader.decode().map_err(|e| e.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    /// Row-major, 3 bytes a pixel.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    fn from_decoded(decoded: ::image::DynamicImage) -> Result<Self> {
        let decoded = decoded.to_rgb8();
        let (w, h) = decoded.dimensions();
        RgbImage::new(w as usize, h as usize, decoded.into_raw())
    }

    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<Self> {
        if pixels.len() != width * height * 3 {
            return Err(EngineError::InvalidParams(format!(
                "an RGB image of {width}×{height} needs {} bytes, got {}",
                width * height * 3,
                pixels.len()
            )));
        }
        Ok(Self {
            width,
            height,
            pixels,
        })
    }

    /// The image at `width`×`height`, resampled with Lanczos (as diffusers' image processor)
    /// when its size differs. Never cropped.
    pub fn resized(&self, width: usize, height: usize) -> RgbImage {
        if (self.width, self.height) == (width, height) {
            return self.clone();
        }
        let Some(buffer) =
            image::RgbImage::from_raw(self.width as u32, self.height as u32, self.pixels.clone())
        else {
            return self.clone();
        };
        let out = image::imageops::resize(
            &buffer,
            width as u32,
            height as u32,
            image::imageops::FilterType::Lanczos3,
        );
        RgbImage {
            width,
            height,
            pixels: out.into_raw(),
        }
    }

    /// The image at `width`×`height` resampled bicubically (PIL's and transformers' image
    /// processors' "bicubic": Catmull-Rom, widened when shrinking).
    pub fn resized_bicubic(&self, width: usize, height: usize) -> RgbImage {
        if (self.width, self.height) == (width, height) {
            return self.clone();
        }
        let Some(buffer) =
            image::RgbImage::from_raw(self.width as u32, self.height as u32, self.pixels.clone())
        else {
            return self.clone();
        };
        let out = image::imageops::resize(
            &buffer,
            width as u32,
            height as u32,
            image::imageops::FilterType::CatmullRom,
        );
        RgbImage {
            width,
            height,
            pixels: out.into_raw(),
        }
    }

    pub fn crop(&self, r: crate::rect::Rect) -> RgbImage {
        let mut pixels = Vec::with_capacity(r.width * r.height * 3);
        for y in r.y..r.y + r.height {
            let row = (y * self.width + r.x) * 3;
            pixels.extend_from_slice(&self.pixels[row..row + r.width * 3]);
        }
        RgbImage {
            width: r.width,
            height: r.height,
            pixels,
        }
    }

    /// Copies `other` into this image with its top-left corner at (x, y), clipped.
    pub fn paste(&mut self, other: &RgbImage, x: usize, y: usize) {
        for oy in 0..other.height {
            let ty = y + oy;
            if ty >= self.height {
                break;
            }
            let n = other.width.min(self.width.saturating_sub(x));
            let src = oy * other.width * 3;
            let dst = (ty * self.width + x) * 3;
            self.pixels[dst..dst + n * 3].copy_from_slice(&other.pixels[src..src + n * 3]);
        }
    }

    /// `(1, 3, h, w)` in [-1, 1], as diffusers normalises images for the VAE.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        self.planes(device, |v| v as f32 / 255.0 * 2.0 - 1.0)
    }

    /// `(1, 3, h, w)` in [0, 1], as diffusers prepares a ControlNet's condition image.
    pub fn to_unit_tensor(&self, device: &Device) -> Result<Tensor> {
        self.planes(device, |v| v as f32 / 255.0)
    }

    /// `(1, 3, h, w)` of `value` of each byte.
    fn planes(&self, device: &Device, value: impl Fn(u8) -> f32) -> Result<Tensor> {
        let data: Vec<f32> = self.pixels.iter().map(|&v| value(v)).collect();
        Tensor::from_vec(data, (self.height, self.width, 3), device)
            .and_then(|t| t.permute((2, 0, 1)))
            .and_then(|t| t.unsqueeze(0))
            .and_then(|t| t.contiguous())
            .context("image")
    }

    /// A decoded VAE output `(1, 3, h, w)` in [-1, 1], quantised as diffusers does:
    /// `round(clamp(x / 2 + 0.5, 0, 1) · 255)`.
    pub fn from_vae_output(t: &Tensor) -> Result<Self> {
        let (_, c, h, w) = t.dims4().context("decoded image")?;
        if c != 3 {
            return Err(EngineError::InvalidParams(format!(
                "decoded image has {c} channels, expected 3"
            )));
        }
        let unit = ((t.to_dtype(DType::F32).context("decoded image")? / 2.0).context("scale")?
            + 0.5)
            .and_then(|t| t.clamp(0f32, 1f32))
            .context("decoded image")?;
        let hwc: Vec<f32> = unit
            .squeeze(0)
            .and_then(|t| t.permute((1, 2, 0)))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .context("decoded image")?;
        let pixels = hwc.into_iter().map(|v| (v * 255.0).round() as u8).collect();
        Ok(Self {
            width: w,
            height: h,
            pixels,
        })
    }
}
