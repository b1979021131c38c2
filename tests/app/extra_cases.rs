//! Pentimento's own diffusers references (tests/fixtures/extra, made by make_extra.py): every
//! sampler with epsilon (SD 1.x) and v-prediction (an SD 2.x-shaped model), img2img with several
//! samplers, an SD 2.x single file in OpenCLIP layout.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{fixture, max_abs_diff, png_tensor};
use candle_core::{Device, Tensor};

#[derive(serde::Deserialize)]
struct Case {
    key: String,
    model: String,
    sampler: String,
    prompt: String,
    negative_prompt: String,
    seed: u64,
    steps: usize,
    cfg: f64,
    width: usize,
    height: usize,
    #[serde(default)]
    eta: Option<f64>,
    #[serde(default)]
    strength: Option<f64>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    mask: Option<String>,
    /// The LDM config YAML the single file is run with (diffusers' `original_config`).
    #[serde(default)]
    config: Option<String>,
    /// LoRA files (fixture paths) and their weights, as diffusers' `set_adapters` took them.
    #[serde(default)]
    loras: Vec<(String, f32)>,
    /// A folder of textual-inversion embeddings the prompts use.
    #[serde(default)]
    embeddings_dir: Option<String>,
    /// diffusers' `timestep_spacing` given to the scheduler in place of the config's.
    #[serde(default)]
    timestep_spacing: Option<String>,
    /// ControlNets (fixture paths) with their condition image, weight, step range and mode.
    #[serde(default)]
    controls: Vec<Control>,
}

#[derive(serde::Deserialize, Clone)]
struct Control {
    /// The preprocessor (`none` unless given): `inpaint` makes the condition from the job.
    #[serde(default)]
    module: Option<String>,
    model: String,
    image: String,
    weight: f64,
    start: f64,
    end: f64,
    mode: String,
}

fn cases() -> Vec<Case> {
    serde_json::from_str(&std::fs::read_to_string(fixture("extra/extra-cases.json")).unwrap())
        .unwrap()
}

fn reference() -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("extra/extra-reference.safetensors"), &Device::Cpu)
        .unwrap()
}

fn run(case: &Case, model: &Path, extra: &[&str]) -> Tensor {
    let dir = std::env::temp_dir().join(format!("pentimento-extra-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out: PathBuf = dir.join(format!(
        "{}-{}.png",
        case.key.replace(' ', "_"),
        model.file_name().unwrap().to_string_lossy()
    ));
    let mut args: Vec<String> = vec![
        "generate".into(),
        "--model".into(),
        model.display().to_string(),
        "--prompt".into(),
        case.prompt.clone(),
        "--negative-prompt".into(),
        case.negative_prompt.clone(),
        "--seed".into(),
        case.seed.to_string(),
        "--steps".into(),
        case.steps.to_string(),
        "--cfg".into(),
        case.cfg.to_string(),
        "--sampler".into(),
        case.sampler.clone(),
        "--width".into(),
        case.width.to_string(),
        "--height".into(),
        case.height.to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    if let Some(spacing) = &case.timestep_spacing {
        args.extend(["--timestep-spacing".into(), spacing.clone()]);
    }
    if let Some(dir) = &case.embeddings_dir {
        args.extend([
            "--embeddings-dir".into(),
            fixture(dir).display().to_string(),
        ]);
    }
    // A test that names its own LoRAs (`extra`) replaces the case's.
    if !extra.iter().any(|a| *a == "--lora" || *a == "--lora-dir") {
        for (path, weight) in &case.loras {
            args.extend([
                "--lora".into(),
                format!("{}:{weight}", fixture(path).display()),
            ]);
        }
    }
    // A config lying beside the model as NAME.yaml is found by itself; otherwise name it.
    if let Some(config) = &case.config {
        if !model.with_extension("yaml").exists() {
            args.extend(["--config".into(), fixture(config).display().to_string()]);
        }
    }
    if let Some(eta) = case.eta {
        args.extend(["--eta".into(), eta.to_string()]);
    }
    if !extra.contains(&"--control") {
        for c in &case.controls {
            args.extend([
                "--control".into(),
                match c.module.as_deref() {
                    Some("inpaint") => format!(
                        "inpaint:{}:{}:{}:{}:{}",
                        fixture(&c.model).display(),
                        c.weight,
                        c.start,
                        c.end,
                        c.mode
                    ),
                    _ => format!(
                        "none:{}:{}:{}:{}:{}:{}",
                        fixture(&c.model).display(),
                        fixture(&c.image).display(),
                        c.weight,
                        c.start,
                        c.end,
                        c.mode
                    ),
                },
            ]);
        }
    }
    if let Some(image) = &case.image {
        args.extend(["--init-image".into(), fixture(image).display().to_string()]);
    }
    if let Some(mask) = &case.mask {
        args.extend([
            "--mask".into(),
            fixture(mask).display().to_string(),
            "--mask-blur".into(),
            "0".into(),
        ]);
    }
    if let Some(strength) = case.strength {
        args.extend(["--strength".into(), strength.to_string()]);
    }
    let o = Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}: {}",
        case.key,
        String::from_utf8_lossy(&o.stderr)
    );
    png_tensor(&out)
}

