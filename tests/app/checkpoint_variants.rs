//! External VAEs, EMA weights, `models inspect`, and files that are not SD checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{fixture, max_abs_diff, png_tensor};
use candle_core::{Device, Tensor};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(args)
        .output()
        .unwrap()
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("pentimento-variants-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The external-VAE case of the fixtures (DDIM, 12 steps, seed 42).
fn generate(model: &Path, extra: &[&str], out: &Path) -> (Tensor, String) {
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "a photo of a cat",
        "--seed",
        "42",
        "--steps",
        "12",
        "--cfg",
        "7.5",
        "--sampler",
        "DDIM",
        "--width",
        "128",
        "--height",
        "128",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = cli(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{stderr}");
    (png_tensor(out), stderr)
}

fn extvae_reference() -> Tensor {
    candle_core::safetensors::load(
        fixture("tiny-sd15-extvae-reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap()["txt2img.0"]
        .clone()
}

fn within_2_255(got: &Tensor, want: &Tensor) -> bool {
    max_abs_diff(got, want) <= 2.0 / 255.0 + 1e-6
}

#[test]
fn external_vae_case_reproduces() {
    #[derive(serde::Deserialize)]
    struct Case {
        model: String,
        vae: String,
        steps: usize,
        sampler: String,
    }
    let cases: Vec<Case> = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny-sd15-extvae-cases.json")).unwrap(),
    )
    .unwrap();
    assert_eq!((cases[0].steps, cases[0].sampler.as_str()), (12, "DDIM"));
    let dir = tmp_dir("extvae");
    let vae = fixture(&cases[0].vae);
    let (got, stderr) = generate(
        &fixture(&cases[0].model),
        &["--vae", vae.to_str().unwrap()],
        &dir.join("a.png"),
    );
    assert!(
        within_2_255(&got, &extvae_reference()),
        "max diff {}",
        max_abs_diff(&got, &extvae_reference())
    );
    assert!(stderr.contains("tiny-sd15-extvae.vae.pt"), "{stderr}");
}

#[test]
fn a_vae_beside_the_checkpoint_is_picked_up() {
    let dir = tmp_dir("sibling");
    let model = dir.join("final-pruned.safetensors");
    std::fs::copy(fixture("tiny-sd15.safetensors"), &model).unwrap();
    std::fs::copy(
        fixture("tiny-sd15-extvae.vae.pt"),
        dir.join("final-pruned.vae.pt"),
    )
    .unwrap();
    let (auto, stderr) = generate(&model, &[], &dir.join("auto.png"));
    assert!(within_2_255(&auto, &extvae_reference()));
    assert!(stderr.contains("final-pruned.vae.pt"), "{stderr}");
    let (own, _) = generate(&model, &["--vae", "none"], &dir.join("own.png"));
    assert!(
        max_abs_diff(&own, &extvae_reference()) > 0.05,
        "--vae none still used the sibling"
    );
}

#[test]
fn vae_safetensors_in_ldm_and_diffusers_names() {
    let dir = tmp_dir("vae-formats");
    // The same external VAE as .vae.safetensors (LDM names, no prefix).
    let tensors: HashMap<String, Tensor> = candle_core::pickle::read_all_with_key(
        fixture("tiny-sd15-extvae.vae.pt"),
        Some("state_dict"),
    )
    .unwrap()
    .into_iter()
    .collect();
    assert!(tensors.contains_key("decoder.up.0.block.0.conv1.weight"));
    let st = dir.join("ext.vae.safetensors");
    candle_core::safetensors::save(&tensors, &st).unwrap();
    let (got, _) = generate(
        &fixture("tiny-sd15.safetensors"),
        &["--vae", st.to_str().unwrap()],
        &dir.join("st.png"),
    );
    assert!(within_2_255(&got, &extvae_reference()));

    // The checkpoint's own VAE as a diffusers-named file and as a folder: same as no --vae.
    let (own, _) = generate(
        &fixture("tiny-sd15.safetensors"),
        &["--vae", "none"],
        &dir.join("own.png"),
    );
    let file = fixture("tiny-sd15/vae/diffusion_pytorch_model.safetensors");
    let (named, _) = generate(
        &fixture("tiny-sd15.safetensors"),
        &["--vae", file.to_str().unwrap()],
        &dir.join("named.png"),
    );
    assert_eq!(max_abs_diff(&own, &named), 0.0);
    let folder = fixture("tiny-sd15/vae");
    let (from_folder, _) = generate(
        &fixture("tiny-sd15.safetensors"),
        &["--vae", folder.to_str().unwrap()],
        &dir.join("folder.png"),
    );
    assert_eq!(max_abs_diff(&own, &from_folder), 0.0);
}

/// A training checkpoint: the tiny model's tensors plus an EMA copy of its UNet (perturbed),
/// and a second file that holds those EMA weights as its plain UNet.
fn ema_checkpoints(dir: &Path) -> (PathBuf, PathBuf) {
    let base =
        candle_core::safetensors::load(fixture("tiny-sd15.safetensors"), &Device::Cpu).unwrap();
    let mut training = base.clone();
    let mut swapped = base.clone();
    for (name, t) in &base {
        if let Some(rest) = name.strip_prefix("model.diffusion_model.") {
            let ema = (t.to_dtype(candle_core::DType::F32).unwrap() * 0.97)
                .unwrap()
                .to_dtype(t.dtype())
                .unwrap();
            training.insert(
                format!("model_ema.diffusion_model{}", rest.replace('.', "")),
                ema.clone(),
            );
            swapped.insert(name.clone(), ema);
        }
    }
    training.insert(
        "model_ema.decay".into(),
        Tensor::new(&[0.9999f32], &Device::Cpu).unwrap(),
    );
    let (a, b) = (
        dir.join("training.safetensors"),
        dir.join("ema-only.safetensors"),
    );
    candle_core::safetensors::save(&training, &a).unwrap();
    candle_core::safetensors::save(&swapped, &b).unwrap();
    (a, b)
}

#[test]
fn ema_weights_load_on_request() {
    let dir = tmp_dir("ema");
    let (training, ema_only) = ema_checkpoints(&dir);
    let (plain, _) = generate(&training, &["--vae", "none"], &dir.join("plain.png"));
    let (own, _) = generate(
        &fixture("tiny-sd15.safetensors"),
        &["--vae", "none"],
        &dir.join("own.png"),
    );
    assert_eq!(
        max_abs_diff(&plain, &own),
        0.0,
        "by default the non-EMA weights are used"
    );
    let (ema, stderr) = generate(&training, &["--vae", "none", "--ema"], &dir.join("ema.png"));
    assert!(stderr.contains("EMA weights"), "{stderr}");
    let (swapped, _) = generate(&ema_only, &["--vae", "none"], &dir.join("swapped.png"));
    assert_eq!(max_abs_diff(&ema, &swapped), 0.0);
    assert!(max_abs_diff(&ema, &plain) > 0.01);
    let o = cli(&[
        "generate",
        "--model",
        fixture("tiny-sd15.safetensors").to_str().unwrap(),
        "--prompt",
        "x",
        "--ema",
        "--out",
        dir.join("x.png").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no EMA weights"));
}

fn inspect(path: &Path) -> String {
    let o = cli(&["models", "inspect", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn inspect_tells_what_each_file_is() {
    let folder = inspect(&fixture("tiny-sd15"));
    assert!(
        folder.contains("diffusers folder")
            && folder.contains("SD 1.x")
            && folder.contains("4 channels"),
        "{folder}"
    );
    assert!(folder.contains("epsilon"));
    let single = inspect(&fixture("tiny-sd15.safetensors"));
    assert!(
        single.contains("safetensors") && single.contains("SD 1.x") && single.contains("f16"),
        "{single}"
    );
    assert!(single.contains("UNet, VAE, text encoder"), "{single}");
    assert!(single.contains("legacy hash:"));
    let ckpt = inspect(&fixture("tiny-sd15-inpainting.ckpt"));
    assert!(
        ckpt.contains("ckpt") && ckpt.contains("9 channels (inpainting)"),
        "{ckpt}"
    );
    let vae = inspect(&fixture("tiny-sd15-extvae.vae.pt"));
    assert!(vae.contains("kind:        VAE"), "{vae}");
    let sd2 = inspect(&fixture("extra/tiny-sd2.safetensors"));
    assert!(
        sd2.contains("SD 2.x") && sd2.contains("OpenCLIP") && sd2.contains("test forward"),
        "{sd2}"
    );
    // Each setting the weights cannot tell says what decided it.
    assert!(
        sd2.contains("attention heads per level") && sd2.contains("rule: 8 heads per level"),
        "{sd2}"
    );
    let dir = tmp_dir("inspect-ema");
    let (training, _) = ema_checkpoints(&dir);
    let ema = inspect(&training);
    assert!(ema.contains("EMA UNet"), "{ema}");

    let json = cli(&[
        "models",
        "inspect",
        "--json",
        fixture("tiny-sd15-inpainting.ckpt").to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["unet_in_channels"], 9);
}

#[test]
fn files_that_are_not_sd_checkpoints_say_what_they_are() {
    let dir = tmp_dir("not-sd");
    let t = || Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let write = |name: &str, keys: &[&str]| {
        let map: HashMap<String, Tensor> = keys.iter().map(|k| (k.to_string(), t())).collect();
        let p = dir.join(name);
        candle_core::safetensors::save(&map, &p).unwrap();
        p
    };
    let lora = write(
        "style.safetensors",
        &["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"],
    );
    let sdxl = write(
        "xl.safetensors",
        &[
            "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
            "model.diffusion_model.input_blocks.0.0.weight",
        ],
    );
    let out = dir.join("o.png");
    for (file, needle) in [
        (lora, "LoRA"),
        (sdxl, "SDXL"),
        (fixture("tiny-sd15-extvae.vae.pt"), "VAE"),
        (
            fixture("taesd/diffusion_pytorch_model.safetensors"),
            "TAESD",
        ),
    ] {
        let o = cli(&[
            "generate",
            "--model",
            file.to_str().unwrap(),
            "--prompt",
            "x",
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "{}: {stderr}", file.display());
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn sd2_prediction_is_left_to_the_test_forward() {
    use pentimento::engine::model::detect::{detect, PredictionChoice};
    use pentimento::engine::model::weights::WeightFile;
    use pentimento::engine::sampler::Prediction;
    let ckpt = WeightFile::open(&fixture("tiny-sd15-inpainting.ckpt")).unwrap();
    assert_eq!(
        ckpt.global_step(),
        Some(0),
        "read from the pickle beside state_dict"
    );
    let sd2 = WeightFile::open(&fixture("extra/tiny-sd2.safetensors")).unwrap();
    let mut layout = detect(&sd2).unwrap();
    assert_eq!(
        layout.prediction_choice(),
        PredictionChoice::NeedsTestForward
    );
    layout.marked_v_prediction = true;
    assert!(matches!(
        layout.prediction_choice(),
        PredictionChoice::Known(Prediction::V, _)
    ));
}

/// AUTOMATIC1111's test forward decides an SD 2.x single file's prediction type: a UNet whose
/// last convolution outputs −2 everywhere is far below its 0.5 input (v), one that outputs 0
/// is not (ε). The choice shows in the load line and the PNG's parameters; `--prediction`
/// overrides it.
#[test]
fn the_test_forward_tells_v_from_epsilon() {
    let dir = tmp_dir("test-forward");
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(fixture("extra/tiny-sd2.safetensors"), &Device::Cpu)
            .unwrap();
    let w = "model.diffusion_model.out.2.weight";
    let b = "model.diffusion_model.out.2.bias";
    tensors.insert(w.into(), tensors[w].zeros_like().unwrap());
    for (name, bias, want) in [("v-like", -2.0, "v"), ("eps-like", 0.0, "epsilon")] {
        let bias_t = (tensors[b].zeros_like().unwrap() + bias).unwrap();
        tensors.insert(b.into(), bias_t);
        let path = dir.join(format!("{name}.safetensors"));
        candle_core::safetensors::save(&tensors, &path).unwrap();
        let out = dir.join(format!("{name}.png"));
        let o = cli(&[
            "generate",
            "--model",
            path.to_str().unwrap(),
            "--prompt",
            "a",
            "--steps",
            "1",
            "--width",
            "64",
            "--height",
            "64",
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("{want}-prediction by test forward of the UNet")),
            "{name}: {stderr}"
        );
        let info = cli(&["info", out.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&info.stdout);
        assert!(
            text.contains(&format!("Prediction: {want} (test forward of the UNet)")),
            "{text}"
        );
        let o = cli(&[
            "generate",
            "--model",
            path.to_str().unwrap(),
            "--prompt",
            "a",
            "--steps",
            "1",
            "--width",
            "64",
            "--height",
            "64",
            "--prediction",
            "v",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(String::from_utf8_lossy(&o.stderr).contains("v-prediction by option"));
    }
}

/// A sidecar YAML that contradicts the weights, or is not one, fails with the key named and
/// nothing written.
#[test]
fn contradictory_or_hostile_yaml_is_a_clear_error() {
    let dir = tmp_dir("bad-yaml");
    let model = dir.join("m.safetensors");
    std::fs::copy(fixture("extra/tiny-sd2.safetensors"), &model).unwrap();
    let good = std::fs::read_to_string(fixture("extra/tiny-sd2-h16.yaml")).unwrap();
    let cases = [
        (
            good.replace("context_dim: 32", "context_dim: 1024"),
            "context_dim",
        ),
        (
            good.replace("num_head_channels: 16", "num_head_channels: 24"),
            "num_head_channels",
        ),
        (
            good.replace("parameterization: \"v\"", "parameterization: \"x0\""),
            "parameterization",
        ),
        (
            good.replace("FrozenOpenCLIPEmbedder", "FrozenCLIPEmbedder"),
            "cond_stage_config.target",
        ),
        ("model: [".repeat(10_000), "(file)"),
        ("a".repeat(2 << 20), "more than"),
        ("\u{0}\u{1}binary".to_string(), "(file)"),
    ];
    for (yaml, key) in cases {
        std::fs::write(dir.join("m.yaml"), &yaml).unwrap();
        let out = dir.join("out.png");
        let o = cli(&[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "a",
            "--steps",
            "1",
            "--width",
            "64",
            "--height",
            "64",
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{key}: {stderr}");
        assert!(stderr.contains(key), "{key}: {stderr}");
        assert!(!stderr.contains("panicked"));
        assert!(!out.exists());
    }
    // A device is not a config (and would never end).
    let o = cli(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "a",
        "--steps",
        "1",
        "--width",
        "64",
        "--height",
        "64",
        "--config",
        "/dev/zero",
        "--out",
        dir.join("out.png").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
}
