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

/// `generate --params-from FROM` with `extra` options, written to `d/out`; it must succeed.
fn rerun(d: &Path, from: &Path, out: &str, extra: &[&str]) -> PathBuf {
    let model = fixture("tiny-sd15.safetensors");
    let out = d.join(out);
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--params-from",
        from.to_str().unwrap(),
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

        let again = rerun(&d, &out, "again.png", &[]);
        assert_eq!(pixels(&again), pixels(&out));
        let other = rerun(&d, &out, "other.png", &["--seed", "78"]);
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
    let novelai = r#"{"prompt": "1girl, masterpiece", "steps": 28, "height": 832, "width": 512, "scale": 5.0, "uncond_scale": 1.0, "cfg_rescale": 0.0, "seed": 3301185564, "n_samples": 1, "strength": 0.7, "noise": 0.0, "sampler": "k_euler_ancestral", "uc": "lowres, bad anatomy"}"#;
    let invoke2 = r#"{"model": "stable diffusion", "model_weights": "stable-diffusion-1.5", "model_hash": "cc6cb271", "app_id": "invoke-ai/InvokeAI", "app_version": "2.2.4", "image": {"prompt": [{"prompt": "a castle [blurry, lowres]", "weight": 1.0}], "steps": 50, "cfg_scale": 7.5, "height": 512, "width": 768, "seed": 3357757885, "type": "txt2img", "sampler": "k_lms"}}"#;
    let fooocus = r#"{"adm_guidance": "(1.5, 0.8, 0.3)", "base_model": "juggernautXL_v8Rundiffusion", "base_model_hash": "aeb7e9e689", "guidance_scale": 4, "negative_prompt": "(bad art:1.4), blurry", "performance": "Speed", "prompt": "a lighthouse", "resolution": "(1152, 896)", "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras", "seed": "1234567", "steps": 30, "version": "Fooocus v2.3.1", "metadata_scheme": "fooocus"}"#;
    let comfy_lora = r#"{"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "cfg": 7, "sampler_name": "dpmpp_2m", "scheduler": "karras", "model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0]}}, "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "ink.safetensors", "model": ["4", 0]}}, "4": {"class_type": "CheckpointLoader|pysssss", "inputs": {"ckpt_name": "dreamshaper_8.safetensors"}}, "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a heron"}}, "7": {"class_type": "CLIPTextEncode", "inputs": {"text": ""}}}"#;
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
        (
            "novelai.png",
            vec![
                ("Title", "AI generated image", false),
                ("Description", "1girl, masterpiece", false),
                ("Software", "NovelAI", false),
                ("Source", "Stable Diffusion 81274D13", false),
                ("Comment", novelai, false),
            ],
            "NovelAi",
            "1girl, masterpiece",
            "3301185564",
        ),
        (
            "invoke2.png",
            vec![("sd-metadata", invoke2, false)],
            "InvokeAi",
            "a castle",
            "3357757885",
        ),
        (
            "invoke1.png",
            vec![(
                "Dream",
                r#""a lake at dawn [fog]" -s 40 -S 77 -W 512 -H 512 -C 7.5 -A k_lms"#,
                false,
            )],
            "InvokeAi",
            "a lake at dawn",
            "77",
        ),
        (
            "fooocus.png",
            vec![
                ("parameters", fooocus, false),
                ("fooocus_scheme", "fooocus", false),
            ],
            "Fooocus",
            "a lighthouse",
            "1234567",
        ),
    ];
    for (name, chunks, tool, prompt, seed) in cases {
        let p = d.join(name);
        png_with(&p, &chunks);
        let v = info_json(&d, &p);
        assert_eq!(v["tool"], tool, "{name}");
        assert_eq!(v["carrier"], "png-text", "{name}");
        assert_eq!(v["prompt"], prompt, "{name}");
        assert_eq!(v["parameters"]["prompt"], prompt, "{name}");
        assert_eq!(v["parameters"]["Seed"], seed, "{name}");
        assert_eq!(v["seed"].to_string(), seed, "{name}");
    }
    // Every tool's sampler names as ours, the tool's kept beside them.
    let expect = [
        ("a1111.png", "DPM++ 2M Karras", "DPM++ 2M"),
        ("invoke.png", "DPM++ 2M", "dpmpp_2m"),
        ("comfy.png", "Euler", "euler"),
        ("novelai.png", "Euler a", "k_euler_ancestral"),
        ("invoke2.png", "LMS", "k_lms"),
        ("invoke1.png", "LMS", "k_lms"),
    ];
    for (name, ours, theirs) in expect {
        let v = info_json(&d, &d.join(name));
        assert_eq!(v["sampler"], ours, "{name}");
        assert_eq!(v["tool_sampler"], theirs, "{name}");
    }
    // InvokeAI 2's bracketed negative prompt; NovelAI's `uc`; Fooocus's JSON is not read as
    // AUTOMATIC1111 text (no `"bad art": "1.4)"` fields), its SDE sampler is said not to carry.
    let v = info_json(&d, &d.join("invoke2.png"));
    assert_eq!(v["negative_prompt"], "blurry, lowres");
    assert_eq!(v["model"], "stable-diffusion-1.5");
    let v = info_json(&d, &d.join("novelai.png"));
    assert_eq!(v["negative_prompt"], "lowres, bad anatomy");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(512), Some(832))
    );
    let v = info_json(&d, &d.join("fooocus.png"));
    assert_eq!(v["negative_prompt"], "(bad art:1.4), blurry");
    assert_eq!(v["model"], "juggernautXL_v8Rundiffusion");
    assert!(v["parameters"].get("\"bad art\"").is_none());
    assert!(v["parameters"].get("bad art").is_none());
    assert_eq!(v["sampler"], serde_json::Value::Null);
    let notes = v["not_carried_over"].as_array().unwrap();
    assert!(
        notes[0]
            .as_str()
            .unwrap()
            .starts_with("sampler dpmpp_2m_sde_gpu (karras)"),
        "{notes:?}"
    );
    // ComfyUI's model through a LoRA loader.
    let p = d.join("comfy-lora.png");
    png_with(&p, &[("prompt", comfy_lora, false)]);
    let v = info_json(&d, &p);
    assert_eq!(v["model"], "dreamshaper_8.safetensors");
    assert_eq!(v["sampler"], "DPM++ 2M Karras");
    // A rerun from an AUTOMATIC1111 file takes its settings.
    let out = rerun(
        &d,
        &d.join("a1111.png"),
        "rerun.png",
        &["--width", "64", "--height", "64", "--steps", "2"],
    );
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