/// Inpainting cases compare inside the mask with diffusers' raw decode; outside it the output
/// must be the input itself.
fn inpaint_diff(case: &Case, got: &Tensor, want: &Tensor) -> f32 {
    let (Some(mask), Some(image)) = (&case.mask, &case.image) else {
        return max_abs_diff(got, want);
    };
    let inside = png_tensor(&fixture(mask))
        .narrow(1, 0, 1)
        .unwrap()
        .ge(0.5)
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap();
    let outside = (1.0 - &inside).unwrap();
    let input = png_tensor(&fixture(image));
    let off_inside = max_abs_diff(
        &got.broadcast_mul(&inside).unwrap(),
        &want.broadcast_mul(&inside).unwrap(),
    );
    let off_outside = max_abs_diff(
        &got.broadcast_mul(&outside).unwrap(),
        &input.broadcast_mul(&outside).unwrap(),
    );
    assert_eq!(
        off_outside, 0.0,
        "{}: pixels outside the mask changed",
        case.key
    );
    off_inside
}

fn check(filter: impl Fn(&Case) -> bool, model_of: impl Fn(&Case) -> PathBuf) {
    check_with(filter, model_of, &[])
}

/// `check` with the prompt changed by `prompt` and extra CLI options.
fn check_prompt(filter: impl Fn(&Case) -> bool, prompt: impl Fn(&Case) -> String, extra: &[&str]) {
    let r = reference();
    let mut checked = 0;
    for case in cases().iter().filter(|c| filter(c)) {
        let changed = Case {
            prompt: prompt(case),
            key: case.key.clone(),
            model: case.model.clone(),
            sampler: case.sampler.clone(),
            negative_prompt: case.negative_prompt.clone(),
            loras: vec![],
            embeddings_dir: None,
            timestep_spacing: None,
            controls: vec![],
            image: None,
            mask: None,
            config: None,
            ..*case
        };
        let got = run(&changed, &fixture(&case.model), extra);
        let d = max_abs_diff(&got, &r[&case.key]);
        assert!(d <= 2.0 / 255.0 + 1e-6, "{}: max diff {d}", case.key);
        checked += 1;
    }
    assert!(checked > 0, "no case matched");
}

#[allow(dead_code)]
fn check_plain(filter: impl Fn(&Case) -> bool, model_of: impl Fn(&Case) -> PathBuf) {
    check_with(filter, model_of, &[])
}

