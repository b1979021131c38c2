//! Hostile ControlNet inputs through `generate --control`, each built here: files cut short,
//! tensors of the wrong rank or count, networks for another model, configs no ControlNet has,
//! `--control` strings that name nothing sensible. Each is refused with exit 2 and one line,
//! writing nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::fixture;

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pentimento-hostile-cn-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pentimento(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(args)
        .env("PENTIMENTO_CACHE_DIR", temp("cache"))
        .output()
        .expect("run pentimento")
}

fn generate(model: &Path, out: &Path, control: &str) -> Vec<String> {
    [
        "generate", "--prompt", "x", "--steps", "2", "--width", "64", "--height", "64",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--model".into(),
        model.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--control".into(),
        control.into(),
    ])
    .collect()
}

/// Exit 2, one line containing `needle`, no panic, no output file.
fn refused(args: &[String], out: &Path, needle: &str) {
    let o = pentimento(args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr:?}");
    assert!(
        lines[0].contains(needle),
        "expected {needle:?} in {stderr:?}"
    );
    assert!(!out.exists(), "{args:?} wrote {}", out.display());
}

fn hint() -> String {
    fixture("extra/controlnet/hint-64.png")
        .display()
        .to_string()
}

/// `tiny-cn-b.safetensors` with `edit` applied to its (name, shape, bytes) list.
fn altered(
    dir: &Path,
    name: &str,
    edit: impl Fn(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) -> PathBuf {
    use safetensors::tensor::TensorView;
    let bytes = std::fs::read(fixture("extra/controlnet/tiny-cn-b.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut owned);
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

#[test]
fn damaged_and_foreign_controlnet_files_are_refused() {
    let dir = temp("files");
    let out = dir.join("out.png");
    let sd15 = fixture("tiny-sd15");
    let control = |p: &Path| format!("none:{}:{}", p.display(), hint());

    // Cut short at several places.
    let whole = std::fs::read(fixture("extra/controlnet/tiny-cn-b.safetensors")).unwrap();
    for cut in [0, 7, 100, whole.len() / 2, whole.len() - 1] {
        let p = dir.join(format!("cut{cut}.safetensors"));
        std::fs::write(&p, &whole[..cut]).unwrap();
        let o = pentimento(&generate(&sd15, &out, &control(&p)));
        assert_eq!(o.status.code(), Some(2), "cut at {cut}: {o:?}");
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
        assert!(!out.exists());
    }
    let pth = std::fs::read(fixture("extra/controlnet/tiny-cn-sd2.pth")).unwrap();
    let p = dir.join("cut.pth");
    std::fs::write(&p, &pth[..pth.len() / 3]).unwrap();
    let o = pentimento(&generate(&sd15, &out, &control(&p)));
    assert_eq!(o.status.code(), Some(2), "{o:?}");

    // The hint encoder's first convolution flattened: refused by name.
    let flat = altered(&dir, "flat.safetensors", |t| {
        for (n, _, shape, _) in t.iter_mut() {
            if n == "control_model.input_hint_block.0.weight" {
                *shape = vec![shape.iter().product()];
            }
        }
    });
    refused(
        &generate(&sd15, &out, &control(&flat)),
        &out,
        "input_hint_block.0.weight",
    );

    // An odd number of hint convolutions (conv_out removed).
    let odd = altered(&dir, "odd.safetensors", |t| {
        t.retain(|(n, ..)| !n.starts_with("control_model.input_hint_block.14."))
    });
    refused(&generate(&sd15, &out, &control(&odd)), &out, "convolutions");

    // A zero convolution missing.
    let missing = altered(&dir, "missing.safetensors", |t| {
        t.retain(|(n, ..)| !n.starts_with("control_model.zero_convs.5."))
    });
    refused(
        &generate(&sd15, &out, &control(&missing)),
        &out,
        "zero_convs.5",
    );

    // NaN weights.
    let nan = altered(&dir, "nan.safetensors", |t| {
        for (n, _, _, bytes) in t.iter_mut() {
            if n == "control_model.middle_block_out.0.weight" {
                bytes[..2].copy_from_slice(&[0x00, 0x7e]); // f16 NaN
            }
        }
    });
    refused(&generate(&sd15, &out, &control(&nan)), &out, "NaN");

    // A Stable Diffusion checkpoint, and a LoRA, given as the ControlNet.
    refused(
        &generate(&sd15, &out, &control(&fixture("tiny-sd15.safetensors"))),
        &out,
        "not a ControlNet",
    );
    refused(
        &generate(
            &sd15,
            &out,
            &control(&fixture("extra/loras/ink_kohya.safetensors")),
        ),
        &out,
        "not a ControlNet",
    );

    // A diffusers folder's weights without their config.
    refused(
        &generate(
            &sd15,
            &out,
            &control(&fixture(
                "extra/controlnet/tiny-cn-a/diffusion_pytorch_model.safetensors",
            )),
        ),
        &out,
        "give its folder",
    );

    // A ControlNet for SD 2.x on an SD 1.x model, and the other way round.
    refused(
        &generate(
            &sd15,
            &out,
            &control(&fixture("extra/controlnet/tiny-cn-sd2.pth")),
        ),
        &out,
        "ControlNet",
    );
    refused(
        &generate(
            &fixture("extra/tiny-sd2"),
            &out,
            &control(&fixture("extra/controlnet/tiny-cn-a")),
        ),
        &out,
        "ControlNet",
    );
}

#[test]
fn controlnet_configs_no_controlnet_has_are_refused() {
    let dir = temp("configs");
    let out = dir.join("out.png");
    let source = fixture("extra/controlnet/tiny-cn-a");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("config.json")).unwrap())
            .unwrap();
    let nested = serde_json::from_str::<serde_json::Value>(&format!(
        "{}1{}",
        "[".repeat(100),
        "]".repeat(100)
    ))
    .unwrap();
    let channels = "block_out_channels";
    // (folder, key, value, whether it runs)
    let cases: Vec<(&str, &str, serde_json::Value, bool)> = vec![
        (
            "huge",
            channels,
            serde_json::json!([1u64 << 40, 32, 64, 64]),
            false,
        ),
        ("zero", channels, serde_json::json!([0, 32, 64, 64]), false),
        (
            "negative",
            channels,
            serde_json::json!([-32, 32, 64, 64]),
            false,
        ),
        ("string", channels, serde_json::json!("wide"), false),
        (
            "empty-embedding",
            "conditioning_embedding_out_channels",
            serde_json::json!([]),
            false,
        ),
        (
            "bad-order",
            "controlnet_conditioning_channel_order",
            serde_json::json!("../bgr"),
            false,
        ),
        ("nested", "down_block_types", nested, false),
        (
            "one-channel",
            "conditioning_channels",
            serde_json::json!(1),
            false,
        ),
        ("layers", "layers_per_block", serde_json::json!(1), false),
        (
            "bgr",
            "controlnet_conditioning_channel_order",
            serde_json::json!("bgr"),
            true,
        ),
        // Shuffle-style ControlNets: residuals averaged over the image.
        (
            "pooled",
            "global_pool_conditions",
            serde_json::json!(true),
            true,
        ),
    ];
    for (name, key, value, ok) in cases {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(
            source.join("diffusion_pytorch_model.safetensors"),
            folder.join("diffusion_pytorch_model.safetensors"),
        )
        .unwrap();
        let mut c = config.clone();
        c[key] = value;
        std::fs::write(folder.join("config.json"), c.to_string()).unwrap();
        let o = pentimento(&generate(
            &fixture("tiny-sd15"),
            &out,
            &format!("none:{}:{}", folder.display(), hint()),
        ));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(if ok { 0 } else { 2 }),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert_eq!(out.exists(), ok, "{name}: an output only when it runs");
        let _ = std::fs::remove_file(&out);
    }
}

#[test]
fn control_options_that_name_nothing_sensible_are_refused() {
    let dir = temp("options");
    let out = dir.join("out.png");
    let cn = fixture("extra/controlnet/tiny-cn-a").display().to_string();
    let h = hint();
    let text = dir.join("notes.png");
    std::fs::write(&text, "not a picture").unwrap();
    let sd15 = fixture("tiny-sd15");
    for (control, needle) in [
        (format!("none:{cn}"), "TYPE:MODEL:IMAGE"),
        (format!("depth=x:{cn}:{h}"), "unknown preprocessor"),
        (format!("pose:{cn}:{h}"), "unknown preprocessor"),
        (format!("canny=300,1:{cn}:{h}"), "threshold"),
        (format!("none:{cn}:{h}:1:0.5"), "WEIGHT:START:END"),
        (format!("none:{cn}:{h}:NaN"), "weight"),
        (format!("none:{cn}:{h}:-1"), "weight"),
        (format!("none:{cn}:{h}:1e9"), "weight"),
        (format!("none:{cn}:{h}:1:0.8:0.2"), "start"),
        (format!("none:{cn}:{h}:1:0:inf"), "start"),
        (
            format!("none:{}:{h}", dir.join("nothing").display()),
            "no ControlNet",
        ),
        (
            format!("none:{cn}:{}", dir.join("nothing.png").display()),
            "no such file",
        ),
        (format!("none:{cn}:{}", text.display()), "control image"),
        (format!("none:{cn}:{}", dir.display()), "control image"),
        (format!("none::{h}"), "TYPE:MODEL:IMAGE"),
        (format!("inpaint:{cn}"), "--init-image and --mask"),
    ] {
        refused(&generate(&sd15, &out, &control), &out, needle);
    }
    // The inpaint condition on an img2img job (an image, no mask).
    let mut args = generate(&sd15, &out, &format!("inpaint:{cn}:0.5"));
    args.extend(["--init-image".into(), h.clone()]);
    refused(&args, &out, "inpainting jobs");
    // Five at once.
    let mut args = generate(&sd15, &out, &format!("none:{cn}:{h}"));
    for _ in 0..4 {
        args.extend(["--control".into(), format!("none:{cn}:{h}")]);
    }
    refused(&args, &out, "at most 4");
}