/// AUTOMATIC1111's JPEG and WebP: written with the parameters in EXIF, read back by `info`,
/// run again with `--params-from`; parameters hidden in the alpha bits (stealth_pnginfo) of a
/// PNG without text.
#[test]
fn jpeg_webp_and_hidden_parameters() {
    let d = dir("exif");
    let png = generate(&d, "a.png", &["--prompt", "a heron, café", "--seed", "31"]);
    for ext in ["jpg", "webp"] {
        let out = generate(
            &d,
            &format!("a.{ext}"),
            &["--prompt", "a heron, café", "--seed", "31"],
        );
        let v = info_json(&d, &out);
        assert_eq!(v["tool"], "Automatic1111", "{ext}");
        assert_eq!(v["carrier"], "exif", "{ext}");
        assert_eq!(v["prompt"], "a heron, café", "{ext}");
        assert_eq!(v["seed"], 31, "{ext}");
        assert_eq!(v["sampler"], "Euler a", "{ext}");
        // The WebP is lossless: the PNG's pixels exactly.
        if ext == "webp" {
            assert_eq!(pixels(&out), pixels(&png));
        }
        // Run again from it: the same picture as the PNG's.
        let again = rerun(&d, &out, &format!("again-{ext}.png"), &[]);
        assert_eq!(pixels(&again), pixels(&png), "{ext}");
    }
    // A batch keeps the extension.
    generate(&d, "b.jpg", &["--prompt", "x", "--batch-count", "2"]);
    assert!(d.join("b-1.jpg").is_file() && d.join("b-2.jpg").is_file());
    // An output type we do not write is refused before anything runs.
    let model = fixture("tiny-sd15.safetensors");
    let bad = d.join("a.gif");
    let o = cli_env(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "x",
            "--out",
            bad.to_str().unwrap(),
        ],
        &d.join("cache"),
    );
    assert_eq!(o.status.code(), Some(2));
    // Hidden in the alpha bits, gzip-compressed, as NovelAI does: its chunks as one JSON.
    let hidden = serde_json::json!({
        "Description": "a fox in snow",
        "Software": "NovelAI",
        "Comment": serde_json::json!({"prompt": "a fox in snow", "uc": "lowres", "steps": 23,
            "scale": 6.0, "seed": 42, "sampler": "k_euler", "width": 64, "height": 64}).to_string(),
    })
    .to_string();
    let (w, h) = (64, 64);
    let mut rgba = vec![180u8; w * h * 4];
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    gz.extend(miniz_oxide::deflate::compress_to_vec(hidden.as_bytes(), 6));
    gz.extend_from_slice(&[0; 8]);
    pentimento::png_info::stealth::write_alpha(&mut rgba, w, h, &gz, true);
    let p = d.join("stealth.png");
    image::RgbaImage::from_raw(w as u32, h as u32, rgba)
        .unwrap()
        .save(&p)
        .unwrap();
    let v = info_json(&d, &p);
    assert_eq!(v["tool"], "NovelAi");
    assert_eq!(v["carrier"], "hidden-bits");
    assert_eq!(v["prompt"], "a fox in snow");
    assert_eq!(v["sampler"], "Euler");
    assert_eq!(v["seed"], 42);
}
