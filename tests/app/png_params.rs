//! PNG parameters: written, read back, rerun; other tools' files; hostile metadata; batches
//! and variation seeds.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::fixture;

/// Text chunks of a test PNG: (keyword, text, compressed).
type Chunks<'a> = Vec<(&'a str, &'a str, bool)>;

fn cli_env(args: &[&str], cache: &Path) -> Output {
    crate::common::run_cli(args, cache)
}

fn dir(name: &str) -> PathBuf {
    crate::common::temp_dir("png", name)
}

fn pixels(p: &Path) -> Vec<u8> {
    image::open(p).unwrap().to_rgb8().into_raw()
}

fn generate(d: &Path, out: &str, extra: &[&str]) -> PathBuf {
    let model = fixture("tiny-sd15.safetensors");
    let out = d.join(out);
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--steps",
        "4",
        "--width",
        "64",
        "--height",
        "64",
        "--sampler",
        "Euler a",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = cli_env(&args, &d.join("cache"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn info_json(d: &Path, file: &Path) -> serde_json::Value {
    let o = cli_env(
        &["info", "--json", file.to_str().unwrap()],
        &d.join("cache"),
    );
    assert!(
        o.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn written_parameters_read_back_and_rerun() {
    let d = dir("rerun");
    for prompt in ["a cat, (cute:1.2)", "猫の写真, ünïcödé"] {
        let out = generate(
            &d,
            "a.png",
            &[
                "--prompt",
                prompt,
                "--negative-prompt",
                "blurry, \"bad\"",
                "--seed",
                "77",
                "--cfg",
                "6",
            ],
        );
        let v = info_json(&d, &out);
        assert_eq!(v["tool"], "Pentimento");
        assert_eq!(v["parameters"]["prompt"], prompt);
        assert_eq!(v["parameters"]["negative_prompt"], "blurry, \"bad\"");
        assert_eq!(v["parameters"]["Seed"], "77");
        assert_eq!(v["parameters"]["Sampler"], "Euler a");
        assert_eq!(v["parameters"]["CFG scale"], "6");
        assert_eq!(v["parameters"]["Size"], "64x64");
        assert_eq!(v["parameters"]["Model"], "tiny-sd15");
        assert_eq!(v["record"]["params"]["prompt"], prompt);
        // The model hash is AUTOMATIC1111's: the first 10 hex digits of the file's SHA-256.
        let hash = v["parameters"]["Model hash"].as_str().unwrap().to_string();
        let cache = std::fs::read_to_string(d.join("cache/model-hashes.json")).unwrap();
        assert!(cache.contains(&hash), "the hash is cached");

        let again = d.join("again.png");
        let model = fixture("tiny-sd15.safetensors");
        let o = cli_env(
            &[
                "generate",
                "--model",
                model.to_str().unwrap(),
                "--params-from",
                out.to_str().unwrap(),
                "--out",
                again.to_str().unwrap(),
            ],
            &d.join("cache"),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(pixels(&again), pixels(&out));
        let other = d.join("other.png");
        let o = cli_env(
            &[
                "generate",
                "--model",
                model.to_str().unwrap(),
                "--params-from",
                out.to_str().unwrap(),
                "--seed",
                "78",
                "--out",
                other.to_str().unwrap(),
            ],
            &d.join("cache"),
        );
        assert!(o.status.success());
        assert_ne!(pixels(&other), pixels(&out));
        assert_eq!(info_json(&d, &other)["parameters"]["Seed"], "78");
    }
}

#[test]
fn batches_and_variation_seeds_reproduce_and_differ() {
    let d = dir("seeds");
    let batch = generate(
        &d,
        "batch.png",
        &["--prompt", "x", "--seed", "10", "--batch-count", "2"],
    );
    let (first, second) = (d.join("batch-1.png"), d.join("batch-2.png"));
    assert!(!batch.exists() && first.exists() && second.exists());
    let single = generate(&d, "single.png", &["--prompt", "x", "--seed", "11"]);
    assert_eq!(
        pixels(&second),
        pixels(&single),
        "image 2 of a batch is seed + 1"
    );
    assert_ne!(pixels(&first), pixels(&second));
    assert_eq!(info_json(&d, &second)["parameters"]["Seed"], "11");

    let base = generate(&d, "base.png", &["--prompt", "x", "--seed", "10"]);
    assert_eq!(pixels(&base), pixels(&first));

    // Two jobs of two images: seeds 10, 11 | 12, 13, each what its seed gives alone (batched
    // matrix products may round the last bit differently).
    generate(
        &d,
        "sized.png",
        &[
            "--prompt",
            "x",
            "--seed",
            "10",
            "--batch-count",
            "2",
            "--batch-size",
            "2",
        ],
    );
    for (i, seed) in [(1, 10), (2, 11), (3, 12), (4, 13)] {
        let image = d.join(format!("sized-{i}.png"));
        assert_eq!(
            info_json(&d, &image)["parameters"]["Seed"],
            seed.to_string()
        );
        let alone = generate(
            &d,
            "alone.png",
            &["--prompt", "x", "--seed", &seed.to_string()],
        );
        let worst = pixels(&image)
            .iter()
            .zip(pixels(&alone))
            .map(|(a, b)| a.abs_diff(b))
            .max();
        assert!(
            worst <= Some(1),
            "seed {seed} in a batch differs by {worst:?}"
        );
    }
    let zero = generate(
        &d,
        "zero.png",
        &[
            "--prompt",
            "x",
            "--seed",
            "10",
            "--variation-seed",
            "99",
            "--variation-strength",
            "0",
        ],
    );
    assert_eq!(pixels(&zero), pixels(&base));
    let v1 = generate(
        &d,
        "v1.png",
        &[
            "--prompt",
            "x",
            "--seed",
            "10",
            "--variation-seed",
            "99",
            "--variation-strength",
            "0.3",
        ],
    );
    let v1b = generate(
        &d,
        "v1b.png",
        &[
            "--prompt",
            "x",
            "--seed",
            "10",
            "--variation-seed",
            "99",
            "--variation-strength",
            "0.3",
        ],
    );
    let v2 = generate(
        &d,
        "v2.png",
        &[
            "--prompt",
            "x",
            "--seed",
            "10",
            "--variation-seed",
            "98",
            "--variation-strength",
            "0.3",
        ],
    );
    assert_eq!(pixels(&v1), pixels(&v1b));
    assert_ne!(pixels(&v1), pixels(&base));
    assert_ne!(pixels(&v1), pixels(&v2));
    let v = info_json(&d, &v1);
    assert_eq!(v["parameters"]["Variation seed"], "99");
    assert_eq!(v["parameters"]["Variation seed strength"], "0.3");
}

/// A tiny PNG with the given text chunks (iTXt when `utf8`).
fn png_with(path: &Path, chunks: &[(&str, &str, bool)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 2, 2);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    for (k, t, utf8) in chunks {
        if *utf8 {
            enc.add_itxt_chunk(k.to_string(), t.to_string()).unwrap();
        } else {
            enc.add_text_chunk(k.to_string(), t.to_string()).unwrap();
        }
    }
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&[10u8; 12]).unwrap();
    w.finish().unwrap();
}

#[test]
fn other_tools_files_parse() {
    let d = dir("tools");
    let a1111 = "a castle on a hill\nNegative prompt: lowres\nSteps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 2468, Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1";
    let forge = "portrait\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, Model: x, Version: f2.0.1v1.10.1-previous";
    let krita = "a garden, 庭\nNegative prompt: \nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 1024x1024, Model: realistic";
    let invoke = r#"{"positive_prompt": "a fox", "negative_prompt": "", "seed": 9, "steps": 30, "cfg_scale": 7.5, "scheduler": "dpmpp_2m", "width": 512, "height": 512, "model": {"name": "sd-1.5"}}"#;
    let comfy = r#"{"3": {"class_type": "KSampler", "inputs": {"seed": 4, "steps": 25, "cfg": 8, "sampler_name": "euler", "scheduler": "normal", "denoise": 1, "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}}, "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 640, "height": 512}}, "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a boat"}}, "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blur"}}}"#;
    let cases: Vec<(&str, Chunks, &str, &str, &str)> = vec![
        (
            "a1111.png",
            vec![("parameters", a1111, false)],
            "Automatic1111",
            "a castle on a hill",
            "2468",
        ),
        (
            "forge.png",
            vec![("parameters", forge, false)],
            "Automatic1111",
            "portrait",
            "1",
        ),
        (
            "krita.png",
            vec![("parameters", krita, true)],
            "Automatic1111",
            "a garden, 庭",
            "5",
        ),
        (
            "invoke.png",
            vec![("invokeai_metadata", invoke, false)],
            "InvokeAi",
            "a fox",
            "9",
        ),
        (
            "comfy.png",
            vec![("prompt", comfy, false), ("workflow", "{}", false)],
            "ComfyUi",
            "a boat",
            "4",
        ),
    ];
    for (name, chunks, tool, prompt, seed) in cases {
        let p = d.join(name);
        png_with(&p, &chunks);
        let v = info_json(&d, &p);
        assert_eq!(v["tool"], tool, "{name}");
        assert_eq!(v["parameters"]["prompt"], prompt, "{name}");
        assert_eq!(v["parameters"]["Seed"], seed, "{name}");
    }
    // A rerun from an AUTOMATIC1111 file takes its settings.
    let out = d.join("rerun.png");
    let model = fixture("tiny-sd15.safetensors");
    let src = d.join("a1111.png");
    let o = cli_env(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--params-from",
            src.to_str().unwrap(),
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
        &d.join("cache"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = info_json(&d, &out);
    assert_eq!(v["parameters"]["Sampler"], "DPM++ 2M");
    assert_eq!(v["parameters"]["Schedule type"], "Karras");
    assert_eq!(v["parameters"]["Seed"], "2468");
    assert_eq!(v["parameters"]["CFG scale"], "6.5");
    assert_eq!(v["parameters"]["negative_prompt"], "lowres");
}

#[test]
fn hostile_metadata_never_crashes_or_loses_the_image() {
    let d = dir("hostile");
    let huge = "x".repeat(9 << 20);
    let cases: Vec<(&str, Chunks)> = vec![
        ("huge.png", vec![("parameters", &huge, false)]),
        ("quotes.png", vec![("parameters", "p\nSteps: \"1, Seed: \"2, Size: \"3x3", false)]),
        ("negative.png", vec![("parameters", "say Negative prompt: hi\nNegative prompt: Negative prompt: x\nSteps: 1, Seed: 2, Size: 8x8", false)]),
        ("badjson.png", vec![("pentimento", "{not json", true), ("invokeai_metadata", "[1,2", false), ("prompt", "{\"1\": []}", false)]),
        ("empty.png", vec![]),
    ];
    for (name, chunks) in cases {
        let p = d.join(name);
        png_with(&p, &chunks);
        let o = cli_env(&["info", "--json", p.to_str().unwrap()], &d.join("cache"));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(
            o.status.code() == Some(0) || o.status.code() == Some(2),
            "{name}"
        );
        assert_eq!(pixels(&p), vec![10u8; 12], "{name}: the image is intact");
    }
    let v = info_json(&d, &d.join("negative.png"));
    assert_eq!(v["parameters"]["prompt"], "say Negative prompt: hi");
    // A file that is not a PNG is a clear error.
    let not_png = d.join("x.png");
    std::fs::write(&not_png, b"GIF89a").unwrap();
    let o = cli_env(&["info", not_png.to_str().unwrap()], &d.join("cache"));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a PNG"));
}
