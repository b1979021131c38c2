//! A half-precision file's UNet kept half in memory on the CPU (each layer widens its weight as
//! it runs) computes exactly what the same file widened at load computes: the same pixels for
//! txt2img, img2img, inpainting and with LoRAs — in half the memory.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use crate::common::fixture;
use candle_core::DType;
use pentimento_engine::denoise::StepInfo;
use pentimento_engine::inpaint::InpaintOptions;
use pentimento_engine::mask::Mask;
use pentimento_engine::model::adapters::LoraRef;
use pentimento_engine::model::{HalfWeights, LoadOptions, StableDiffusion};
use pentimento_engine::{GenerationParams, Job, JobKind, RgbImage};

/// The tiny model with every float tensor stored as `dtype` (what fp16 releases ship).
fn half_file(dtype: DType) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pentimento-halfw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("tiny-sd15-{dtype:?}.safetensors"));
    if !path.exists() {
        let tensors = candle_core::safetensors::load(
            fixture("tiny-sd15.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let halved: std::collections::HashMap<String, candle_core::Tensor> = tensors
            .into_iter()
            .map(|(k, t)| {
                let t = if t.dtype().is_float() {
                    t.to_dtype(dtype).unwrap()
                } else {
                    t
                };
                (k, t)
            })
            .collect();
        candle_core::safetensors::save(&halved, &path).unwrap();
    }
    path
}

fn load(path: &std::path::Path, half_weights: HalfWeights) -> StableDiffusion {
    let opts = LoadOptions {
        half_weights,
        ..LoadOptions::cpu()
    };
    StableDiffusion::load(path, &opts).unwrap()
}

fn run(sd: &StableDiffusion, kind: JobKind, loras: Vec<LoraRef>) -> RgbImage {
    let params = GenerationParams {
        prompt: "a heron in the reeds".into(),
        steps: 4,
        width: 64,
        height: 64,
        seed: 11,
        strength: 0.7,
        ..Default::default()
    };
    let job = Job::new(kind, params).with_loras(loras);
    let mut go = |_: StepInfo| ControlFlow::Continue(());
    sd.run(&job, &mut go).unwrap().remove(0).image
}

#[test]
fn kept_half_computes_exactly_what_widened_at_load_computes() {
    for dtype in [DType::F16, DType::BF16] {
        let file = half_file(dtype);
        let kept = load(&file, HalfWeights::Keep);
        let widened = load(&file, HalfWeights::Widen);
        assert!(
            kept.info.memory_bytes * 10 < widened.info.memory_bytes * 8,
            "{dtype:?}: kept {} bytes, widened {}",
            kept.info.memory_bytes,
            widened.info.memory_bytes
        );
        let picture = run(&widened, JobKind::Txt2Img, vec![]);
        let init = Arc::new(picture.clone());
        let mut mask = Mask::filled(64, 64, 0.0);
        for v in mask.values.iter_mut().take(64 * 32) {
            *v = 1.0;
        }
        let kinds = [
            JobKind::Txt2Img,
            JobKind::Img2Img { init: init.clone() },
            JobKind::Inpaint {
                image: init,
                mask: Arc::new(mask),
                options: InpaintOptions::default(),
            },
        ];
        for kind in kinds {
            let name = kind.name();
            let a = run(&kept, kind.clone(), vec![]);
            let b = run(&widened, kind, vec![]);
            assert_eq!(a.pixels, b.pixels, "{dtype:?} {name}");
        }
        let lora = || {
            vec![LoraRef::new(
                fixture("extra/loras/ink_kohya.safetensors"),
                0.8,
            )]
        };
        let a = run(&kept, JobKind::Txt2Img, lora());
        let b = run(&widened, JobKind::Txt2Img, lora());
        assert_eq!(a.pixels, b.pixels, "{dtype:?} with a LoRA");
        assert_ne!(a.pixels, picture.pixels, "the LoRA changes the picture");
        // And the model is itself again after it.
        assert_eq!(run(&kept, JobKind::Txt2Img, vec![]).pixels, picture.pixels);
    }
}
