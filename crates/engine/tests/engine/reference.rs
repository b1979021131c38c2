//! Every component against diffusers' outputs in `tiny-sd15-reference.safetensors`.

use crate::common::{assert_close, fixture, reference};
use candle_core::{DType, Device, Tensor};
use pentimento_engine::model::{LoadOptions, StableDiffusion};
use pentimento_engine::rng::TorchRng;

const TOL: f32 = 1e-4;

fn load(name: &str) -> StableDiffusion {
    StableDiffusion::load(&fixture(name), &LoadOptions::cpu())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn prompts() -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(fixture("tiny-sd15-prompts.json")).unwrap())
        .unwrap()
}

#[test]
fn noise_matches_torch_randn() {
    let r = reference();
    let mut checked = 0;
    for (key, want) in &r {
        let Some(seed) = key.strip_prefix("noise.seed") else {
            continue;
        };
        let mut rng = TorchRng::new(seed.parse().unwrap());
        let got = rng.randn_tensor(want.dims(), &Device::Cpu).unwrap();
        assert_close(key, &got, want, TOL);
        checked += 1;
    }
    assert!(checked >= 5);
}

#[test]
fn tokens_match_exactly() {
    let sd = load("tiny-sd15");
    let r = reference();
    for (i, prompt) in prompts().iter().enumerate() {
        let tokens = sd.text.tokenizer.tokens(prompt).unwrap();
        let ids = sd.text.tokenizer.ids_for_pass(&tokens);
        let want: Vec<i64> = r[&format!("tokens.{i}")]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let got: Vec<i64> = ids.iter().map(|&v| v as i64).collect();
        assert_eq!(got, want, "prompt {i}: {prompt:?}");
    }
}

fn check_text_embeddings(model: &str) {
    let sd = load(model);
    let r = reference();
    for (i, prompt) in prompts().iter().enumerate() {
        let got = sd.text.encode(prompt, &Device::Cpu).unwrap();
        assert_close(
            &format!("{model} text_embeddings.{i}"),
            &got,
            &r[&format!("text_embeddings.{i}")],
            TOL,
        );
    }
}

#[test]
fn text_embeddings_from_folder() {
    check_text_embeddings("tiny-sd15");
}

#[test]
fn text_embeddings_from_single_file() {
    check_text_embeddings("tiny-sd15.safetensors");
}

#[test]
fn text_embeddings_from_ckpt() {
    check_text_embeddings("tiny-sd15-inpainting.ckpt");
}

fn check_unet(model: &str, input: &str, output: &str) {
    let sd = load(model);
    let r = reference();
    let t = r["unet.in.timesteps"].to_dtype(DType::F32).unwrap();
    let got = sd
        .unet
        .forward(&r[input], &t, &r["unet.in.context"])
        .unwrap();
    assert_close(&format!("{model} {output}"), &got, &r[output], TOL);
}

#[test]
fn unet_from_folder() {
    check_unet("tiny-sd15", "unet.in.sample", "unet.out");
}

#[test]
fn unet_from_single_file() {
    check_unet("tiny-sd15.safetensors", "unet.in.sample", "unet.out");
}

#[test]
fn inpainting_unet_from_ckpt() {
    let sd = load("tiny-sd15-inpainting.ckpt");
    assert!(sd.info.inpainting);
    check_unet("tiny-sd15-inpainting.ckpt", "unet9.in.sample", "unet9.out");
}

fn check_vae(model: &str) {
    let sd = load(model);
    let r = reference();
    let decoded = sd.vae.decode(&r["vae.decode.in"]).unwrap();
    assert_close(
        &format!("{model} vae.decode"),
        &decoded,
        &r["vae.decode.out"],
        TOL,
    );
    let dist = sd.vae.encode(&r["vae.encode.in"]).unwrap();
    assert_close(
        &format!("{model} vae.encode.mean"),
        &dist.mean,
        &r["vae.encode.mean"],
        TOL,
    );
    assert_close(
        &format!("{model} vae.encode.std"),
        &dist.std,
        &r["vae.encode.std"],
        TOL,
    );
}

#[test]
fn vae_from_folder() {
    check_vae("tiny-sd15");
}

#[test]
fn vae_from_single_file() {
    check_vae("tiny-sd15.safetensors");
}

#[test]
fn vae_from_ckpt() {
    check_vae("tiny-sd15-inpainting.ckpt");
}

#[test]
fn schedules_match_diffusers() {
    use pentimento_engine::sampler::{Prediction, SamplerKind, SamplerSettings, TrainingSchedule};
    let r = reference();
    let schedule = TrainingSchedule::default();
    let settings = SamplerSettings {
        steps: 20,
        prediction: Prediction::Epsilon,
        eta: 0.0,
        spacing: None,
    };
    let mut checked = 0;
    for kind in SamplerKind::all() {
        let name = kind.name().replace("++", "pp").replace(' ', "_");
        let key = format!("sched.{name}.timesteps");
        let Some(want) = r.get(&key) else { continue };
        let sampler = kind.build(&schedule, settings);
        let got = Tensor::new(
            sampler
                .timesteps()
                .iter()
                .map(|&t| t as f32)
                .collect::<Vec<_>>(),
            &Device::Cpu,
        )
        .unwrap();
        assert_close(&key, &got, want, 1e-3);
        checked += 1;
        let key = format!("sched.{name}.sigmas");
        if let Some(want) = r.get(&key) {
            let sigmas = sampler
                .sigmas()
                .unwrap_or_else(|| panic!("{name} has no sigmas"));
            let got = Tensor::new(sigmas.to_vec(), &Device::Cpu).unwrap();
            assert_close(&key, &got, want, 1e-4);
        }
    }
    // Every schedule in the reference file is one of ours.
    let tables = r
        .keys()
        .filter(|k| k.starts_with("sched.") && k.ends_with(".timesteps"))
        .count();
    assert_eq!(checked, tables);
}

#[test]
fn taesd_reproduces_diffusers() {
    use pentimento_engine::model::taesd::Taesd;
    let r = candle_core::safetensors::load(fixture("taesd-reference.safetensors"), &Device::Cpu)
        .unwrap();
    let taesd = Taesd::open(&fixture("taesd"), &Device::Cpu).unwrap();
    let decoded = taesd.decode(&r["taesd.decode.in"]).unwrap();
    assert_close("taesd.decode", &decoded, &r["taesd.decode.out"], TOL);
    let encoded = taesd.encode(&r["taesd.encode.in"]).unwrap();
    assert_close("taesd.encode", &encoded, &r["taesd.encode.out"], TOL);
}
