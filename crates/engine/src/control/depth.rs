//! The depth preprocessor: Depth Anything V2 (transformers' layout, as
//! `pentimento models pull depth-anything/Depth-Anything-V2-Small-hf` downloads it) turns a
//! picture into a depth map for depth ControlNets, as AUTOMATIC1111's `depth_anything_v2`
//! module does: the image processor's resize and normalisation, the network, the depth scaled
//! back to the picture's size and stretched to 0–255 (near = white).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::error::{EngineError, Result, TensorContext};
use crate::image::RgbImage;
use crate::model::nets::depth_anything::{DepthAnything, DepthAnythingConfig};
use crate::model::weights::WeightFile;

/// The model users download for it.
pub const DEPTH_REPO: &str = "depth-anything/Depth-Anything-V2-Small-hf";
/// The longest side the network is run at (its processor asks for 518; a config asking for
/// more is held to this, a bound on time and memory).
pub const MAX_DEPTH_SIDE: usize = 1036;

#[derive(Debug, Clone, Deserialize)]
struct ProcessorJson {
    #[serde(default)]
    size: Option<SizeJson>,
    #[serde(default = "fourteen")]
    ensure_multiple_of: usize,
    #[serde(default = "yes")]
    keep_aspect_ratio: bool,
    #[serde(default)]
    image_mean: Option<[f32; 3]>,
    #[serde(default)]
    image_std: Option<[f32; 3]>,
}

#[derive(Debug, Clone, Deserialize)]
struct SizeJson {
    height: usize,
    width: usize,
}

fn fourteen() -> usize {
    14
}
fn yes() -> bool {
    true
}

/// The image processor's settings (DPTImageProcessor's, with Depth Anything's defaults).
#[derive(Debug, Clone)]
struct Processor {
    size: (usize, usize),
    multiple: usize,
    keep_aspect_ratio: bool,
    mean: [f32; 3],
    std: [f32; 3],
}

