//! Hostile inputs through the CLI, each built here: outputs that would destroy an input or
//! cannot be written, files that lie about their format, parameters that overflow. Every one
//! is refused before any work, with exit 2 and one line, and loses nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::fixture;

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pentimento-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pentimento(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(args)
        .env("PENTIMENTO_CACHE_DIR", temp("cache"))
        .output()
        .expect("run pentimento")
}

/// Exit 2, one `error:` line containing `needle`, no panic; returns the line.
fn refused(args: &[&str], needle: &str) -> String {
    let o = pentimento(args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: expected {needle:?} in {stderr:?}"
    );
    lines[0].to_string()
}

fn model() -> String {
    fixture("tiny-sd15.safetensors").display().to_string()
}

fn generate<'a>(model: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "generate", "--model", model, "--prompt", "x", "--steps", "4", "--width", "64", "--height",
        "64", "--out", out,
    ];
    v.extend_from_slice(extra);
    v
}

fn write_png(path: &Path, w: u32, h: u32) {
    image::RgbImage::from_pixel(w, h, image::Rgb([40, 90, 200]))
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap();
}

#[test]
fn outputs_that_would_destroy_an_input_or_cannot_be_written_are_refused_first() {
    let dir = temp("outputs");
    let model = model();
    let init = dir.join("init.png");
    write_png(&init, 64, 64);
    let before = std::fs::read(&init).unwrap();
    let init_s = init.to_str().unwrap();

    // The output is the init image (also through another spelling of its path).
    refused(
        &generate(&model, init_s, &["--init-image", init_s]),
        "is an input",
    );
    let other_spelling = dir.join(".").join("init.png");
    refused(
        &generate(
            &model,
            other_spelling.to_str().unwrap(),
            &["--init-image", init_s],
        ),
        "is an input",
    );
    assert_eq!(
        std::fs::read(&init).unwrap(),
        before,
        "the source is untouched"
    );

    // A folder where the file would go.
    let folder = dir.join("folder.png");
    std::fs::create_dir(&folder).unwrap();
    let started = Instant::now();
    refused(
        &generate(&model, folder.to_str().unwrap(), &[]),
        "is a folder",
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refused before the model loads"
    );

    // A folder that cannot be written (root writes anywhere: then only the rest is checked).
    let locked = dir.join("locked");
    std::fs::create_dir(&locked).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        let root = std::fs::write(locked.join("probe"), b"").is_ok();
        let _ = std::fs::remove_file(locked.join("probe"));
        if !root {
            let out = locked.join("out.png");
            refused(
                &generate(&model, out.to_str().unwrap(), &[]),
                "cannot write in this folder",
            );
        }
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn a_failed_run_keeps_the_previous_file_at_the_output_path() {
    let dir = temp("keep");
    let out = dir.join("out.png");
    std::fs::write(&out, b"the user's earlier image").unwrap();
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage").unwrap();
    refused(
        &generate(garbage.to_str().unwrap(), out.to_str().unwrap(), &[]),
        "garbage",
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"the user's earlier image");
}

#[test]
fn images_are_read_by_their_content_within_limits() {
    let dir = temp("images");
    let model = model();
    // A JPEG named .png opens.
    let jpeg_named_png = dir.join("photo.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([200, 100, 50]))
        .save_with_format(&jpeg_named_png, image::ImageFormat::Jpeg)
        .unwrap();
    let out = dir.join("out.png");
    let o = pentimento(&generate(
        &model,
        out.to_str().unwrap(),
        &[
            "--init-image",
            jpeg_named_png.to_str().unwrap(),
            "--strength",
            "0.5",
        ],
    ));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A PNG header claiming 100000×100000 pixels is refused without allocating them.
    let mut huge = Vec::new();
    huge.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    huge.extend_from_slice(&(ihdr.len() as u32).to_be_bytes());
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&ihdr);
    huge.extend_from_slice(&chunk);
    huge.extend_from_slice(&crate::common::crc32(&chunk).to_be_bytes());
    let huge_path = dir.join("huge.png");
    std::fs::write(&huge_path, &huge).unwrap();
    refused(
        &generate(
            &model,
            out.to_str().unwrap(),
            &["--init-image", huge_path.to_str().unwrap()],
        ),
        "huge.png",
    );

    // Not an image at all, and a truncated one.
    let text = dir.join("notes.png");
    std::fs::write(&text, b"just some text").unwrap();
    refused(
        &generate(
            &model,
            out.to_str().unwrap(),
            &["--init-image", text.to_str().unwrap()],
        ),
        "not a readable image",
    );
    let good = dir.join("good.png");
    write_png(&good, 64, 64);
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refused(
        &generate(
            &model,
            out.to_str().unwrap(),
            &["--init-image", cut.to_str().unwrap()],
        ),
        "cut.png",
    );
}

#[test]
fn absurd_parameters_are_refused_before_the_model_loads() {
    let dir = temp("params");
    let out = dir.join("out.png");
    let out = out.to_str().unwrap();
    // `refused` sees one line: the model's "loaded …" line never came.
    let model = model();
    let none = model.as_str();
    refused(&generate(none, out, &["--cfg", "1e300"]), "CFG scale");
    refused(&generate(none, out, &["--cfg", "NaN"]), "CFG scale");
    refused(
        &[
            "generate",
            "--model",
            none,
            "--prompt",
            &format!("a (cat:1{})", "0".repeat(50)),
            "--out",
            out,
        ],
        "emphasis",
    );
    let nested = format!("{}cat{}", "(".repeat(2000), ")".repeat(2000));
    refused(
        &[
            "generate", "--model", none, "--prompt", &nested, "--out", out,
        ],
        "emphasis",
    );
    let long = "a cat, ".repeat(10_000);
    refused(
        &["generate", "--model", none, "--prompt", &long, "--out", out],
        "longer than",
    );
    let breaks = "a BREAK ".repeat(1000);
    refused(
        &[
            "generate", "--model", none, "--prompt", &breaks, "--out", out,
        ],
        "BREAK",
    );
    refused(
        &[
            "generate", "--model", none, "--prompt", "a\u{1}b", "--out", out,
        ],
        "control",
    );
    let init = dir.join("init.png");
    write_png(&init, 64, 64);
    refused(
        &generate(
            none,
            out,
            &["--init-image", init.to_str().unwrap(), "--strength", "0.01"],
        ),
        "leaves no step",
    );
    assert!(!Path::new(out).exists());
}

/// The tiny single-file model with every value of the tensors whose names start with `prefix`
/// set to `value` (NaN or infinite).
fn altered_model(dir: &Path, prefix: &str, value: f32) -> PathBuf {
    use safetensors::tensor::TensorView;
    let bytes = std::fs::read(fixture("tiny-sd15.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = vec![];
    for (name, view) in st.tensors() {
        let mut data = view.data().to_vec();
        if name.starts_with(prefix) {
            match view.dtype() {
                safetensors::Dtype::F32 => data
                    .chunks_exact_mut(4)
                    .for_each(|c| c.copy_from_slice(&value.to_le_bytes())),
                // Half-precision NaN and +∞.
                safetensors::Dtype::F16 => {
                    let bits: u16 = if value.is_nan() {
                        0x7E00
                    } else if value.is_infinite() {
                        0x7C00
                    } else {
                        f16_bits(value)
                    };
                    data.chunks_exact_mut(2)
                        .for_each(|c| c.copy_from_slice(&bits.to_le_bytes()))
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        owned.push((name, view.dtype(), view.shape().to_vec(), data));
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let path = dir.join(format!("{}.safetensors", prefix.replace('.', "-")));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

#[test]
fn non_finite_weights_are_refused_at_load_naming_the_tensor() {
    let dir = temp("nan");
    let out = dir.join("out.png");
    let out_s = out.to_str().unwrap();
    std::fs::write(&out, b"the user's earlier image").unwrap();
    for (prefix, value) in [
        ("model.diffusion_model.out.", f32::NAN),
        ("first_stage_model.decoder.conv_out", f32::INFINITY),
        (
            "cond_stage_model.transformer.text_model.final_layer_norm",
            f32::NAN,
        ),
    ] {
        let model = altered_model(&dir, prefix, value);
        let line = refused(
            &generate(model.to_str().unwrap(), out_s, &[]),
            "NaN or infinite",
        );
        assert!(
            line.contains(prefix) || line.contains(prefix.trim_end_matches('.')),
            "{line}"
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            b"the user's earlier image",
            "nothing written"
        );
    }
}

#[test]
fn the_app_refuses_a_missing_image_before_opening_a_window() {
    refused(&["/no/such/photo.png"], "no such image file");
}

#[test]
fn metadata_is_read_only_from_regular_files_of_bounded_size() {
    refused(&["info", "/dev/zero"], "not a regular file");
    let dir = temp("info");
    let out = dir.join("out.png");
    let out = out.to_str().unwrap();
    refused(
        &[
            "generate",
            "--model",
            &model(),
            "--params-from",
            "/dev/zero",
            "--out",
            out,
        ],
        "not a regular file",
    );
}

/// A copy of the tiny diffusers folder with `key` of the JSON file `file` set to `value`.
fn folder_with(dir: &Path, name: &str, file: &str, key: &str, value: serde_json::Value) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let (p, dest) = (e.path(), to.join(e.file_name()));
            if p.is_dir() {
                copy(&p, &dest);
            } else {
                std::fs::copy(&p, &dest).unwrap();
            }
        }
    }
    let to = dir.join(name);
    copy(&fixture("tiny-sd15"), &to);
    let path = to.join(file);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json[key] = value;
    std::fs::write(&path, json.to_string()).unwrap();
    to
}

#[test]
fn configs_no_model_was_trained_with_are_refused_not_panicked_on() {
    use serde_json::json;
    let dir = temp("configs");
    let out = dir.join("out.png");
    let out = out.to_str().unwrap();
    for (name, file, key, value, needle) in [
        (
            "t0",
            "scheduler/scheduler_config.json",
            "num_train_timesteps",
            json!(0),
            "num_train_timesteps",
        ),
        (
            "t-huge",
            "scheduler/scheduler_config.json",
            "num_train_timesteps",
            json!(1u64 << 62),
            "num_train_timesteps",
        ),
        (
            "betas",
            "scheduler/scheduler_config.json",
            "beta_end",
            json!(-0.5),
            "betas",
        ),
        (
            "groups",
            "unet/config.json",
            "norm_num_groups",
            json!(0),
            "norm_num_groups",
        ),
        (
            "vae-levels",
            "vae/config.json",
            "block_out_channels",
            json!([]),
            "no VAE levels",
        ),
        (
            "vae-scale",
            "vae/config.json",
            "scaling_factor",
            json!(0.0),
            "scaling_factor",
        ),
        (
            "clip-layers",
            "text_encoder/config.json",
            "num_hidden_layers",
            json!(0),
            "no layers",
        ),
        (
            "clip-eps",
            "text_encoder/config.json",
            "layer_norm_eps",
            json!(-1.0),
            "layer_norm_eps",
        ),
    ] {
        let model = folder_with(&dir, name, file, key, value);
        refused(&generate(model.to_str().unwrap(), out, &[]), needle);
        // Inspecting reports what it can read; it never panics.
        let o = pentimento(&["models", "inspect", model.to_str().unwrap()]);
        assert!(matches!(o.status.code(), Some(0 | 2)), "{name}: {o:?}");
    }
}

#[test]
fn every_sampler_runs_up_to_the_training_timesteps_and_no_further() {
    use serde_json::json;
    let dir = temp("timesteps");
    // 20 training timesteps stand in for SD's 1000: the same boundary, twenty UNet calls.
    let model = folder_with(
        &dir,
        "t20",
        "scheduler/scheduler_config.json",
        "num_train_timesteps",
        json!(20),
    );
    let model = model.to_str().unwrap();
    let out = dir.join("out.png");
    let out = out.to_str().unwrap();
    for sampler in [
        "DDIM",
        "PNDM",
        "DDPM",
        "DPM++ 2M",
        "DPM++ 2M Karras",
        "UniPC",
        "LMS",
        "Euler a",
    ] {
        let o = pentimento(&[
            "generate",
            "--model",
            model,
            "--prompt",
            "x",
            "--steps",
            "19",
            "--sampler",
            sampler,
            "--width",
            "64",
            "--height",
            "64",
            "--out",
            out,
        ]);
        assert!(
            o.status.success(),
            "{sampler}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Known only once the model's schedule is read: after the "loaded" line, one error.
    let o = pentimento(&[
        "generate", "--model", model, "--prompt", "x", "--steps", "20", "--width", "64",
        "--height", "64", "--out", out,
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.contains("at most 19 steps")),
        "{stderr}"
    );
}

#[test]
fn loops_and_sizes_that_would_never_end_are_refused() {
    let dir = temp("loops");
    let model = model();
    let out = dir.join("out.png");
    let out = out.to_str().unwrap();
    let init = dir.join("init.png");
    write_png(&init, 64, 64);
    let init = init.to_str().unwrap();
    refused(
        &generate(&model, out, &["--eta", "1e300", "--sampler", "DDIM"]),
        "eta",
    );
    refused(
        &generate(
            &model,
            out,
            &[
                "--init-image",
                init,
                "--mask",
                init,
                "--repaint-resample",
                "1000000",
            ],
        ),
        "RePaint",
    );
    refused(
        &generate(&model, out, &["--batch-count", "1000000000"]),
        "--batch-count",
    );
}

#[test]
fn fifos_devices_and_links_are_refused_without_blocking() {
    let dir = temp("fifo");
    let out = dir.join("out.png");
    let out_s = out.to_str().unwrap();
    #[cfg(unix)]
    {
        let fifo = dir.join("model.safetensors");
        let made = Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let fifo = fifo.to_str().unwrap();
            let started = Instant::now();
            refused(&generate(fifo, out_s, &[]), "not a regular file");
            refused(&["models", "inspect", fifo], "not a regular file");
            refused(&["info", fifo], "not a regular file");
            refused(
                &generate(&model(), out_s, &["--init-image", fifo]),
                "not a regular file",
            );
            assert!(started.elapsed() < Duration::from_secs(30));
        }
        // A hard link to the init image is the init image.
        let init = dir.join("init.png");
        write_png(&init, 64, 64);
        let linked = dir.join("linked.png");
        std::fs::hard_link(&init, &linked).unwrap();
        refused(
            &generate(
                &model(),
                linked.to_str().unwrap(),
                &["--init-image", init.to_str().unwrap()],
            ),
            "is an input",
        );
    }
}

#[test]
fn a_folder_linked_into_itself_is_listed_once() {
    let dir = temp("links");
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(
        fixture("tiny-sd15.safetensors"),
        models.join("tiny.safetensors"),
    )
    .unwrap();
    #[cfg(unix)]
    for i in 0..10 {
        std::os::unix::fs::symlink(".", models.join(format!("loop{i}"))).unwrap();
    }
    let o = Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(["models", "list"])
        .env("PENTIMENTO_CONFIG_DIR", dir.join("config"))
        .env("PENTIMENTO_CACHE_DIR", dir.join("cache"))
        .env("HF_HUB_CACHE", dir.join("hub"))
        .env("PENTIMENTO_MODEL_DIRS", &models)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout.lines().filter(|l| l.contains("tiny")).count(),
        1,
        "{stdout}"
    );
}

#[test]
fn text_from_files_cannot_drive_the_terminal() {
    let dir = temp("escape");
    let png = dir.join("evil.png");
    let file = std::fs::File::create(&png).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 8, 8);
    enc.set_color(png::ColorType::Rgb);
    enc.add_text_chunk(
        "parameters".into(),
        "a cat\x1b]0;PWNED\x07\x1b[2J\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 8x8"
            .into(),
    )
    .unwrap();
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&[0u8; 8 * 8 * 3]).unwrap();
    w.finish().unwrap();
    let o = pentimento(&["info", png.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(
        !o.stdout.contains(&0x1b) && !o.stdout.contains(&0x07),
        "{:?}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn deeply_nested_yaml_beside_a_checkpoint_is_refused_quickly() {
    let dir = temp("yaml");
    let ckpt = dir.join("m.safetensors");
    std::fs::copy(fixture("tiny-sd15.safetensors"), &ckpt).unwrap();
    let depth = 100_000;
    let yaml = format!("a: {}1{}", "{a: ".repeat(depth), "}".repeat(depth));
    std::fs::write(dir.join("m.yaml"), yaml).unwrap();
    let started = Instant::now();
    refused(&["models", "inspect", ckpt.to_str().unwrap()], "nested");
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Known tensors of the wrong rank (a 1-D `conv_in`, a 1-D position embedding): refused by
/// name, never indexed out of bounds.
#[test]
fn tensors_of_the_wrong_rank_are_refused_by_name() {
    use safetensors::tensor::TensorView;
    let dir = temp("rank");
    let bytes = std::fs::read(fixture("tiny-sd15.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for key in [
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.out.2.weight",
        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
        "first_stage_model.decoder.conv_in.weight",
    ] {
        let owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(name, v)| {
                let shape = if name == key {
                    vec![v.shape().iter().product()]
                } else {
                    v.shape().to_vec()
                };
                (name, v.dtype(), shape, v.data().to_vec())
            })
            .collect();
        let views: Vec<(String, TensorView)> = owned
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let path = dir.join("flat.safetensors");
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        let path = path.to_str().unwrap();
        // Inspecting says what the file is not; it never panics.
        let o = pentimento(&["models", "inspect", path]);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            matches!(o.status.code(), Some(0 | 2)) && !all.contains("panicked"),
            "{key}: {all}"
        );
        let out = dir.join("out.png");
        if key.starts_with("first_stage_model") {
            // A VAE that cannot be read is no VAE: the checkpoint needs one from elsewhere.
            let o = pentimento(&generate(path, out.to_str().unwrap(), &[]));
            assert_eq!(o.status.code(), Some(2), "{key}: {o:?}");
            assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
        } else {
            assert!(all.contains("dimensions"), "{key}: {all}");
            refused(&generate(path, out.to_str().unwrap(), &[]), "dimensions");
        }
    }
}

/// Finite weights so large that the computation overflows: the job stops at the stage where
/// the values stopped being numbers, never writing a black image.
#[test]
fn overflowing_computation_stops_the_job_naming_the_stage() {
    let dir = temp("overflow");
    let out = dir.join("out.png");
    // f16 can hold 60 000; a network full of it overflows f32 within a few layers.
    let model = altered_model(&dir, "model.diffusion_model.", 60000.0);
    let o = pentimento(&generate(
        model.to_str().unwrap(),
        out.to_str().unwrap(),
        &[],
    ));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(error.contains("NaN or infinite"), "{error}");
    assert!(!out.exists());
}

/// The half-precision bits of a finite, normal `value` (round toward zero).
fn f16_bits(value: f32) -> u16 {
    let b = value.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    assert!((1..31).contains(&exp), "{value} is not a normal f16");
    sign | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16
}

/// LoRA folders, names and records from a hostile run: a folder option that is not a folder is
/// said; an unknown name among thousands of files with a long name answers at once; a name
/// longer than a file name can be is refused; a record whose LoRA name would become tag text is
/// refused, never pasted into the prompt.
#[test]
fn lora_folders_names_and_records_are_checked() {
    let dir = temp("lora-names");
    let out = dir.join("o.png").display().to_string();
    let model = model();
    let file = dir.join("a-file").display().to_string();
    std::fs::write(&file, b"x").unwrap();
    refused(
        &generate(&model, &out, &["--lora-dir", &file]),
        "not a folder",
    );
    refused(
        &generate(&model, &out, &["--embeddings-dir", "/no/such/dir"]),
        "not a folder",
    );

    let many = dir.join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..3000 {
        std::fs::write(
            many.join(format!("style_{i:05}_{}.safetensors", "x".repeat(40))),
            b"",
        )
        .unwrap();
    }
    let many_s = many.display().to_string();
    let long = format!("a heron <lora:{}:1>", "q".repeat(200));
    let started = Instant::now();
    let mut args = generate(&model, &out, &["--lora-dir", &many_s]);
    args[4] = &long;
    refused(&args, "no LoRA named");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let longer = format!("a heron <lora:{}:1>", "q".repeat(300));
    let mut args = generate(&model, &out, &["--lora-dir", &many_s]);
    args[4] = &longer;
    refused(&args, "at most 255");

    // A record naming `ink:100><lora:glow` must not become two tags.
    let made = dir.join("made.png").display().to_string();
    let ink = format!(
        "{}:0.5",
        fixture("extra/loras/ink_kohya.safetensors").display()
    );
    let o = pentimento(&generate(&model, &made, &["--lora", &ink]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&made).unwrap();
    let mut record = pentimento::png_info::parse_image(&bytes)
        .unwrap()
        .record
        .unwrap();
    record.loras[0].name = "ink:100><lora:glow".into();
    let image = pentimento::engine::image::read_image_file(std::path::Path::new(&made)).unwrap();
    let png = dir.join("record.png");
    pentimento::png_info::write_png(&png, &image, &record).unwrap();
    let png_s = png.display().to_string();
    let loras = fixture("extra/loras").display().to_string();
    refused(
        &[
            "generate",
            "--model",
            &model,
            "--params-from",
            &png_s,
            "--lora-dir",
            &loras,
            "--out",
            &out,
        ],
        "cannot be a file's name",
    );
    let _ = std::fs::remove_dir_all(dir);
}
