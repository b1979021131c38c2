//! AUTOMATIC1111's `/sdapi/v1` request and response bodies (the fields clients send), and the
//! jobs they become. Field names and defaults follow AUTOMATIC1111's API models; fields we do
//! not act on are accepted and ignored, as AUTOMATIC1111 ignores what a script does not use.

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::image::RgbImage;
use crate::engine::inpaint::repaint::Resampling;
use crate::engine::inpaint::{InpaintArea, InpaintOptions, MaskedContent};
use crate::engine::job::{Generated, Job, JobKind, MAX_BATCH, MAX_BATCH_COUNT};
use crate::engine::mask::Mask;
use crate::engine::params::GenerationParams;

/// Largest base64 image accepted in a request (decoded bytes).
pub const MAX_IMAGE_BYTES: usize = 48 << 20;

/// The most RePaint passes a request may ask for (each is a full set of model calls).
pub const MAX_REPAINT_RESAMPLE: usize = 16;

/// A request that cannot run, said to the client (HTTP 422).
#[derive(Debug)]
pub struct BadRequest(pub String);

fn bad(m: impl Into<String>) -> BadRequest {
    BadRequest(m.into())
}

fn default_steps() -> usize {
    20
}
fn default_cfg() -> f64 {
    7.0
}
fn default_side() -> usize {
    512
}
fn one() -> usize {
    1
}
fn minus_one() -> i64 {
    -1
}
fn default_strength() -> f64 {
    0.75
}
fn default_mask_blur() -> usize {
    4
}

/// What txt2img and img2img share.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Common {
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: String,
    /// -1: a random seed.
    #[serde(default = "minus_one")]
    pub seed: i64,
    #[serde(default = "minus_one")]
    pub subseed: i64,
    #[serde(default)]
    pub subseed_strength: f64,
    #[serde(default)]
    pub sampler_name: Option<String>,
    #[serde(default)]
    pub sampler_index: Option<String>,
    #[serde(default)]
    pub scheduler: Option<String>,
    #[serde(default = "one")]
    pub batch_size: usize,
    #[serde(default = "one")]
    pub n_iter: usize,
    #[serde(default = "default_steps")]
    pub steps: usize,
    #[serde(default = "default_cfg")]
    pub cfg_scale: f64,
    #[serde(default = "default_side")]
    pub width: usize,
    #[serde(default = "default_side")]
    pub height: usize,
    #[serde(default)]
    pub eta: Option<f64>,
    #[serde(default)]
    pub override_settings: Option<serde_json::Map<String, Value>>,
    /// Scripts' arguments; ControlNet units under `controlnet.args` (see `controlnet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alwayson_scripts: Option<serde_json::Map<String, Value>>,
    /// Ours, beyond AUTOMATIC1111's fields: timestep spacing in place of the model's
    /// (SD-Turbo's "trailing"). AUTOMATIC1111 ignores it, so the app sends it only to us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestep_spacing: Option<crate::engine::sampler::schedule::TimestepSpacing>,
}

impl Common {
    /// The request as the answer's `parameters` echo it: without the ControlNet units' images.
    pub fn without_images(&self) -> Self {
        let mut echo = self.clone();
        if let Some(scripts) = echo.alwayson_scripts.as_mut() {
            for script in scripts.values_mut() {
                if let Some(args) = script.get_mut("args").and_then(Value::as_array_mut) {
                    for unit in args.iter_mut().filter_map(Value::as_object_mut) {
                        unit.remove("image");
                        unit.remove("input_image");
                    }
                }
            }
        }
        echo
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Txt2Img {
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Img2Img {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default)]
    pub init_images: Vec<String>,
    #[serde(default)]
    pub mask: Option<String>,
    #[serde(default = "default_mask_blur")]
    pub mask_blur: usize,
    /// 0 fill, 1 original, 2 latent noise, 3 latent nothing (AUTOMATIC1111's API default 0).
    #[serde(default)]
    pub inpainting_fill: u8,
    /// "Only masked" (AUTOMATIC1111's API default true).
    #[serde(default = "yes")]
    pub inpaint_full_res: bool,
    #[serde(default)]
    pub inpaint_full_res_padding: usize,
    /// 1: the mask's black part is regenerated.
    #[serde(default)]
    pub inpainting_mask_invert: u8,
    #[serde(default = "default_strength")]
    pub denoising_strength: f64,
    /// Ours: RePaint's passes over each block of steps and the block's length (1 and 1: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaint_resample: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaint_jump: Option<usize>,
}

fn yes() -> bool {
    true
}

impl Common {
    /// A checkpoint this request asks for (`override_settings.sd_model_checkpoint`).
    pub fn checkpoint(&self) -> Option<&str> {
        self.override_settings
            .as_ref()?
            .get("sd_model_checkpoint")?
            .as_str()
    }

