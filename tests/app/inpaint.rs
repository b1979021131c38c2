//! Inpainting behaviour beyond diffusers' numbers: paste-back, seams, soft masks, only-masked
//! mode, outpainting and the CLI's handling of masks.

use std::ops::ControlFlow;
use std::process::Command;

use crate::common::fixture;
use pentimento::engine::inpaint::canvas::{extend, Margins};
use pentimento::engine::inpaint::{InpaintArea, InpaintOptions};
use pentimento::engine::mask::{composite, Mask};
use pentimento::engine::{GenerationParams, Job, JobKind, LoadOptions, RgbImage, StableDiffusion};
use std::sync::Arc;

fn load_rgb(name: &str) -> RgbImage {
    let img = image::open(fixture(name)).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    RgbImage::new(w as usize, h as usize, img.into_raw()).unwrap()
}

fn params(w: usize, h: usize) -> GenerationParams {
    GenerationParams {
        prompt: "a stone wall".into(),
        seed: 3,
        steps: 6,
        cfg_scale: 5.0,
        sampler: "Euler a".into(),
        width: w,
        height: h,
        strength: 1.0,
        ..Default::default()
    }
}

fn model(name: &str) -> StableDiffusion {
    StableDiffusion::load(&fixture(name), &LoadOptions::cpu()).unwrap()
}

fn no_progress() -> impl FnMut(pentimento::engine::denoise::StepInfo) -> ControlFlow<()> {
    |_| ControlFlow::Continue(())
}

fn inpaint_job(
    params: &GenerationParams,
    image: &RgbImage,
    mask: &Mask,
    options: &InpaintOptions,
) -> Job {
    let kind = JobKind::Inpaint {
        image: Arc::new(image.clone()),
        mask: Arc::new(mask.clone()),
        options: *options,
    };
    Job::new(kind, params.clone())
}

/// One inpainting job through the job layer, pasted back.
fn inpaint(
    sd: &StableDiffusion,
    params: &GenerationParams,
    image: &RgbImage,
    mask: &Mask,
    options: &InpaintOptions,
) -> RgbImage {
    let job = inpaint_job(params, image, mask, options);
    sd.run(&job, &mut no_progress()).unwrap().remove(0).image
}

/// A mask with the left `cut` columns kept and the rest regenerated.
fn right_part(w: usize, h: usize, cut: usize, value: f32) -> Mask {
    Mask::new(
        w,
        h,
        (0..w * h)
            .map(|i| if i % w >= cut { value } else { 0.0 })
            .collect(),
    )
    .unwrap()
}

fn flat(w: usize, h: usize, v: u8) -> RgbImage {
    RgbImage::new(w, h, vec![v; w * h * 3]).unwrap()
}

#[test]
fn feathered_seam_has_no_step_larger_than_the_blur_allows() {
    let (w, h) = (64, 4);
    for blur in [1usize, 4, 8, 16] {
        let weights = right_part(w, h, 40, 1.0).feathered(blur);
        let out = composite(&flat(w, h, 0), &flat(w, h, 255), &weights).unwrap();
        let row: Vec<i32> = (0..w).map(|x| out.pixels[x * 3] as i32).collect();
        let max_step = row.windows(2).map(|p| (p[1] - p[0]).abs()).max().unwrap();
        // Smoothstep over blur + 1 pixels: its steepest slope is 1.5 / (blur + 1).
        let allowed = (255.0 * 1.5 / (blur as f64 + 1.0)).ceil() as i32 + 1;
        assert!(
            max_step <= allowed,
            "blur {blur}: step {max_step} > {allowed}"
        );
        // Inside the mask the generated pixels, far outside the input's.
        assert!(row[40..].iter().all(|&v| v == 255));
        assert!(row[..40 - blur - 1].iter().all(|&v| v == 0));
    }
}

#[test]
fn paste_back_keeps_the_input_beyond_the_feather() {
    let sd = model("tiny-sd15.safetensors");
    let image = flat(64, 64, 128);
    let mask = right_part(64, 64, 32, 1.0);
    for blur in [0usize, 8] {
        let opts = InpaintOptions {
            mask_blur: blur,
            ..Default::default()
        };
        let out = inpaint(&sd, &params(64, 64), &image, &mask, &opts);
        let mut changed_inside = 0;
        for y in 0..64 {
            for x in 0..64 {
                let v = out.pixels[(y * 64 + x) * 3];
                if x + blur < 32 {
                    assert_eq!(
                        v, 128,
                        "blur {blur}: ({x}, {y}) is outside the feather but changed"
                    );
                } else if x >= 32 && v != 128 {
                    changed_inside += 1;
                }
            }
        }
        assert!(
            changed_inside > 500,
            "blur {blur}: the masked half was not regenerated"
        );
    }
}

