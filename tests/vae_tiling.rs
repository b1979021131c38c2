//! Tiled VAE passes against whole ones on the fixture VAE: same size, no seams at the tile
//! boundaries. (The fixture's random weights make every output pixel depend on the whole
//! image through GroupNorm statistics and the mid-block attention, so a tile decoded alone is
//! not the same picture as that region of a whole decode: the difference is reported, not
//! bounded tightly. With local operations tiling is exact: see `tiling.rs`.)

mod common;

use candle_core::{Device, Tensor};
use common::fixture;
use pentimento::engine::model::tiling::Tiling;
use pentimento::engine::model::{LoadOptions, StableDiffusion};
use pentimento::engine::rng::TorchRng;

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

/// Mean absolute step between neighbouring columns `x - 1` and `x` of `(1, 3, h, w)`.
fn column_step(t: &Tensor, x: usize) -> f32 {
    let a = t.narrow(3, x - 1, 1).unwrap();
    let b = t.narrow(3, x, 1).unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn tiled_decode_keeps_the_size_and_shows_no_seams() {
    let sd = model();
    let tiling = Tiling {
        tile_latent: 16,
        overlap: 0.25,
        threshold_px: 0,
    };
    let z = latents(48, 40);
    let whole = sd.vae.decode(&z).unwrap();
    let tiled = sd.vae.decode_tiled(&z, &tiling).unwrap();
    assert_eq!(whole.dims(), tiled.dims());
    let (max, mean) = stats(&whole, &tiled);
    let spread: f32 = whole
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    eprintln!("decode: max {max:.4} mean {mean:.5}, mean |output| {spread:.4}");

    // Seams: the step across a tile boundary (every 12 latent cells = 96 px) is no larger than
    // the steps around it.
    for seam in [96usize, 192] {
        let at = column_step(&tiled, seam);
        let around: f32 = [seam - 9, seam - 5, seam + 5, seam + 9]
            .iter()
            .map(|&x| column_step(&tiled, x))
            .sum::<f32>()
            / 4.0;
        let whole_at = column_step(&whole, seam);
        eprintln!("seam {seam}: step {at:.4}, around {around:.4}, whole image there {whole_at:.4}");
        assert!(
            at < 1.3 * around,
            "a visible seam at x = {seam}: {at} vs {around} around it"
        );
    }
}

#[test]
fn tiled_encode_keeps_the_size() {
    let sd = model();
    let tiling = Tiling {
        tile_latent: 16,
        overlap: 0.25,
        threshold_px: 0,
    };
    let image = sd
        .vae
        .decode(&latents(48, 40))
        .unwrap()
        .clamp(-1f32, 1f32)
        .unwrap();
    let whole = sd.vae.encode(&image).unwrap();
    let tiled = sd.vae.encode_tiled(&image, &tiling).unwrap();
    assert_eq!(whole.mean.dims(), tiled.mean.dims());
    let (max, mean) = stats(&whole.mean, &tiled.mean);
    eprintln!("encode: max {max:.4} mean {mean:.5}");
}

#[test]
fn large_generations_decode_in_tiles() {
    // 1088 px wide: over the 1024 px threshold, so the decode goes through tiles.
    let sd = model();
    let p = pentimento::engine::GenerationParams {
        prompt: "a wide panorama".into(),
        steps: 2,
        width: 1088,
        height: 64,
        ..Default::default()
    };
    assert!(sd.vae_tiling.applies(p.height, p.width));
    let image = sd
        .txt2img(&p, &mut |_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    assert_eq!((image.width, image.height), (1088, 64));
}