    fn params(&self) -> Result<GenerationParams, BadRequest> {
        let name = self
            .sampler_name
            .as_deref()
            .or(self.sampler_index.as_deref())
            .unwrap_or("Euler a");
        let sampler =
            crate::png_info::samplers::ours(name, self.scheduler.as_deref()).ok_or_else(|| {
                bad(format!(
                    "sampler {name:?} is not one of {}",
                    sampler_names()
                ))
            })?;
        let seed = |s: i64| -> Result<u64, BadRequest> {
            match s {
                -1 => Ok(crate::engine::params::random_seed()),
                s if s >= 0 => Ok(s as u64),
                s => Err(bad(format!(
                    "seed {s}: -1 (random) or a non-negative number"
                ))),
            }
        };
        let clip_skip = self
            .override_settings
            .as_ref()
            .and_then(|o| o.get("CLIP_stop_at_last_layers"))
            .and_then(Value::as_u64)
            .unwrap_or(1) as usize;
        let variation = self.subseed_strength > 0.0;
        Ok(GenerationParams {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            seed: seed(self.seed)?,
            steps: self.steps,
            cfg_scale: self.cfg_scale,
            sampler: sampler.name(),
            width: self.width,
            height: self.height,
            eta: self.eta.unwrap_or(0.0),
            clip_skip,
            variation_seed: if variation {
                Some(seed(self.subseed)?)
            } else {
                None
            },
            variation_strength: if variation {
                self.subseed_strength
            } else {
                0.0
            },
            timestep_spacing: self.timestep_spacing,
            ..Default::default()
        })
    }

    /// The jobs: `n_iter` of `batch_size` images, seeds numbered as AUTOMATIC1111 numbers them.
    fn jobs(&self, kind: JobKind, params: GenerationParams) -> Result<Vec<Job>, BadRequest> {
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return Err(bad(format!("batch_size between 1 and {MAX_BATCH}")));
        }
        if self.n_iter == 0 || self.n_iter > MAX_BATCH_COUNT {
            return Err(bad(format!("n_iter between 1 and {MAX_BATCH_COUNT}")));
        }
        let job = Job::new(kind, params).with_batch(self.batch_size);
        job.validate().map_err(|e| bad(e.to_string()))?;
        Ok((0..self.n_iter).map(|n| job.nth_of_run(n)).collect())
    }
}

impl Txt2Img {
    pub fn jobs(&self) -> Result<Vec<Job>, BadRequest> {
        let params = self.common.params()?;
        self.common.jobs(JobKind::Txt2Img, params)
    }
}

impl Img2Img {
    pub fn jobs(&self) -> Result<Vec<Job>, BadRequest> {
        let mut params = self.common.params()?;
        params.strength = self.denoising_strength;
        let first = self
            .init_images
            .first()
            .ok_or_else(|| bad("init_images is empty"))?;
        let image = decode_image(first)?;
        let kind = match &self.mask {
            None => JobKind::Img2Img {
                init: Arc::new(image),
            },
            Some(mask) => {
                let mask = decode_mask(mask, self.inpainting_mask_invert == 1)?;
                if (mask.width, mask.height) != (image.width, image.height) {
                    return Err(bad(format!(
                        "the mask is {}×{}, the image {}×{}",
                        mask.width, mask.height, image.width, image.height
                    )));
                }
                let masked_content = match self.inpainting_fill {
                    0 => MaskedContent::Fill,
                    1 => MaskedContent::Original,
                    2 => MaskedContent::LatentNoise,
                    3 => MaskedContent::LatentNothing,
                    v => return Err(bad(format!("inpainting_fill {v}: 0 to 3"))),
                };
                let options = InpaintOptions {
                    mask_blur: self.mask_blur,
                    area: if self.inpaint_full_res {
                        InpaintArea::Masked {
                            padding: self.inpaint_full_res_padding,
                        }
                    } else {
                        InpaintArea::Whole
                    },
                    masked_content,
                    resampling: self.resampling()?,
                };
                JobKind::Inpaint {
                    image: Arc::new(image),
                    mask: Arc::new(mask),
                    options,
                }
            }
        };
        self.common.jobs(kind, params)
    }
}

