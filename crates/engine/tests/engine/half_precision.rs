//! A model computing in f16 (what GPUs use; candle's CPU kernels run it too): close to f32, and
//! a VAE pass that overflows in f16 is redone in f32 instead of returning NaN pixels.

use crate::common::fixture;
use candle_core::{DType, Device};
use pentimento_engine::model::{LoadOptions, StableDiffusion};
use pentimento_engine::rng::TorchRng;

fn load(dtype: DType) -> StableDiffusion {
    let opts = LoadOptions {
        dtype: Some(dtype),
        ..LoadOptions::cpu()
    };
    StableDiffusion::load(&fixture("tiny-sd15.safetensors"), &opts).unwrap()
}

fn max_step(a: &[u8], b: &[u8]) -> u8 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

#[test]
fn an_overflowing_half_precision_decode_is_redone_in_f32() {
    let half = load(DType::F16);
    let full = load(DType::F32);
    let z = TorchRng::new(9)
        .randn_tensor(&[1, 4, 8, 8], &Device::Cpu)
        .unwrap();

    // Ordinary latents: f16 is close to f32 and needs no fallback.
    let a = half.decode_latents(&z).unwrap();
    let b = full.decode_latents(&z).unwrap();
    assert!(
        max_step(&a.pixels, &b.pixels) <= 3,
        "f16 vs f32: {}",
        max_step(&a.pixels, &b.pixels)
    );
    assert!(!half.vae_fallback.is_loaded());

    // Latents far outside the usual range overflow f16 (largest value 65504) in the VAE.
    let wild = (z * 20000.0).unwrap();
    let a = half.decode_latents(&wild).unwrap();
    let b = full.decode_latents(&wild).unwrap();
    assert!(half.vae_fallback.is_loaded(), "the f32 VAE was needed");
    assert_eq!(
        a.pixels, b.pixels,
        "the retry decodes exactly as an f32 model"
    );
}
