//! A job as an AUTOMATIC1111 API request: the inverse of `server::api`'s reading, built from
//! the same request types so that the two directions cannot drift (the tests send jobs through
//! both and compare).

use serde_json::{json, Map, Value};

use super::ServerKind;
use crate::engine::control::{ControlUnit, Preprocessor};
use crate::engine::image::RgbImage;
use crate::engine::inpaint::{InpaintArea, InpaintOptions, MaskedContent, DEFAULT_RESAMPLING};
use crate::engine::job::{Job, JobKind};
use crate::engine::mask::Mask;
use crate::server::api::{encode_base64, Common, Img2Img, Txt2Img};

/// What the server is asked: `txt2img` or `img2img` with its body.
#[derive(Debug, Clone)]
pub enum ApiRequest {
    Txt2Img(Txt2Img),
    Img2Img(Img2Img),
}

impl ApiRequest {
    pub fn path(&self) -> &'static str {
        match self {
            ApiRequest::Txt2Img(_) => "/sdapi/v1/txt2img",
            ApiRequest::Img2Img(_) => "/sdapi/v1/img2img",
        }
    }

    pub fn body(&self) -> Result<String, serde_json::Error> {
        match self {
            ApiRequest::Txt2Img(r) => serde_json::to_string(r),
            ApiRequest::Img2Img(r) => serde_json::to_string(r),
        }
    }
}

/// `job` as the request that makes the same images on `server`, with `checkpoint` (the
/// server's model title) named in the request itself, so that a load balancer may send it to
/// any instance. A setting only we have is refused for another server, never dropped.
pub fn request_for(
    job: &Job,
    checkpoint: Option<&str>,
    server: ServerKind,
) -> Result<ApiRequest, String> {
    let common = common(job, checkpoint, server)?;
    let (image, mask, options) = match &job.kind {
        JobKind::Txt2Img => return Ok(ApiRequest::Txt2Img(Txt2Img { common })),
        JobKind::Img2Img { init } => {
            return Ok(ApiRequest::Img2Img(Img2Img {
                common,
                init_images: vec![png_base64(init)?],
                mask: None,
                mask_blur: 0,
                inpainting_fill: 1,
                inpaint_full_res: false,
                inpaint_full_res_padding: 0,
                inpainting_mask_invert: 0,
                denoising_strength: job.params.strength,
                repaint_resample: None,
                repaint_jump: None,
            }))
        }
        // Outpainting is inpainting on the extended canvas: the engine's own extension.
        JobKind::Inpaint { options, .. } | JobKind::Outpaint { options, .. } => {
            let (image, mask) = job
                .kind
                .canvas_and_mask()
                .map_err(|e| e.to_string())?
                .ok_or("an inpainting job without a mask")?;
            (image, mask, options)
        }
    };
    let resampling = (options.resampling != DEFAULT_RESAMPLING).then_some(options.resampling);
    if resampling.is_some() && server != ServerKind::Pentimento {
        return Err(format!(
            "RePaint passes ({} × {}) need a Pentimento server; {server} has none: set them to 1",
            options.resampling.resample, options.resampling.jump
        ));
    }
    Ok(ApiRequest::Img2Img(Img2Img {
        common,
        init_images: vec![png_base64(&image)?],
        mask: Some(mask_base64(&mask)?),
        mask_blur: options.mask_blur,
        inpainting_fill: fill(options),
        inpaint_full_res: matches!(options.area, InpaintArea::Masked { .. }),
        inpaint_full_res_padding: match options.area {
            InpaintArea::Masked { padding } => padding,
            InpaintArea::Whole => 0,
        },
        inpainting_mask_invert: 0,
        denoising_strength: job.params.strength,
        repaint_resample: resampling.map(|r| r.resample),
        repaint_jump: resampling.map(|r| r.jump),
    }))
}

fn fill(options: &InpaintOptions) -> u8 {
    match options.masked_content {
        MaskedContent::Fill => 0,
        MaskedContent::Original => 1,
        MaskedContent::LatentNoise => 2,
        MaskedContent::LatentNothing => 3,
    }
}

fn common(job: &Job, checkpoint: Option<&str>, server: ServerKind) -> Result<Common, String> {
    let p = &job.params;
    let seed = |s: u64| i64::try_from(s).map_err(|_| format!("seed {s} is beyond the API's range"));
    if p.timestep_spacing.is_some() && server != ServerKind::Pentimento {
        return Err(format!(
            "a timestep spacing of its own needs a Pentimento server; {server} uses the model's"
        ));
    }
    let mut settings = Map::new();
    settings.insert("CLIP_stop_at_last_layers".into(), json!(p.clip_skip));
    if let Some(title) = checkpoint {
        settings.insert("sd_model_checkpoint".into(), json!(title));
    }
    let variation = p.variation_seed.filter(|_| p.variation_strength > 0.0);
    let controls = job
        .controls
        .iter()
        .map(control_unit)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Common {
        prompt: p.prompt.clone(),
        negative_prompt: p.negative_prompt.clone(),
        seed: seed(p.seed)?,
        subseed: variation.map(seed).transpose()?.unwrap_or(-1),
        subseed_strength: if variation.is_some() {
            p.variation_strength
        } else {
            0.0
        },
        sampler_name: Some(p.sampler.clone()),
        sampler_index: None,
        scheduler: None,
        batch_size: job.batch,
        n_iter: 1,
        steps: p.steps,
        cfg_scale: p.cfg_scale,
        width: p.width,
        height: p.height,
        eta: Some(p.eta),
        override_settings: Some(settings),
        alwayson_scripts: (!controls.is_empty())
            .then(|| Map::from_iter([("controlnet".to_string(), json!({ "args": controls }))])),
        timestep_spacing: p.timestep_spacing,
    })
}