impl Img2Img {
    fn resampling(&self) -> Result<Resampling, BadRequest> {
        let defaults = crate::engine::inpaint::DEFAULT_RESAMPLING;
        let r = Resampling {
            resample: self.repaint_resample.unwrap_or(defaults.resample),
            jump: self.repaint_jump.unwrap_or(defaults.jump),
        };
        if r.resample == 0 || r.resample > MAX_REPAINT_RESAMPLE || r.jump == 0 {
            return Err(bad(format!(
                "repaint_resample 1 to {MAX_REPAINT_RESAMPLE} and repaint_jump at least 1"
            )));
        }
        Ok(r)
    }
}

/// The bytes of a base64 image (with or without a `data:image/…;base64,` prefix).
pub fn decode_base64(b64: &str) -> Result<Vec<u8>, BadRequest> {
    let data = match b64.split_once(";base64,") {
        Some((head, data)) if head.starts_with("data:") => data,
        _ => b64,
    };
    if data.len() / 4 * 3 > MAX_IMAGE_BYTES {
        return Err(bad(format!(
            "an image of more than {} MiB",
            MAX_IMAGE_BYTES >> 20
        )));
    }
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| bad(format!("an image that is not base64: {e}")))
}

/// A base64 image decoded to RGB within the engine's image limits.
pub fn decode_image(b64: &str) -> Result<RgbImage, BadRequest> {
    let bytes = decode_base64(b64)?;
    crate::engine::image::decode_image(&bytes).map_err(|e| bad(format!("image: {e}")))
}

fn decode_mask(b64: &str, invert: bool) -> Result<Mask, BadRequest> {
    let rgb = decode_image(b64)?;
    let luma: Vec<u8> = rgb
        .pixels
        .chunks_exact(3)
        .map(|p| {
            let l = Mask::luma(p[0], p[1], p[2]);
            if invert {
                255 - l
            } else {
                l
            }
        })
        .collect();
    Mask::from_luma(rgb.width, rgb.height, &luma).map_err(|e| bad(format!("mask: {e}")))
}

pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// AUTOMATIC1111's answer to txt2img/img2img: the images (PNG with our parameters), the request
/// back, and `info` (a JSON string) with the seeds and each image's parameters text.
pub fn generation_response(
    request: &impl Serialize,
    results: &[Generated],
) -> Result<Value, std::io::Error> {
    let images = results
        .iter()
        .map(|r| crate::png_info::png_bytes(&r.image, &r.record).map(|b| encode_base64(&b)))
        .collect::<Result<Vec<_>, _>>()?;
    let infotexts: Vec<String> = results
        .iter()
        .map(|r| crate::png_info::a1111::format(&r.record.parameters()))
        .collect();
    let first = results.first().map(|r| &r.record);
    let p = first.map(|r| r.params.clone()).unwrap_or_default();
    let info = serde_json::json!({
        "prompt": p.prompt,
        "all_prompts": results.iter().map(|r| r.params().prompt.clone()).collect::<Vec<_>>(),
        "negative_prompt": p.negative_prompt,
        "all_negative_prompts": results.iter().map(|r| r.params().negative_prompt.clone()).collect::<Vec<_>>(),
        "seed": p.seed,
        "all_seeds": results.iter().map(|r| r.params().seed).collect::<Vec<_>>(),
        "subseed": p.variation_seed.unwrap_or(p.seed),
        "all_subseeds": results.iter().map(|r| r.params().variation_seed.unwrap_or(r.params().seed)).collect::<Vec<_>>(),
        "subseed_strength": p.variation_strength,
        "width": p.width,
        "height": p.height,
        "sampler_name": p.sampler,
        "cfg_scale": p.cfg_scale,
        "steps": p.steps,
        "batch_size": results.len(),
        "restore_faces": false,
        "sd_model_name": first.and_then(|r| r.model.clone()),
        "sd_model_hash": first.and_then(|r| r.model_hash.clone()),
        "denoising_strength": p.strength,
        "clip_skip": p.clip_skip,
        "infotexts": infotexts,
        "styles": [],
        "version": crate::png_info::VERSION,
    });
    Ok(serde_json::json!({
        "images": images,
        "parameters": request,
        "info": info.to_string(),
    }))
}

/// Our samplers, as AUTOMATIC1111's `/samplers` lists them.
pub fn samplers() -> Value {
    crate::engine::sampler::SamplerKind::all()
        .into_iter()
        .map(|k| serde_json::json!({"name": k.name(), "aliases": [], "options": {}}))
        .collect()
}

fn sampler_names() -> String {
    crate::engine::sampler::SamplerKind::known_names()
}