#[test]
fn soft_masks_are_honoured_while_sampling() {
    let sd = model("tiny-sd15.safetensors");
    let image = load_rgb("tiny-sd15-img2img.3-image.png");
    let raw = |value: f32| {
        let mask = Mask::filled(128, 128, value);
        let job = inpaint_job(&params(128, 128), &image, &mask, &InpaintOptions::default());
        sd.run_at_model_size(&job, &mut no_progress())
            .unwrap()
            .remove(0)
    };
    // The tiny model's random VAE does not reproduce its input, so distances are measured from
    // what it makes of the unchanged latents (a mask of 0).
    let kept = raw(0.0);
    let distance = |img: &RgbImage| {
        img.pixels
            .iter()
            .zip(&kept.pixels)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / img.pixels.len() as f64
    };
    let (partly, fully) = (distance(&raw(0.3)), distance(&raw(1.0)));
    assert!(partly > 0.5, "a 30 % mask changed nothing ({partly:.2})");
    assert!(
        partly < 0.85 * fully,
        "a 30 % mask moved the result by {partly:.1}, a full one by {fully:.1}"
    );
}

#[test]
fn only_masked_mode_works_on_a_box_and_keeps_the_rest() {
    let sd = model("tiny-sd15.safetensors");
    let image = load_rgb("tiny-sd15-img2img.3-image.png").resized(192, 160);
    let mut values = vec![0f32; 192 * 160];
    for y in 60..80 {
        for x in 100..120 {
            values[y * 192 + x] = 1.0;
        }
    }
    let mask = Mask::new(192, 160, values).unwrap();
    let opts = InpaintOptions {
        mask_blur: 2,
        area: InpaintArea::Masked { padding: 8 },
        ..Default::default()
    };
    let out = inpaint(&sd, &params(64, 64), &image, &mask, &opts);
    assert_eq!((out.width, out.height), (192, 160));
    let mut changed_inside = 0;
    for y in 0..160 {
        for x in 0..192 {
            let k = (y * 192 + x) * 3;
            let near = (97..123).contains(&x) && (57..83).contains(&y);
            if !near {
                assert_eq!(
                    &out.pixels[k..k + 3],
                    &image.pixels[k..k + 3],
                    "({x}, {y}) changed"
                );
            } else if mask.at(x, y) == 1.0 && out.pixels[k..k + 3] != image.pixels[k..k + 3] {
                changed_inside += 1;
            }
        }
    }
    assert!(
        changed_inside > 200,
        "only {changed_inside} masked pixels were regenerated"
    );
}

#[test]
fn outpainting_extends_the_canvas_and_keeps_the_original() {
    let sd = model("tiny-sd15.safetensors");
    let image = load_rgb("tiny-sd15-img2img.3-image.png");
    let (canvas, mask) = extend(
        &image,
        Margins {
            left: 16,
            top: 0,
            right: 16,
            bottom: 8,
        },
    )
    .unwrap();
    assert_eq!((canvas.width, canvas.height), (160, 136));
    let opts = InpaintOptions {
        mask_blur: 4,
        ..Default::default()
    };
    let out = inpaint(&sd, &params(160, 136), &canvas, &mask, &opts);
    for y in 0..128 - 5 {
        for x in 16 + 5..16 + 128 - 5 {
            let k = (y * 160 + x) * 3;
            let s = (y * 128 + x - 16) * 3;
            assert_eq!(&out.pixels[k..k + 3], &image.pixels[s..s + 3]);
        }
    }
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(args)
        .output()
        .unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pentimento-inpaint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn an_all_black_mask_returns_the_input() {
    let black = tmp("black.png");
    image::GrayImage::new(128, 128).save(&black).unwrap();
    let out = tmp("black-out.png");
    let model = fixture("tiny-sd15.safetensors");
    let input = fixture("tiny-sd15-inpaint.2-image.png");
    let o = cli(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "x",
        "--steps",
        "2",
        "--init-image",
        input.to_str().unwrap(),
        "--mask",
        black.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = image::open(&out).unwrap().to_rgb8();
    let b = image::open(&input).unwrap().to_rgb8();
    assert_eq!(a, b);
}

#[test]
fn a_mask_of_another_size_is_an_error() {
    let small = tmp("small.png");
    image::GrayImage::new(64, 64).save(&small).unwrap();
    let out = tmp("never.png");
    let model = fixture("tiny-sd15.safetensors");
    let input = fixture("tiny-sd15-inpaint.2-image.png");
    let o = cli(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "x",
        "--init-image",
        input.to_str().unwrap(),
        "--mask",
        small.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("64x64"));
    assert!(!out.exists());
}

#[test]
fn cli_reports_the_repaint_cost_and_outpaints() {
    let out = tmp("outpaint.png");
    let model = fixture("tiny-sd15.safetensors");
    let input = fixture("tiny-sd15-inpaint.2-image.png");
    let o = cli(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "x",
        "--steps",
        "4",
        "--sampler",
        "Euler a",
        "--init-image",
        input.to_str().unwrap(),
        "--outpaint",
        "8,0,8,0",
        "--repaint-resample",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("7 UNet calls (4 without resampling)"),
        "{stderr}"
    );
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (144, 128));
}