impl Default for Processor {
    fn default() -> Self {
        Self {
            size: (518, 518),
            multiple: 14,
            keep_aspect_ratio: true,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

/// transformers' `constrain_to_multiple_of` (Python's round: half to even).
fn constrain(v: f64, multiple: usize, max: usize) -> usize {
    let m = multiple as f64;
    let q = v / m;
    let rounded = {
        let r = q.round();
        if (q - q.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
            r - q.signum()
        } else {
            r
        }
    };
    let mut x = rounded * m;
    if x > max as f64 {
        x = (v / m).floor() * m;
    }
    if x < m {
        x = (v / m).ceil() * m;
    }
    (x.max(m) as usize).min(max - max % multiple)
}

impl Processor {
    /// The size the network sees an `iw`×`ih` picture at: transformers' `get_resize_output_image_size`.
    fn network_size(&self, iw: usize, ih: usize) -> (usize, usize) {
        let (oh, ow) = self.size;
        let mut sh = oh as f64 / ih as f64;
        let mut sw = ow as f64 / iw as f64;
        if self.keep_aspect_ratio {
            if (1.0 - sw).abs() < (1.0 - sh).abs() {
                sh = sw;
            } else {
                sw = sh;
            }
        }
        (
            constrain(sw * iw as f64, self.multiple, MAX_DEPTH_SIDE),
            constrain(sh * ih as f64, self.multiple, MAX_DEPTH_SIDE),
        )
    }
}

pub struct DepthEstimator {
    net: DepthAnything,
    processor: Processor,
    device: Device,
}

impl DepthEstimator {
    /// A Depth Anything folder: `config.json`, `model.safetensors` (or another weights file),
    /// `preprocessor_config.json` (optional).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(EngineError::bad_model(
                dir,
                "not a Depth Anything folder (config.json and model.safetensors)",
            ));
        }
        let cfg_path = dir.join("config.json");
        let cfg = DepthAnythingConfig::from_json(&crate::model::read_json(&cfg_path)?)
            .map_err(|m| EngineError::bad_model(&cfg_path, m))?;
        let proc_path = dir.join("preprocessor_config.json");
        let mut processor = Processor::default();
        if proc_path.is_file() {
            let p: ProcessorJson = serde_json::from_str(&crate::model::read_json(&proc_path)?)
                .map_err(|e| EngineError::bad_model(&proc_path, e.to_string()))?;
            if let Some(s) = p.size {
                processor.size = (
                    s.height.clamp(1, MAX_DEPTH_SIDE),
                    s.width.clamp(1, MAX_DEPTH_SIDE),
                );
            }
            if p.ensure_multiple_of != cfg.patch_size {
                return Err(EngineError::bad_model(
                    &proc_path,
                    "ensure_multiple_of differs from the patch size",
                ));
            }
            processor.keep_aspect_ratio = p.keep_aspect_ratio;
            if let (Some(m), Some(s)) = (p.image_mean, p.image_std) {
                if s.iter().any(|v| !v.is_finite() || *v <= 0.0) || m.iter().any(|v| !v.is_finite())
                {
                    return Err(EngineError::bad_model(
                        &proc_path,
                        "image_std must be positive",
                    ));
                }
                processor.mean = m;
                processor.std = s;
            }
        }
        processor.multiple = cfg.patch_size;
        let weights = crate::model::component_weights(dir)?;
        let file = std::sync::Arc::new(WeightFile::open(&weights)?);
        let vb = file.var_builder(DType::F32, device, |n| n.to_string());
        let net = DepthAnything::load(vb, &cfg)
            .map_err(|e| EngineError::bad_model(&weights, format!("Depth Anything: {e}")))?;
        Ok(Self {
            net,
            processor,
            device: device.clone(),
        })
    }

    /// The relative depth of `image` at the network's size `(h, w)` (larger = nearer).
    pub fn raw_depth(&self, image: &RgbImage) -> Result<Tensor> {
        let (w, h) = self.processor.network_size(image.width, image.height);
        let resized = image.resized_bicubic(w, h);
        let p = &self.processor;
        let mut data = vec![0f32; 3 * w * h];
        for (i, px) in resized.pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * w * h + i] = (px[c] as f32 / 255.0 - p.mean[c]) / p.std[c];
            }
        }
        let pixels = Tensor::from_vec(data, (1, 3, h, w), &self.device).context("depth input")?;
        let depth = self.net.forward(&pixels).context("Depth Anything")?;
        depth.squeeze(0).context("depth")
    }

    /// The depth map AUTOMATIC1111 feeds a depth ControlNet: back at the picture's size
    /// (bilinear, corners aligned), stretched so the farthest point is 0 and the nearest 255.
    pub fn depth_map(&self, image: &RgbImage) -> Result<RgbImage> {
        let depth = self.raw_depth(image)?;
        let (dh, dw) = depth.dims2().context("depth")?;
        let depth = if (dw, dh) != (image.width, image.height) {
            depth
                .reshape((1, 1, dh, dw))
                .and_then(|d| d.upsample_bilinear2d(image.height, image.width, true))
                .and_then(|d| d.flatten_all())
                .context("depth")?
        } else {
            depth.flatten_all().context("depth")?
        };
        let values: Vec<f32> = depth.to_vec1().context("depth")?;
        let (lo, hi) = values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let range = hi - lo;
        let pixels = values
            .iter()
            .flat_map(|&v| {
                // numpy's astype(uint8) after the stretch: truncation.
                let g = if range > 0.0 && range.is_finite() {
                    ((v - lo) / range * 255.0).clamp(0.0, 255.0) as u8
                } else {
                    0
                };
                [g, g, g]
            })
            .collect();
        Ok(RgbImage {
            width: image.width,
            height: image.height,
            pixels,
        })
    }
}

/// Where a downloaded Depth Anything is: `explicit`, else `DEPTH_REPO` in the hub cache
/// `hub_cache` (its `main` snapshot), else `None`.
pub fn find_model(explicit: Option<&Path>, hub_snapshot: Option<PathBuf>) -> Option<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or(hub_snapshot)
        .filter(|p| p.join("config.json").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_sizes_follow_transformers() {
        let p = Processor::default();
        // A 512² picture: 518² (37 patches a side).
        assert_eq!(p.network_size(512, 512), (518, 518));
        // 768×512: the side that changes least decides: height ×518/512 → width 777 → 784.
        assert_eq!(p.network_size(768, 512), (784, 518));
        // Huge pictures are held to the bound.
        let (w, h) = p.network_size(100_000, 10);
        assert!(w <= MAX_DEPTH_SIDE && h >= 14 && w % 14 == 0);
        // Python's round: 6.5 → 6, 7.5 → 8.
        assert_eq!(constrain(6.5 * 14.0, 14, 1036), 84, "half rounds to even");
        assert_eq!(constrain(7.5 * 14.0, 14, 1036), 112);
    }
}
