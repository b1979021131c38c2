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

/// A whole job in f16 (what a GPU runs by default) against the same job in f32: every job kind
/// runs, and the pictures stay close. Run on the CPU's f16 kernels, it checks the dtypes meet
/// everywhere a GPU's would.
#[test]
fn whole_jobs_run_in_half_precision_close_to_f32() {
    use pentimento_engine::denoise::StepInfo;
    use pentimento_engine::inpaint::InpaintOptions;
    use pentimento_engine::mask::Mask;
    use pentimento_engine::{GenerationParams, Job, JobKind};
    use std::ops::ControlFlow;
    use std::sync::Arc;

    let half = load(DType::F16);
    let full = load(DType::F32);
    let run = |sd: &StableDiffusion, kind: JobKind, sampler: &str| {
        let params = GenerationParams {
            prompt: "a heron in the reeds".into(),
            sampler: sampler.into(),
            steps: 4,
            width: 64,
            height: 64,
            seed: 5,
            strength: 0.7,
            ..Default::default()
        };
        let mut go = |_: StepInfo| ControlFlow::Continue(());
        match sd.run(&Job::new(kind, params), &mut go) {
            Ok(mut out) => out.remove(0).image,
            Err(e) => panic!("{sampler}: {e:?}"),
        }
    };
    let picture = run(&full, JobKind::Txt2Img, "Euler");
    let init = Arc::new(picture.clone());
    let mut mask = Mask::filled(64, 64, 0.0);
    for v in mask.values.iter_mut().take(64 * 32) {
        *v = 1.0;
    }
    let jobs = [
        (JobKind::Txt2Img, "Euler"),
        (JobKind::Txt2Img, "Euler a"),
        (JobKind::Txt2Img, "DPM++ 2M Karras"),
        (JobKind::Txt2Img, "Heun"),
        (JobKind::Txt2Img, "DDIM"),
        (JobKind::Txt2Img, "UniPC"),
        (JobKind::Img2Img { init: init.clone() }, "Euler"),
        (
            JobKind::Inpaint {
                image: init,
                mask: Arc::new(mask),
                options: InpaintOptions::default(),
            },
            "Euler",
        ),
    ];
    // candle's CPU kernels round f16 products as they go (a GPU's accumulate in f32), so the
    // bound is looser than the GPU check's 2/255; a dtype that does not meet, or a NaN, is far
    // beyond it.
    let mut steps = vec![];
    for (kind, sampler) in jobs {
        let name = format!("{} {sampler}", kind.name());
        let a = run(&half, kind.clone(), sampler);
        let b = run(&full, kind, sampler);
        steps.push((name, max_step(&a.pixels, &b.pixels)));
    }
    assert!(
        steps.iter().all(|(_, s)| *s <= 8),
        "f16 against f32, in 1/255: {steps:?}"
    );
    eprintln!("f16 against f32, in 1/255: {steps:?}");
}
