//! The CLI as other tools call it: end-to-end cases against diffusers, and its errors.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{fixture, png_tensor, reference};
use candle_core::Tensor;

fn pentimento(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(args)
        .output()
        .expect("run pentimento")
}

fn tmp_png(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pentimento-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[derive(serde::Deserialize)]
struct Case {
    key: String,
    kind: String,
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
    strength: Option<f64>,
    #[serde(default)]
    image: Option<String>,
}

fn cases(kind: &str) -> Vec<Case> {
    let all: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny-sd15-cases.json")).unwrap())
            .unwrap();
    all.into_iter().filter(|c| c.kind == kind).collect()
}

fn run_case(case: &Case, model: &Path) -> Tensor {
    let out = tmp_png(&format!(
        "{}-{}.png",
        case.key,
        model.file_name().unwrap().to_string_lossy()
    ));
    let (seed, steps, cfg, w, h) = (
        case.seed.to_string(),
        case.steps.to_string(),
        case.cfg.to_string(),
        case.width.to_string(),
        case.height.to_string(),
    );
    let mut args = vec![
        "generate".to_string(),
        "--model".into(),
        model.to_str().unwrap().into(),
        "--prompt".into(),
        case.prompt.clone(),
        "--negative-prompt".into(),
        case.negative_prompt.clone(),
        "--seed".into(),
        seed,
        "--steps".into(),
        steps,
        "--cfg".into(),
        cfg,
        "--sampler".into(),
        case.sampler.clone(),
        "--width".into(),
        w,
        "--height".into(),
        h,
        "--out".into(),
        out.to_str().unwrap().into(),
    ];
    if let Some(image) = &case.image {
        args.extend([
            "--init-image".into(),
            fixture(image).to_str().unwrap().into(),
        ]);
    }
    if let Some(strength) = case.strength {
        args.extend(["--strength".into(), strength.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = pentimento(&args);
    assert!(
        o.status.success(),
        "{}: {}",
        case.key,
        String::from_utf8_lossy(&o.stderr)
    );
    png_tensor(&out)
}

fn check_cases(kind: &str, model_of: impl Fn(&Case) -> std::path::PathBuf) {
    let r = reference();
    let cases = cases(kind);
    assert!(!cases.is_empty());
    for case in &cases {
        let got = run_case(case, &model_of(case));
        let d = crate::common::max_abs_diff(&got, &r[&case.key]);
        assert!(
            d <= 2.0 / 255.0 + 1e-6,
            "{} ({}): max diff {:.4} > 2/255",
            case.key,
            case.sampler,
            d
        );
    }
}

#[test]
fn txt2img_cases_from_single_file() {
    check_cases("txt2img", |c| fixture(&c.model));
}

#[test]
fn img2img_cases() {
    check_cases("img2img", |c| fixture(&c.model));
}

#[test]
fn txt2img_cases_from_diffusers_folder() {
    check_cases("txt2img", |c| {
        assert_eq!(c.model, "tiny-sd15.safetensors");
        fixture("tiny-sd15")
    });
}

fn assert_usage_error(args: &[&str], needle: &str) {
    let o = pentimento(args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr:?}");
    assert!(
        errors[0].contains(needle),
        "{args:?}: expected {needle:?} in {stderr:?}"
    );
}

fn gen_args<'a>(model: &'a str, extra: &[&'a str], out: &'a str) -> Vec<&'a str> {
    let mut v = vec![
        "generate", "--model", model, "--prompt", "x", "--steps", "2", "--height", "64", "--out",
        out,
    ];
    v.extend_from_slice(extra);
    if !extra.contains(&"--width") {
        v.extend_from_slice(&["--width", "64"]);
    }
    v
}

#[test]
fn errors_are_one_line_with_status_2() {
    let out = tmp_png("err.png");
    let out = out.to_str().unwrap();
    let model = fixture("tiny-sd15.safetensors");
    let model = model.to_str().unwrap();

    assert_usage_error(
        &gen_args("/no/such/model.safetensors", &[], out),
        "no such file",
    );
    assert_usage_error(
        &gen_args(model, &["--sampler", "Euler b"], out),
        "unknown sampler",
    );
    assert_usage_error(&gen_args(model, &["--width", "100"], out), "multiple of 8");

    // A truncated checkpoint.
    let bytes = std::fs::read(model).unwrap();
    let truncated = tmp_png("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_usage_error(
        &gen_args(truncated.to_str().unwrap(), &[], out),
        "truncated.safetensors",
    );

    // Garbage with a checkpoint's name.
    let garbage = tmp_png("garbage.ckpt");
    std::fs::write(&garbage, b"this is not a checkpoint at all").unwrap();
    assert_usage_error(
        &gen_args(garbage.to_str().unwrap(), &[], out),
        "garbage.ckpt",
    );

    // A safetensors file that holds something else (the TAESD weights).
    let taesd = fixture("taesd/diffusion_pytorch_model.safetensors");
    assert_usage_error(
        &gen_args(taesd.to_str().unwrap(), &[], out),
        "not a full model",
    );

    // A folder that is not a model.
    let dir = fixture("tiny-sd15/tokenizer");
    assert_usage_error(
        &gen_args(dir.to_str().unwrap(), &[], out),
        "not a diffusers",
    );

    // The inpainting model cannot run text-to-image alone.
    let inpaint = fixture("tiny-sd15-inpainting.ckpt");
    assert_usage_error(&gen_args(inpaint.to_str().unwrap(), &[], out), "inpainting");

    assert!(!Path::new(out).exists(), "no image is written on error");
}

/// What a new user got wrong, in a CLI that used to run anyway (or fail late): each refused
/// before a model loads, in one line, and `-1` as AUTOMATIC1111 users type it.
#[test]
fn settings_that_would_do_nothing_are_refused_and_minus_one_is_a_random_seed() {
    let out = tmp_png("refused.png");
    let out = out.to_str().unwrap();
    let model = fixture("tiny-sd15.safetensors");
    let model = model.to_str().unwrap();
    let image = fixture("tiny-sd15-inpaint.2-image.png");
    let mask = fixture("tiny-sd15-inpaint.2-mask.png");
    let (image, mask) = (image.to_str().unwrap(), mask.to_str().unwrap());
    let inpaint = ["--init-image", image, "--mask", mask];

    assert_usage_error(
        &gen_args(model, &["--variation-strength", "0.5"], out),
        "--variation-seed",
    );
    let mut padding = inpaint.to_vec();
    padding.extend(["--padding", "8"]);
    assert_usage_error(&gen_args(model, &padding, out), "--inpaint-area masked");
    // A sampler that cannot step back is refused before the model loads (no "loaded" line).
    let mut heun = inpaint.to_vec();
    heun.extend(["--sampler", "Heun", "--repaint-resample", "2"]);
    let o = pentimento(&gen_args(model, &heun, out));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot step back"), "{stderr}");
    assert!(
        !stderr.contains("loaded"),
        "refused only after loading: {stderr}"
    );
    assert_usage_error(&gen_args(model, &["--seed", "-2"], out), "-1 for a random");
    assert_usage_error(&["bench", "--arch", "sd3"], "possible values");
    assert_usage_error(&["frobnicate"], "or command");
    assert_usage_error(
        &["models", "list", "--folder", "/no/such/folder"],
        "not a folder",
    );
    for (x, y, needle) in [
        ("steps=2,3", "steps=4,5", "both axes"),
        ("prompt-sr=windmill,castle", "seed=1,2", "windmill"),
    ] {
        assert_usage_error(
            &[
                "grid", "--model", model, "--prompt", "x", "--steps", "2", "--width", "64",
                "--height", "64", "--x", x, "--y", y, "--out", out,
            ],
            needle,
        );
    }
    assert!(!Path::new(out).exists(), "no image is written on error");

    // -1: a random seed, named in the output.
    let o = pentimento(&gen_args(model, &["--seed", "-1"], out));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("(seed "), "{stderr}");
    assert!(!stderr.contains("(seed 18446744073709551615)"), "{stderr}");
}

/// A grid is written in the format its name says, as `generate` writes.
#[test]
fn a_grid_named_jpg_is_a_jpeg() {
    let out = tmp_png("grid.jpg");
    let model = fixture("tiny-sd15.safetensors");
    let o = pentimento(&[
        "grid",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "x",
        "--steps",
        "2",
        "--width",
        "64",
        "--height",
        "64",
        "--seeds",
        "1-2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "JPEG magic");
}

#[test]
fn samplers_lists_the_names() {
    let o = pentimento(&["samplers"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.lines().any(|l| l == "DDIM"));
    assert!(text.lines().any(|l| l == "Euler"));
}

/// `--version` says the release, the commit the binary was built from and its back ends.
#[test]
fn version_names_the_commit_and_features() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("pentimento 0."), "{text}");
    assert!(text.contains("(commit "), "{text}");
    assert!(text.contains("features: cpu"), "{text}");
}
