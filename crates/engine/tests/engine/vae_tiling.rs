//! Tiled VAE passes against whole ones on the fixture VAE: the same size and the same values
//! (tiles read their halo from the whole image and GroupNorms use whole-image statistics).

use crate::common::fixture;
use candle_core::{Device, Tensor};
use pentimento_engine::model::tiling::Tiling;
use pentimento_engine::model::{LoadOptions, StableDiffusion};
use pentimento_engine::rng::TorchRng;

fn model() -> StableDiffusion {
    StableDiffusion::load(&fixture("tiny-sd15.safetensors"), &LoadOptions::cpu()).unwrap()
}

/// Latents that decode to something image-like: smooth noise at the VAE's scale.
fn latents(h: usize, w: usize) -> Tensor {
    let coarse = TorchRng::new(3)
        .randn_tensor(&[1, 4, h / 8, w / 8], &Device::Cpu)
        .unwrap();
    let fine = TorchRng::new(4)
        .randn_tensor(&[1, 4, h, w], &Device::Cpu)
        .unwrap();
    (coarse.upsample_nearest2d(h, w).unwrap() + (fine * 0.3).unwrap()).unwrap()
}

fn stats(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let d = (a - b).unwrap().abs().unwrap();
    (
        d.max_all().unwrap().to_scalar().unwrap(),
        d.mean_all().unwrap().to_scalar().unwrap(),
    )
}

fn tiling() -> Tiling {
    // Small tiles, so that every layer of the fixture VAE is cut into several, with sides
    // that do not divide the image.
    Tiling {
        tile: 28,
        threshold_px: 0,
    }
}

fn assert_close(what: &str, whole: &Tensor, tiled: &Tensor) {
    assert_eq!(whole.dims(), tiled.dims(), "{what}");
    let (max, mean) = stats(whole, tiled);
    let spread: f32 = whole
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    eprintln!("{what}: max |diff| {max:.2e}, mean {mean:.2e}, mean |output| {spread:.3}");
    assert!(
        max < 1e-4 * spread.max(1.0),
        "{what}: tiled differs by up to {max}"
    );
}

#[test]
fn tiled_decode_equals_the_whole_decode() {
    let sd = model();
    let z = latents(48, 40);
    let whole = sd.vae.decode(&z).unwrap();
    let tiled = sd.vae.decode_tiled(&z, &tiling()).unwrap();
    assert_close("decode", &whole, &tiled);
}

#[test]
fn tiled_encode_equals_the_whole_encode() {
    let sd = model();
    let image = sd
        .vae
        .decode(&latents(48, 40))
        .unwrap()
        .clamp(-1f32, 1f32)
        .unwrap();
    let whole = sd.vae.encode(&image).unwrap();
    let tiled = sd.vae.encode_tiled(&image, &tiling()).unwrap();
    assert_close("encode mean", &whole.mean, &tiled.mean);
    assert_close("encode std", &whole.std, &tiled.std);
}

#[test]
fn large_generations_decode_in_tiles() {
    // 1088 px wide: over the 1024 px threshold, so the decode goes through tiles.
    let sd = model();
    let p = pentimento_engine::GenerationParams {
        prompt: "a wide panorama".into(),
        steps: 2,
        width: 1088,
        height: 64,
        ..Default::default()
    };
    assert!(sd.vae_tiling.applies(p.height, p.width));
    let job = pentimento_engine::Job::new(pentimento_engine::JobKind::Txt2Img, p);
    let image = sd
        .run(&job, &mut |_| std::ops::ControlFlow::Continue(()))
        .unwrap()
        .remove(0)
        .image;
    assert_eq!((image.width, image.height), (1088, 64));
}