/// A ControlNet unit as the extension takes it: the condition as made here (module "none"),
/// the model by its name in the server's list; the inpaint unit's condition is made there
/// from the job's image and mask.
fn control_unit(unit: &ControlUnit) -> Result<Value, String> {
    let model = unit
        .model
        .file_stem()
        .or_else(|| unit.model.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{}: not a ControlNet's name", unit.model.display()))?;
    let mode = crate::engine::control::ControlMode::ALL
        .iter()
        .position(|m| *m == unit.mode)
        .unwrap_or(0);
    let mut v = json!({
        "enabled": true,
        "model": model,
        "weight": unit.weight,
        "guidance_start": unit.start,
        "guidance_end": unit.end,
        "control_mode": mode,
        "pixel_perfect": false,
    });
    if unit.module == Preprocessor::InpaintOnly {
        v["module"] = json!(Preprocessor::InpaintOnly.name());
    } else {
        v["module"] = json!("none");
        v["image"] = json!(png_base64(&unit.image)?);
    }
    Ok(v)
}

/// The image as a base64 PNG (lossless: the server sees our pixels).
pub fn png_base64(image: &RgbImage) -> Result<String, String> {
    encode_png(
        &image.pixels,
        image.width,
        image.height,
        ::image::ExtendedColorType::Rgb8,
    )
}

/// The mask as a base64 greyscale PNG, white = regenerate.
fn mask_base64(mask: &Mask) -> Result<String, String> {
    let luma: Vec<u8> = mask
        .values
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    encode_png(
        &luma,
        mask.width,
        mask.height,
        ::image::ExtendedColorType::L8,
    )
}

fn encode_png(
    bytes: &[u8],
    width: usize,
    height: usize,
    color: ::image::ExtendedColorType,
) -> Result<String, String> {
    use ::image::ImageEncoder as _;
    let mut out = vec![];
    ::image::codecs::png::PngEncoder::new(&mut out)
        .write_image(bytes, width as u32, height as u32, color)
        .map_err(|e| format!("encoding an image for the server: {e}"))?;
    Ok(encode_base64(&out))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::inpaint::canvas::Margins;
    use crate::engine::inpaint::repaint::Resampling;
    use crate::engine::params::GenerationParams;
    use crate::engine::sampler::schedule::TimestepSpacing;
    use crate::server::api;

    fn picture(w: usize, h: usize) -> RgbImage {
        RgbImage {
            width: w,
            height: h,
            pixels: (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect(),
        }
    }

    fn params() -> GenerationParams {
        GenerationParams {
            prompt: "a <lora:ink:0.7> cat".into(),
            negative_prompt: "blurry".into(),
            seed: 1234,
            steps: 9,
            cfg_scale: 5.5,
            sampler: "DPM++ 2M Karras".into(),
            width: 64,
            height: 48,
            eta: 0.0,
            clip_skip: 2,
            strength: 0.6,
            variation_seed: Some(99),
            variation_strength: 0.25,
            timestep_spacing: None,
        }
    }

    /// The job the server reads back from the request (through JSON, as on the wire).
    fn read_back(request: &ApiRequest) -> Job {
        let body = request.body().unwrap();
        let jobs = match request {
            ApiRequest::Txt2Img(_) => serde_json::from_str::<api::Txt2Img>(&body).unwrap().jobs(),
            ApiRequest::Img2Img(_) => serde_json::from_str::<api::Img2Img>(&body).unwrap().jobs(),
        }
        .map_err(|e| e.0)
        .unwrap();
        assert_eq!(jobs.len(), 1, "one request per job");
        jobs.into_iter().next().unwrap()
    }

    fn same_job(sent: &Job, got: &Job) {
        let mut sent_params = sent.params.clone();
        if matches!(sent.kind, JobKind::Txt2Img) {
            // Text-to-image has no strength: the server keeps its default.
            sent_params.strength = got.params.strength;
        }
        assert_eq!(sent_params, got.params);
        assert_eq!(sent.batch, got.batch);
        let (a, b) = (&sent.kind, &got.kind);
        match (a.canvas_and_mask().unwrap(), b.canvas_and_mask().unwrap()) {
            (Some((ia, ma)), Some((ib, mb))) => {
                assert_eq!(ia.pixels, ib.pixels);
                assert_eq!(ma.values, mb.values);
                assert_eq!(a.inpaint_options(), b.inpaint_options());
            }
            (None, None) => assert_eq!(
                a.source_image().map(|i| &i.pixels),
                b.source_image().map(|i| &i.pixels)
            ),
            _ => panic!("{} came back as {}", a.name(), b.name()),
        }
    }

    #[test]
    fn every_kind_of_job_reads_back_as_itself() {
        let image = Arc::new(picture(64, 48));
        let mut mask = Mask::filled(64, 48, 0.0);
        for (i, v) in mask.values.iter_mut().enumerate() {
            *v = ((i % 64) * 4 % 256) as f32 / 255.0;
        }
        let mask = Arc::new(mask);
        let inpaint = InpaintOptions {
            mask_blur: 7,
            resampling: Resampling {
                resample: 3,
                jump: 2,
            },
            area: InpaintArea::Masked { padding: 12 },
            masked_content: MaskedContent::LatentNoise,
        };
        let kinds = [
            JobKind::Txt2Img,
            JobKind::Img2Img {
                init: image.clone(),
            },
            JobKind::Inpaint {
                image: image.clone(),
                mask,
                options: inpaint,
            },
            JobKind::Inpaint {
                image: image.clone(),
                mask: Arc::new(Mask::filled(64, 48, 1.0)),
                options: InpaintOptions::default(),
            },
        ];
        for kind in kinds {
            let mut p = params();
            p.timestep_spacing = Some(TimestepSpacing::Trailing);
            let job = Job::new(kind, p).with_batch(3);
            let request = request_for(&job, Some("tiny [abc]"), ServerKind::Pentimento).unwrap();
            same_job(&job, &read_back(&request));
            let body: Value = serde_json::from_str(&request.body().unwrap()).unwrap();
            assert_eq!(
                body["override_settings"]["sd_model_checkpoint"],
                "tiny [abc]"
            );
        }
    }

    #[test]
    fn outpainting_is_inpainting_on_the_extended_canvas() {
        let options = InpaintOptions {
            masked_content: MaskedContent::Fill,
            ..Default::default()
        };
        let job = Job::new(
            JobKind::Outpaint {
                image: Arc::new(picture(40, 32)),
                margins: Margins {
                    left: 8,
                    top: 0,
                    right: 16,
                    bottom: 16,
                },
                options,
            },
            params(),
        );
        let got = read_back(&request_for(&job, None, ServerKind::Pentimento).unwrap());
        assert_eq!(got.kind.name(), "inpaint");
        same_job(&job, &got);
    }

    #[test]
    fn what_only_we_have_is_refused_for_another_server_not_dropped() {
        let mut p = params();
        p.timestep_spacing = Some(TimestepSpacing::Trailing);
        let e = request_for(
            &Job::new(JobKind::Txt2Img, p),
            None,
            ServerKind::Automatic1111,
        )
        .unwrap_err();
        assert!(e.contains("Pentimento server"), "{e}");
        let job = Job::new(
            JobKind::Inpaint {
                image: Arc::new(picture(8, 8)),
                mask: Arc::new(Mask::filled(8, 8, 1.0)),
                options: InpaintOptions {
                    resampling: Resampling {
                        resample: 2,
                        jump: 1,
                    },
                    ..Default::default()
                },
            },
            params(),
        );
        let e = request_for(&job, None, ServerKind::Automatic1111).unwrap_err();
        assert!(e.contains("RePaint"), "{e}");
        // Without them, the same jobs go to any server.
        let mut plain = job.clone();
        if let JobKind::Inpaint { options, .. } = &mut plain.kind {
            options.resampling = DEFAULT_RESAMPLING;
        }
        assert!(request_for(&plain, None, ServerKind::Automatic1111).is_ok());
    }

    #[test]
    fn a_seed_beyond_the_apis_range_is_refused() {
        let mut p = params();
        p.seed = u64::MAX;
        let e =
            request_for(&Job::new(JobKind::Txt2Img, p), None, ServerKind::Pentimento).unwrap_err();
        assert!(e.contains("seed"), "{e}");
    }

    #[test]
    fn control_units_name_their_model_and_carry_their_condition() {
        let mut unit = ControlUnit::new(
            "/models/controlnet/control_v11p_sd15_canny.safetensors".into(),
            Arc::new(picture(16, 16)),
        );
        unit.weight = 0.8;
        unit.start = 0.1;
        unit.end = 0.9;
        unit.mode = crate::engine::control::ControlMode::ControlNetMoreImportant;
        let job = Job::new(JobKind::Txt2Img, params()).with_controls(vec![unit]);
        let body: Value = serde_json::from_str(
            &request_for(&job, None, ServerKind::Automatic1111)
                .unwrap()
                .body()
                .unwrap(),
        )
        .unwrap();
        let u = &body["alwayson_scripts"]["controlnet"]["args"][0];
        assert_eq!(u["model"], "control_v11p_sd15_canny");
        assert_eq!(u["module"], "none");
        assert_eq!(u["control_mode"], 2);
        assert_eq!(u["weight"], 0.8);
        let png = api::decode_image(u["image"].as_str().unwrap()).unwrap();
        assert_eq!(png.pixels, picture(16, 16).pixels);
    }
}