/// `check` with extra CLI options.
fn check_with(filter: impl Fn(&Case) -> bool, model_of: impl Fn(&Case) -> PathBuf, extra: &[&str]) {
    let r = reference();
    let mut failures = vec![];
    let mut checked = 0;
    for case in cases().iter().filter(|c| filter(c)) {
        let got = run(case, &model_of(case), extra);
        let d = inpaint_diff(case, &got, &r[&case.key]);
        if d > 2.0 / 255.0 + 1e-6 {
            failures.push(format!(
                "{}: max diff {:.4} ({:.1}/255)",
                case.key,
                d,
                d * 255.0
            ));
        }
        checked += 1;
    }
    assert!(checked > 0, "no case matched");
    assert!(
        failures.is_empty(),
        "{} of {checked} cases off:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_sampler_txt2img_sd15() {
    check(|c| c.key.starts_with("sd15.txt2img"), |c| fixture(&c.model));
}

#[test]
fn every_sampler_txt2img_sd2_v_prediction_folder() {
    check(|c| c.key.starts_with("sd2.txt2img"), |c| fixture(&c.model));
}

/// The single file has no YAML and random weights, which AUTOMATIC1111's test forward cannot
/// classify (that is tested on a UNet built to answer, in checkpoint_variants.rs): the
/// prediction type is given, as a user of such a file would.
#[test]
fn sd2_single_file_in_openclip_layout() {
    check_with(
        |c| {
            c.key.starts_with("sd2.txt2img")
                && ["DDIM", "Euler a", "DPM++ 2M Karras", "UniPC"].contains(&c.sampler.as_str())
        },
        |_| fixture("extra/tiny-sd2.safetensors"),
        &["--prediction", "v"],
    );
}

#[test]
fn img2img_with_several_samplers() {
    check(
        |c| c.key.contains(".img2img.") && c.controls.is_empty(),
        |c| fixture(&c.model),
    );
}

#[test]
fn inpainting_unet_and_ordinary_models() {
    check(
        |c| c.key.contains(".inpaint.") && c.controls.is_empty(),
        |c| fixture(&c.model),
    );
}

/// The same weights under a sidecar YAML (16-wide heads, v) and through `--config` (4 heads,
/// ε): the YAML decides heads and prediction, as in diffusers' `from_single_file(...,
/// original_config=...)`.
#[test]
fn sd2_single_file_with_its_ldm_config_yaml() {
    let dir = std::env::temp_dir().join(format!("pentimento-yaml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sidecar = dir.join("tiny-sd2-h16.safetensors");
    std::fs::copy(fixture("extra/tiny-sd2.safetensors"), &sidecar).unwrap();
    std::fs::copy(
        fixture("extra/tiny-sd2-h16.yaml"),
        dir.join("tiny-sd2-h16.yaml"),
    )
    .unwrap();
    check(|c| c.key.starts_with("sd2yaml.h16."), |_| sidecar.clone());
    check(
        |c| c.key.starts_with("sd2yaml.eps4."),
        |_| fixture("extra/tiny-sd2.safetensors"),
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// LoRA files as diffusers' `load_lora_weights` + `set_adapters` apply them: kohya with LoCon
/// on 3×3 convolutions and text-encoder layers (alpha ≠ rank), PEFT layout, two at once with a
/// negative weight, SD 2.x.
#[test]
fn loras_as_diffusers_applies_them() {
    check(|c| c.key.contains(".lora."), |c| fixture(&c.model));
}

/// The SD 2.x LoRA through the single file, whose text encoder is in OpenCLIP layout (fused
/// q/k/v): its text layers are found under their Hugging Face names.
#[test]
fn an_sd2_lora_on_the_openclip_single_file() {
    check_with(
        |c| c.key.starts_with("sd2.lora."),
        |_| fixture("extra/tiny-sd2.safetensors"),
        &["--prediction", "v"],
    );
}

/// `ink_ldm_names` is `ink_kohya` with LDM layer names (`input_blocks_1_1_…`), named in the
/// prompt and found in a `--lora-dir`: the same picture as the reference.
#[test]
fn a_prompt_tag_finds_an_ldm_named_lora_in_a_lora_folder() {
    let dir = fixture("extra/loras");
    check_prompt(
        |c| c.key == "sd15.lora.ink_kohya:0.8",
        |c| format!("{} <lora:ink_ldm_names:0.8>", c.prompt),
        &["--lora-dir", dir.to_str().unwrap()],
    );
}

/// A PNG made with a LoRA records it (`Lora hashes` as AUTOMATIC1111 writes it, and in our
/// record); `--params-from` brings the same LoRA back by name from a LoRA folder, and says which
/// one is missing when it cannot.
#[test]
fn a_png_made_with_a_lora_runs_again_with_it() {
    let dir = std::env::temp_dir().join(format!("pentimento-lora-png-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = dir.join("first.png");
    let again = dir.join("again.png");
    let bin = env!("CARGO_BIN_EXE_pentimento");
    let lora = fixture("extra/loras/ink_kohya.safetensors");
    let o = Command::new(bin)
        .args(["generate", "--model"])
        .arg(fixture("tiny-sd15"))
        .args([
            "--prompt", "a heron", "--steps", "3", "--width", "64", "--height", "64",
        ])
        .args(["--seed", "3", "--lora"])
        .arg(format!("{}:0.7", lora.display()))
        .arg("--out")
        .arg(&first)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = Command::new(bin).arg("info").arg(&first).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("Lora hashes: \"ink_kohya: "), "{text}");
    let o = Command::new(bin)
        .args(["generate", "--model"])
        .arg(fixture("tiny-sd15"))
        .arg("--params-from")
        .arg(&first)
        .arg("--lora-dir")
        .arg(fixture("extra/loras"))
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        max_abs_diff(&png_tensor(&first), &png_tensor(&again)),
        0.0,
        "the same LoRA at the same weight"
    );
    let o = Command::new(bin)
        .env("PENTIMENTO_DATA_DIR", &dir)
        .args(["generate", "--model"])
        .arg(fixture("tiny-sd15"))
        .arg("--params-from")
        .arg(&first)
        .arg("--out")
        .arg(dir.join("missing.png"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no LoRA named \"ink_kohya\""), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Textual-inversion embeddings as diffusers' `load_textual_inversion` applies them: AUTOMATIC1111
/// `.pt` and `.safetensors`, diffusers' one-token file, several vectors, one in the negative
/// prompt, one used twice, SD 2.x.
#[test]
fn embeddings_as_diffusers_applies_them() {
    check(|c| c.key.contains(".embedding."), |c| fixture(&c.model));
}

/// An embedding whose vectors do not fit the text encoder is a clear error, not a wrong picture.
#[test]
fn an_embedding_of_another_width_is_refused() {
    let dir = std::env::temp_dir().join(format!("pentimento-emb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = candle_core::Tensor::zeros((2, 48), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("emb_params".to_string(), t)]),
        dir.join("widestyle.safetensors"),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(["generate", "--model"])
        .arg(fixture("tiny-sd15"))
        .args([
            "--prompt",
            "a widestyle heron",
            "--steps",
            "2",
            "--width",
            "64",
            "--height",
            "64",
        ])
        .arg("--embeddings-dir")
        .arg(&dir)
        .arg("--out")
        .arg(dir.join("out.png"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("48 wide") && err.contains("32"), "{err}");
    assert!(!dir.join("out.png").exists());
    let _ = std::fs::remove_dir_all(dir);
}

/// A PNG made with embeddings records them (`TI hashes`); `--params-from` without them is an
/// error naming them (not a picture of the plain words), with them the same picture.
#[test]
fn a_png_made_with_embeddings_names_them() {
    let dir = std::env::temp_dir().join(format!("pentimento-emb-png-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = dir.join("first.png");
    let bin = env!("CARGO_BIN_EXE_pentimento");
    let embeddings = fixture("extra/embeddings");
    let generate = |extra: &[&std::ffi::OsStr], out: &Path| {
        Command::new(bin)
            .env("PENTIMENTO_DATA_DIR", &dir)
            .args(["generate", "--model"])
            .arg(fixture("tiny-sd15"))
            .args(extra)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let o = generate(
        &[
            "--prompt".as_ref(),
            "a heron in inkstyle".as_ref(),
            "--negative-prompt".as_ref(),
            "murkyglow".as_ref(),
            "--steps".as_ref(),
            "3".as_ref(),
            "--width".as_ref(),
            "64".as_ref(),
            "--height".as_ref(),
            "64".as_ref(),
            "--embeddings-dir".as_ref(),
            embeddings.as_os_str(),
        ],
        &first,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = Command::new(bin).arg("info").arg(&first).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        text.contains("TI hashes: \"")
            && text.contains("inkstyle: ")
            && text.contains("murkyglow: "),
        "{text}"
    );
    let o = generate(
        &["--params-from".as_ref(), first.as_os_str()],
        &dir.join("no.png"),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("inkstyle") && err.contains("murkyglow"),
        "{err}"
    );
    let again = dir.join("again.png");
    let o = generate(
        &[
            "--params-from".as_ref(),
            first.as_os_str(),
            "--embeddings-dir".as_ref(),
            embeddings.as_os_str(),
        ],
        &again,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(max_abs_diff(&png_tensor(&first), &png_tensor(&again)), 0.0);
    let _ = std::fs::remove_dir_all(dir);
}

/// LCM at 1, 2 and 4 steps (fresh noise each consistency step, in diffusers' order), low CFG,
/// ε and v models, and with a LoRA.
#[test]
fn lcm_in_few_steps_as_diffusers_samples() {
    check(|c| c.key.contains(".fewstep.LCM."), |c| fixture(&c.model));
}

/// SD-Turbo's way of sampling: "trailing" timesteps, 1–4 steps, no guidance, on the v model (as
/// SD-Turbo is an SD 2.1 model) and the ε model, with `--timestep-spacing trailing`.
#[test]
fn trailing_spacing_in_few_steps_as_diffusers_samples() {
    check(
        |c| c.key.contains(".fewstep.trailing."),
        |c| fixture(&c.model),
    );
}

/// TCD at 2–8 steps with γ (`--eta`) 0, 0.3 and 0.5 (the intermediate timestep and the fresh
/// noise in diffusers' order), on the ε and v models and with a LoRA.
#[test]
fn tcd_in_few_steps_as_diffusers_samples() {
    check(|c| c.key.contains(".fewstep.TCD."), |c| fixture(&c.model));
}

/// ControlNets as diffusers' ControlNet pipelines apply them: a diffusers folder, an original
/// single file (`control_model.*`) and an unprefixed `.pth` pickle; one and two at once, weights,
/// step ranges, guess mode ("ControlNet is more important"), CFG 1, img2img, inpainting with an
/// ordinary and a 9-channel UNet, SD 2.x (v).
#[test]
fn controlnets_as_diffusers_applies_them() {
    check(|c| !c.controls.is_empty(), |c| fixture(&c.model));
}

/// The depth preprocessor: Depth Anything V2 (transformers' layout, a tiny random model) on a
/// square picture (position embeddings as trained) and on wide and tall ones (interpolated,
/// bicubic): the map is the network's depth stretched to 0–255 as AUTOMATIC1111 does, within
/// one level of transformers' own forward.
#[test]
fn depth_maps_as_transformers_computes_them() {
    let dir = std::env::temp_dir().join(format!("pentimento-depth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let r = candle_core::safetensors::load(
        fixture("extra/depth/depth-reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let model = fixture("extra/depth/tiny-depth-anything");
    for name in ["square", "wide", "tall"] {
        let out = dir.join(format!("{name}.png"));
        let o = Command::new(env!("CARGO_BIN_EXE_pentimento"))
            .args(["preprocess", "depth"])
            .arg(fixture(&format!("extra/depth/depth-{name}.png")))
            .arg("--out")
            .arg(&out)
            .arg("--depth-model")
            .arg(&model)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let depth: Vec<Vec<f32>> = r[&format!("depth.{name}")]
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        let (lo, hi) = depth
            .iter()
            .flatten()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let got = image::open(&out).unwrap().to_luma8();
        assert_eq!(
            (got.height() as usize, got.width() as usize),
            (depth.len(), depth[0].len())
        );
        let mut worst = 0i32;
        for (y, row) in depth.iter().enumerate() {
            for (x, &d) in row.iter().enumerate() {
                let want = ((d - lo) / (hi - lo) * 255.0) as i32;
                let g = got.get_pixel(x as u32, y as u32)[0] as i32;
                worst = worst.max((g - want).abs());
            }
        }
        assert!(worst <= 1, "{name}: off by {worst} levels");
    }
    // A depth ControlNet run from a picture, through the depth preprocessor.
    let out = dir.join("controlled.png");
    let o = Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args([
            "generate", "--prompt", "a room", "--steps", "2", "--width", "64", "--height", "64",
        ])
        .arg("--model")
        .arg(fixture("tiny-sd15"))
        .arg("--control")
        .arg(format!(
            "depth:{}:{}",
            fixture("extra/controlnet/tiny-cn-a").display(),
            fixture("extra/depth/depth-square.png").display()
        ))
        .arg("--depth-model")
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .arg("info")
        .arg(&out)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("Module: depth_anything_v2"));
    // Without the network: what to download, exit 2, nothing written.
    let missing = dir.join("missing.png");
    let o = Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(["preprocess", "depth"])
        .arg(fixture("extra/depth/depth-square.png"))
        .arg("--out")
        .arg(&missing)
        .env("HF_HUB_CACHE", dir.join("empty-hub"))
        .env("XDG_DATA_HOME", dir.join("empty-data"))
        .env("PENTIMENTO_DATA_DIR", dir.join("empty-data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("models pull depth-anything/Depth-Anything-V2-Small-hf"),
        "{stderr}"
    );
    assert!(!missing.exists());
    std::fs::remove_dir_all(&dir).ok();
}
