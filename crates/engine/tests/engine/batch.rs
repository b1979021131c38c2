//! One UNet batch gives, image for image, what each seed gives alone (seed + i), for every kind
//! of job and for samplers that draw fresh noise each step.

use std::ops::ControlFlow;

use crate::common::fixture;
use pentimento_engine::denoise::StepInfo;
use pentimento_engine::image::RgbImage;
use pentimento_engine::inpaint::InpaintOptions;
use pentimento_engine::mask::Mask;
use pentimento_engine::model::{LoadOptions, StableDiffusion};
use pentimento_engine::{GenerationParams, Job, JobKind};
use std::sync::Arc;

fn go() -> impl FnMut(StepInfo) -> ControlFlow<()> {
    |_| ControlFlow::Continue(())
}

/// The images of `kind` from `params` in one batch of `batch`.
fn run(sd: &StableDiffusion, kind: &JobKind, p: &GenerationParams, batch: usize) -> Vec<RgbImage> {
    let job = Job::new(kind.clone(), p.clone()).with_batch(batch);
    sd.run(&job, &mut go())
        .unwrap()
        .into_iter()
        .map(|g| g.image)
        .collect()
}

fn one(sd: &StableDiffusion, kind: &JobKind, p: &GenerationParams) -> RgbImage {
    run(sd, kind, p, 1).remove(0)
}

fn params(sampler: &str) -> GenerationParams {
    GenerationParams {
        prompt: "a red barn".into(),
        negative_prompt: "blurry".into(),
        steps: 4,
        width: 64,
        height: 64,
        seed: 40,
        sampler: sampler.into(),
        strength: 0.6,
        ..Default::default()
    }
}

/// Largest per-channel difference in 8-bit steps.
fn max_step(a: &RgbImage, b: &RgbImage) -> u8 {
    a.pixels
        .iter()
        .zip(&b.pixels)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn check(batch: &[RgbImage], alone: impl Fn(u64) -> RgbImage) {
    for (i, image) in batch.iter().enumerate() {
        let single = alone(40 + i as u64);
        // Batched matrix products round differently in the last bits; nothing more.
        assert!(
            max_step(image, &single) <= 1,
            "image {i} of the batch differs from seed {} alone by {}",
            40 + i,
            max_step(image, &single)
        );
    }
    assert!(
        max_step(&batch[0], &batch[1]) > 10,
        "images of a batch should differ"
    );
}

fn load(name: &str) -> StableDiffusion {
    StableDiffusion::load(&fixture(name), &LoadOptions::cpu()).expect("fixture model")
}

fn test_image() -> RgbImage {
    let pixels = (0..64 * 64)
        .flat_map(|i| {
            let (x, y) = (i % 64, i / 64);
            [(x * 4) as u8, (y * 4) as u8, 128]
        })
        .collect();
    RgbImage::new(64, 64, pixels).unwrap()
}

fn test_mask() -> Mask {
    let values = (0..64 * 64)
        .map(|i| {
            if (i % 64) > 20 && (i / 64) < 40 {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    Mask::new(64, 64, values).unwrap()
}

#[test]
fn txt2img_batch_matches_seeds_alone() {
    let sd = load("tiny-sd15.safetensors");
    for sampler in ["Euler a", "DPM++ 2M Karras"] {
        let p = params(sampler);
        let batch = run(&sd, &JobKind::Txt2Img, &p, 3);
        assert_eq!(batch.len(), 3);
        check(&batch, |seed| {
            one(
                &sd,
                &JobKind::Txt2Img,
                &GenerationParams { seed, ..p.clone() },
            )
        });
    }
}

#[test]
fn img2img_batch_matches_seeds_alone() {
    let sd = load("tiny-sd15.safetensors");
    let p = params("DDIM");
    let p = GenerationParams { eta: 1.0, ..p };
    let kind = JobKind::Img2Img {
        init: Arc::new(test_image()),
    };
    let batch = run(&sd, &kind, &p, 2);
    check(&batch, |seed| {
        one(&sd, &kind, &GenerationParams { seed, ..p.clone() })
    });
}

#[test]
fn inpaint_batch_matches_seeds_alone_on_both_kinds_of_model() {
    for model in ["tiny-sd15-inpainting.ckpt", "tiny-sd15.safetensors"] {
        let sd = load(model);
        let p = GenerationParams {
            strength: 1.0,
            ..params("Euler a")
        };
        let kind = JobKind::Inpaint {
            image: Arc::new(test_image()),
            mask: Arc::new(test_mask()),
            options: InpaintOptions::default(),
        };
        let batch = run(&sd, &kind, &p, 2);
        check(&batch, |seed| {
            one(&sd, &kind, &GenerationParams { seed, ..p.clone() })
        });
    }
}

#[test]
fn variation_seed_is_shared_by_a_batch() {
    let sd = load("tiny-sd15.safetensors");
    let p = GenerationParams {
        variation_seed: Some(7),
        variation_strength: 0.3,
        ..params("Euler")
    };
    let batch = run(&sd, &JobKind::Txt2Img, &p, 2);
    check(&batch, |seed| {
        one(
            &sd,
            &JobKind::Txt2Img,
            &GenerationParams { seed, ..p.clone() },
        )
    });
}

#[test]
fn batch_size_out_of_range_is_refused() {
    let sd = load("tiny-sd15.safetensors");
    let job = Job::new(JobKind::Txt2Img, params("Euler")).with_batch(0);
    let err = sd.run(&job, &mut go()).unwrap_err();
    assert!(err.to_string().contains("batch size"), "{err}");
}

#[test]
fn vae_encodes_a_batch_as_each_image_alone() {
    // Guards the contiguous copy in the VAE's attention: candle's Linear on a transposed batch
    // of more than one image returns wrong values.
    let sd = load("tiny-sd15.safetensors");
    let x = test_image().to_tensor(&candle_core::Device::Cpu).unwrap();
    let alone = sd.vae.encode(&x).unwrap().mean;
    let batch = sd
        .vae
        .encode(&x.repeat((2, 1, 1, 1)).unwrap())
        .unwrap()
        .mean;
    for i in 0..2 {
        crate::common::assert_close(
            "batched VAE encode",
            &batch.narrow(0, i, 1).unwrap(),
            &alone,
            1e-5,
        );
    }
}
