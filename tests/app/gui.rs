//! The real app driven through egui_kittest: panels, generating with the tiny model, painting
//! and undo, cancelling, opening and saving.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::fixture;
use eframe::egui::{self, Key, Modifiers, Pos2};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use pentimento::ui::{AppPlaces, LibraryPlaces, ModelStatus, PentimentoApp};

/// A history folder of its own for each app under test, never the user's.
fn history_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "pentimento-gui-history-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub(crate) fn harness(model: Option<&str>) -> Harness<'static, PentimentoApp> {
    harness_with_history(model, history_dir())
}

fn harness_with_history(model: Option<&str>, history: PathBuf) -> Harness<'static, PentimentoApp> {
    // The library beside the history: never the user's settings or hub cache.
    let places = AppPlaces {
        library: LibraryPlaces {
            settings: Some(history.with_extension("library.json")),
            hub_cache: Some(history.with_extension("hub")),
            hub_endpoint: Some("http://127.0.0.1:9".into()),
        },
        session: Some(history.with_extension("session.json")),
        autosave: Some(history.with_extension("autosave.pentimento")),
        history: Some(history),
    };
    harness_with_places(model, places)
}

fn harness_with_places(model: Option<&str>, places: AppPlaces) -> Harness<'static, PentimentoApp> {
    let model = model.map(fixture);
    Harness::builder()
        .with_size(egui::vec2(1280.0, 820.0))
        .wgpu()
        .build_eframe(move |cc| PentimentoApp::with_places(cc, model, places))
}

/// A file dropped on the window, as the windowing integration hands it to egui.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// Moves the pointer to `at` and drops `file` there.
fn drop_file(h: &mut Harness<'static, PentimentoApp>, file: PathBuf, at: Pos2) {
    h.input_mut().events.push(egui::Event::PointerMoved(at));
    h.step();
    h.input_mut().dropped_files.push(Arc::new(Dropped(file)));
    h.step();
}

/// A PNG as AUTOMATIC1111 writes it: the image plus a `parameters` text chunk.
fn a1111_png(path: &std::path::Path, parameters: &str) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 16, 8);
    enc.set_color(png::ColorType::Rgb);
    enc.add_text_chunk("parameters".into(), parameters.into())
        .unwrap();
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&[90u8; 16 * 8 * 3]).unwrap();
}

/// Steps the UI until `done` holds (the engine works on its own thread), at most `secs`.
pub(crate) fn pump_until(
    h: &mut Harness<'static, PentimentoApp>,
    secs: u64,
    mut done: impl FnMut(&PentimentoApp) -> bool,
) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out; status: {}",
            h.state().status
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

pub(crate) fn canvas_centre() -> Pos2 {
    // Left panel ~330 px, top bar ~40 px, bottom bars ~140 px.
    Pos2::new(800.0, 380.0)
}

#[test]
fn first_run_panel_without_a_model() {
    let mut h = harness(None);
    h.run_steps(4);
    h.get_by_label("Welcome to Pentimento");
    h.get_by_label("Open model…");
    assert!(matches!(h.state().model, ModelStatus::None));
    h.snapshot("first_run");
}

/// While a model loads, the status bar shows how much of its weights has been read (the worker
/// reports it; `worker.rs` tests the reports).
#[test]
fn the_status_bar_shows_load_progress() {
    let mut h = harness(None);
    h.run_steps(2);
    h.state_mut().model = ModelStatus::Loading {
        path: PathBuf::from("big-model.safetensors"),
        progress: Some(0.42),
    };
    h.run_steps(2);
    h.get_by_label("42 %");
    h.get_by_label_contains("loading big-model.safetensors");
}

#[test]
fn type_a_prompt_generate_and_see_the_result() {
    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    {
        let app = h.state_mut();
        app.panel.params.width = 64;
        app.panel.params.height = 64;
        app.panel.params.steps = 6;
        app.panel.params.seed = 42;
        app.panel.seed_locked = true;
    }
    h.get_by_label("Prompt").focus();
    h.get_by_label("Prompt").type_text("a photo of a cat");
    h.step();
    assert_eq!(h.state().panel.params.prompt, "a photo of a cat");
    h.get_by_label("Generate").click();
    h.step();
    assert!(h.state().is_running());
    let mut saw_progress = false;
    pump_until(&mut h, 120, |app| {
        saw_progress |= app.status.starts_with("generating");
        !app.history.items.is_empty()
    });
    assert!(saw_progress);
    let app = h.state();
    assert_eq!(app.history.items.len(), 1);
    assert_eq!(app.history.items[0].params.seed, 42);
    assert_eq!(
        app.doc.staged().len(),
        1,
        "the result lands in the staging area over the canvas"
    );
    assert!(
        !app.doc.has_image(),
        "the original is untouched until accepted"
    );
    h.get_by_label("Accept").click();
    h.step();
    assert!(h.state().doc.has_image());
    assert_eq!(h.state().doc.size(), (64, 64));
    // The result is also on disk, with its parameters, for the next session.
    let dir = h.state().history.dir().unwrap().to_path_buf();
    let start = Instant::now();
    let saved = loop {
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        if let Some(f) = files
            .into_iter()
            .find(|f| f.extension().is_some_and(|e| e == "png"))
        {
            break f;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "history PNG not written"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(200));
    let info = pentimento::png_info::parse_image(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(info.record.unwrap().params.prompt, "a photo of a cat");
    h.state_mut().status = "done".into();
    h.run_steps(3);
    h.snapshot("result_accepted");
}

#[test]
fn paint_a_stroke_and_undo_it() {
    let mut h = harness(None);
    h.run_steps(3);
    let c = canvas_centre();
    h.hover_at(c);
    h.step();
    h.drag_at(c);
    h.step();
    for i in 1..=10 {
        h.hover_at(c + egui::vec2(i as f32 * 8.0, i as f32 * 3.0));
        h.step();
    }
    h.drop_at(c + egui::vec2(80.0, 30.0));
    h.step();
    assert!(
        !h.state().doc.mask_is_empty(),
        "the stroke painted the mask"
    );
    h.state_mut().status = String::new();
    h.run_steps(2);
    h.snapshot("mask_stroke");
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    assert!(h.state().doc.mask_is_empty(), "Ctrl+Z undid the stroke");
    h.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    h.step();
    assert!(!h.state().doc.mask_is_empty(), "Ctrl+Shift+Z redid it");
    // Tool shortcuts.
    h.key_press(Key::E);
    h.step();
    assert_eq!(
        h.state().tool,
        pentimento::document::brush::Tool::MaskEraser
    );
    let size = h.state().brush.size;
    h.key_press(Key::CloseBracket);
    h.step();
    assert!(h.state().brush.size > size);
    // Ctrl+Z while typing in the prompt belongs to the text, not to the canvas.
    h.get_by_label("Prompt").focus();
    h.get_by_label("Prompt").type_text("a cat");
    h.step();
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    assert!(
        !h.state().doc.mask_is_empty(),
        "Ctrl+Z in the prompt undid a canvas stroke"
    );
}

/// Starts a 150-step job (long enough to cancel) and waits until it runs.
fn start_a_long_job(h: &mut Harness<'static, PentimentoApp>) {
    {
        let app = h.state_mut();
        app.panel.params.width = 128;
        app.panel.params.height = 128;
        app.panel.params.steps = 150;
        app.panel.params.prompt = "x".into();
    }
    h.get_by_label("Generate").click();
    h.step();
    pump_until(h, 60, |app| app.status.starts_with("generating"));
}

#[test]
fn cancel_stops_a_running_job() {
    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    start_a_long_job(&mut h);
    h.get_by_label("Cancel").click();
    h.step();
    // Said at once (the worker may already have answered within the same frame's passes).
    let said = h.state().status.clone();
    assert!(said == "cancelling…" || said == "cancelled", "{said}");
    let asked = Instant::now();
    pump_until(&mut h, 60, |app| !app.is_running());
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(h.state().status, "cancelled");
    assert!(h.state().history.items.is_empty());
}

/// Esc stops a running job, and Cancel acts on the press: a press whose release comes in a
/// later frame (a slow frame on a busy machine) still cancels.
#[test]
fn esc_and_a_press_on_cancel_stop_a_job() {
    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    start_a_long_job(&mut h);
    h.key_press(Key::Escape);
    h.step();
    // The worker may already have answered by the time the frame is looked at.
    let stopping = |s: &str| s == "cancelling…" || s == "cancelled";
    assert!(stopping(&h.state().status), "{}", h.state().status);
    pump_until(&mut h, 60, |app| !app.is_running());

    start_a_long_job(&mut h);
    let at = h.get_by_label("Cancel").rect().center();
    h.input_mut().events.push(egui::Event::PointerMoved(at));
    h.input_mut().events.push(egui::Event::PointerButton {
        pos: at,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    h.step();
    assert!(
        stopping(&h.state().status),
        "the press alone cancels: {}",
        h.state().status
    );
    pump_until(&mut h, 60, |app| !app.is_running());
}

#[test]
fn open_and_save_an_image() {
    let mut h = harness(None);
    h.run_steps(2);
    h.state_mut()
        .open_image(&fixture("tiny-sd15-img2img.3-image.png"));
    h.run_steps(3);
    assert_eq!(h.state().doc.size(), (128, 128));
    assert!(h.state().doc.has_image());
    let out = std::env::temp_dir().join(format!("pentimento-gui-{}.png", std::process::id()));
    h.state_mut().save_png(&out);
    let saved = image::open(&out).unwrap().to_rgb8();
    let original = image::open(fixture("tiny-sd15-img2img.3-image.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(saved, original);
    // Nothing generated this image: the PNG claims no generation parameters.
    let bytes = std::fs::read(&out).unwrap();
    assert!(pentimento::png_info::parse_image(&bytes).is_none());
    assert!(h.state().status.contains("no generation parameters"));
}

/// What the app's Save writes after img2img, inpainting and a batch is what the CLI writes
/// for the same job, field by field: kind, strength, seeds, model hash, inpaint settings,
/// prediction, source hashes.
#[test]
fn the_apps_save_records_what_the_cli_records() {
    let dir = crate::common::temp_dir("gui", "records");
    let source = fixture("tiny-sd15-img2img.3-image.png");
    // A white mask file of the image's size for the CLI; the app fills its mask.
    let white = image::RgbImage::from_pixel(128, 128, image::Rgb([255, 255, 255]));
    let mask_file = dir.join("mask.png");
    white.save(&mask_file).unwrap();

    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    h.state_mut().open_image(&source);
    h.run_steps(2);
    {
        let app = h.state_mut();
        app.panel.params.prompt = "a lighthouse".into();
        app.panel.params.steps = 3;
        app.panel.params.seed = 77;
        app.panel.params.strength = 0.6;
        app.panel.seed_locked = true;
    }
    let app_record = |h: &mut Harness<'static, PentimentoApp>, staged: usize, name: &str| {
        h.get_by_label("Generate").click();
        h.step();
        pump_until(h, 120, |app| !app.is_running());
        h.state_mut().doc.select_staged(staged);
        let out = dir.join(format!("app-{name}.png"));
        h.state_mut().save_png(&out);
        let info = pentimento::png_info::parse_image(&std::fs::read(&out).unwrap()).unwrap();
        h.get_by_label("Discard").click();
        h.step();
        info.record.unwrap()
    };
    let cli_record = |name: &str, extra: &[&str]| {
        let out = dir.join(format!("cli-{name}.png"));
        let mut args = vec![
            "generate",
            "--model",
            fixture("tiny-sd15.safetensors")
                .to_str()
                .unwrap()
                .to_owned()
                .leak(),
            "--prompt",
            "a lighthouse",
            "--steps",
            "3",
            "--seed",
            "77",
            "--strength",
            "0.6",
            "--init-image",
            source.to_str().unwrap().to_owned().leak(),
            "--out",
            out.to_str().unwrap().to_owned().leak(),
        ];
        args.extend_from_slice(extra);
        let o = crate::common::run_cli(&args, &dir.join("cache"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let read = |path: &std::path::Path| {
        pentimento::png_info::parse_image(&std::fs::read(path).unwrap())
            .unwrap()
            .record
            .unwrap()
    };
    let same = |app: &pentimento::png_info::ImageRecord,
                cli: &pentimento::png_info::ImageRecord| {
        let (a, c) = (
            serde_json::to_value(app).unwrap(),
            serde_json::to_value(cli).unwrap(),
        );
        for (field, value) in c.as_object().unwrap() {
            assert_eq!(&a[field], value, "field {field}");
        }
        assert_eq!(a, c);
    };

    // img2img
    let app = app_record(&mut h, 0, "img2img");
    let cli = read(&cli_record("img2img", &[]));
    assert_eq!(app.kind, "img2img");
    assert!(app.model_hash.is_some());
    same(&app, &cli);

    // inpainting, whole image
    h.get_by_label("Fill mask").click();
    h.step();
    let app = app_record(&mut h, 0, "inpaint");
    let cli = read(&cli_record(
        "inpaint",
        &["--mask", mask_file.to_str().unwrap()],
    ));
    assert_eq!(app.kind, "inpaint");
    assert!(app.inpaint.is_some());
    same(&app, &cli);

    // a batch of two: the second image (seed 78)
    h.state_mut().panel.batch_size = 2;
    let app = app_record(&mut h, 1, "batch");
    let out = cli_record(
        "batch",
        &["--mask", mask_file.to_str().unwrap(), "--batch-size", "2"],
    );
    let cli = read(&out.with_file_name("cli-batch-2.png"));
    assert_eq!(app.params.seed, 78);
    same(&app, &cli);
}

#[test]
fn the_vae_picker_reloads_with_an_external_vae() {
    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    h.get_by_label("VAE");
    h.state_mut()
        .set_vae(pentimento::engine::model::VaeChoice::File(fixture(
            "tiny-sd15-extvae.vae.pt",
        )));
    pump_until(
        &mut h,
        60,
        |app| matches!(&app.model, ModelStatus::Loaded(info) if info.vae.is_some()),
    );
    h.get_by_label_contains("VAE: tiny-sd15-extvae.vae.pt");
}

fn large_image() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("pentimento-large-{}.png", std::process::id()));
    if !path.exists() {
        let src = image::open(fixture("tiny-sd15-img2img.3-image.png")).unwrap();
        src.resize_exact(4000, 3000, image::imageops::FilterType::Triangle)
            .to_rgb8()
            .save(&path)
            .unwrap();
    }
    path
}

fn stroke(h: &mut Harness<'static, PentimentoApp>, frames: usize) {
    let c = canvas_centre();
    h.hover_at(c);
    h.step();
    h.drag_at(c);
    h.step();
    for i in 1..=frames {
        h.hover_at(c + egui::vec2(i as f32 * 4.0, (i as f32 * 0.3).sin() * 40.0));
        h.step();
    }
    h.drop_at(c + egui::vec2(frames as f32 * 4.0, 0.0));
    h.step();
}

#[test]
fn a_4000_by_3000_photo_opens_and_paints() {
    let mut h = harness(None);
    h.run_steps(2);
    h.state_mut().open_image(&large_image());
    h.run_steps(3);
    assert_eq!(h.state().doc.size(), (4000, 3000));
    h.state_mut().brush.size = 200.0;
    stroke(&mut h, 12);
    assert!(!h.state().doc.mask_is_empty());
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    assert!(h.state().doc.mask_is_empty());
}

/// Not a check: frame time while painting on a 4000×3000 image
/// (`cargo test --release --test gui measure_large_image_painting -- --ignored --nocapture`).
#[test]
#[ignore]
fn measure_large_image_painting() {
    let mut h = harness(None);
    h.run_steps(2);
    h.state_mut().open_image(&large_image());
    h.run_steps(3);
    h.state_mut().brush.size = 200.0;
    let frames = 60;
    let start = Instant::now();
    stroke(&mut h, frames);
    let per_frame = start.elapsed().as_secs_f64() * 1000.0 / (frames + 4) as f64;
    eprintln!("4000x3000 painting: {per_frame:.1} ms per frame (kittest, lavapipe)");
}

#[test]
fn dropping_a_png_on_the_prompt_panel_fills_it_and_keeps_the_image() {
    let mut h = harness(None);
    h.run_steps(3);
    let d = history_dir();
    std::fs::create_dir_all(&d).unwrap();
    let png = d.join("from-a1111.png");
    a1111_png(
        &png,
        "a lighthouse, (stormy sea:1.2)\nNegative prompt: blurry\nSteps: 31, Sampler: DPM++ 2M, \
         Schedule type: Karras, CFG scale: 6.5, Seed: 987654, Size: 640x448, Clip skip: 2",
    );
    h.state_mut()
        .open_image(&fixture("tiny-sd15-img2img.3-image.png"));
    h.run_steps(2);
    let before = h.state().doc.rgb();

    // Over the prompt panel: parameters only.
    drop_file(&mut h, png.clone(), Pos2::new(150.0, 400.0));
    let app = h.state();
    let p = &app.panel.params;
    assert_eq!(p.prompt, "a lighthouse, (stormy sea:1.2)");
    assert_eq!(p.negative_prompt, "blurry");
    assert_eq!((p.steps, p.seed, p.clip_skip), (31, 987654, 2));
    assert_eq!(p.sampler, "DPM++ 2M Karras");
    assert_eq!(p.cfg_scale, 6.5);
    assert_eq!((p.width, p.height), (640, 448));
    assert!(
        app.panel.seed_locked,
        "the file's seed is kept for the next run"
    );
    assert_eq!(
        app.doc.rgb().pixels,
        before.pixels,
        "the current image is kept"
    );
    assert!(app.status.contains("image kept"), "{}", app.status);
    // The panel shows it.
    assert!(h
        .query_all_by_value("a lighthouse, (stormy sea:1.2)")
        .next()
        .is_some());

    // Over the canvas: the file opens as the image, and its parameters come along.
    h.state_mut().panel.params.prompt = "something else".into();
    drop_file(&mut h, png, canvas_centre());
    let app = h.state();
    assert_eq!(app.doc.size(), (16, 8));
    assert_eq!(app.panel.params.prompt, "a lighthouse, (stormy sea:1.2)");

    // A PNG without parameters leaves the panel alone and says so.
    let plain = d.join("plain.png");
    image::RgbImage::new(4, 4).save(&plain).unwrap();
    drop_file(&mut h, plain, Pos2::new(150.0, 400.0));
    assert!(h.state().status.contains("no generation parameters"));
    assert_eq!(h.state().panel.params.seed, 987654);
}

#[test]
fn history_survives_a_restart_and_an_item_can_be_reused() {
    let dir = history_dir();
    std::fs::create_dir_all(&dir).unwrap();
    // Two results from an earlier session, as the app writes them.
    for (name, seed, prompt) in [
        ("000000000000001-0000-seed1234.png", 1234, "from yesterday"),
        ("000000000000002-0000-seed77.png", 77, "from this morning"),
    ] {
        let record = pentimento::png_info::ImageRecord {
            version: pentimento::png_info::VERSION.into(),
            kind: "txt2img".into(),
            params: pentimento::engine::GenerationParams {
                prompt: prompt.into(),
                seed,
                steps: 12,
                ..Default::default()
            },
            model: Some("tiny-sd15".into()),
            model_hash: None,
            vae: None,
            inpaint: None,
            prediction: None,
            source_image_sha256: None,
            sweep: None,
            loras: vec![],
            embeddings: vec![],
            controls: vec![],
        };
        let image = pentimento::engine::RgbImage::new(8, 8, vec![seed as u8; 192]).unwrap();
        pentimento::png_info::write_png(&dir.join(name), &image, &record).unwrap();
    }
    std::fs::write(dir.join("broken.png"), b"not a png").unwrap();

    let mut h = harness_with_history(None, dir);
    pump_until(&mut h, 20, |app| app.history.items.len() == 2);
    let app = h.state();
    assert_eq!(
        app.history.items[0].params.prompt, "from yesterday",
        "oldest first"
    );
    assert!(
        app.status.contains("broken.png"),
        "a bad file is reported, not fatal: {}",
        app.status
    );

    h.get_by_label("History: seed 1234").click();
    h.step();
    let p = &h.state().panel.params;
    assert_eq!(
        (p.prompt.as_str(), p.seed, p.steps),
        ("from yesterday", 1234, 12)
    );
    assert!(h.state().panel.seed_locked);

    // The grid view shows the same results, larger, and reuses them the same way.
    h.get_by_label("Grid view").click();
    h.run_steps(2);
    let buttons: Vec<_> = h.query_all_by_label("History: seed 77").collect();
    assert_eq!(buttons.len(), 2, "in the strip and in the grid");
    buttons[1].click();
    h.step();
    assert_eq!(h.state().panel.params.prompt, "from this morning");

    // The context menu takes the seed alone.
    h.state_mut().panel.params.prompt = "my own prompt".into();
    h.get_all_by_label("History: seed 1234")
        .next()
        .unwrap()
        .click_secondary();
    h.run_steps(2);
    h.get_by_label("Reuse seed only").click();
    h.step();
    let p = &h.state().panel.params;
    assert_eq!((p.prompt.as_str(), p.seed), ("my own prompt", 1234));
}

#[test]
fn the_model_library_lists_folders_downloads_from_the_hub_and_loads() {
    let server = crate::common::fake_hub::FakeHub::start();
    let root = history_dir();
    let folder = root.join("Stable-diffusion");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(
        fixture("tiny-sd15-inpainting.ckpt"),
        folder.join("tiny-sd15-inpainting.ckpt"),
    )
    .unwrap();
    let settings = root.join("library.json");
    std::fs::write(
        &settings,
        serde_json::json!({ "folders": [folder] }).to_string(),
    )
    .unwrap();
    let places = AppPlaces {
        history: Some(root.join("history")),
        library: LibraryPlaces {
            settings: Some(settings),
            hub_cache: Some(root.join("hub")),
            hub_endpoint: Some(server.endpoint.clone()),
        },
        session: None,
        autosave: None,
    };
    let mut h = harness_with_places(None, places);
    h.run_steps(2);
    h.get_by_label("Models…").click();
    pump_until(&mut h, 20, |app| {
        app.models.library().is_some_and(|l| !l.models.is_empty())
    });
    h.get_by_label("tiny-sd15-inpainting.ckpt");
    h.get_by_label("SD 1.x inpainting");

    // Download the fake hub's repository: progress, then it joins the list.
    h.get_by_label("Download").focus();
    h.get_by_label("Download")
        .type_text(crate::common::fake_hub::REPO);
    h.step();
    h.get_by_label("Get").click();
    h.step();
    assert!(h.state().models.is_downloading());
    pump_until(&mut h, 30, |app| {
        !app.models.is_downloading()
            && !app.models.is_scanning()
            && app.models.library().is_some_and(|l| l.models.len() == 2)
    });
    assert!(
        h.state().models.message.starts_with("downloaded"),
        "{}",
        h.state().models.message
    );
    h.get_by_label(crate::common::fake_hub::REPO);

    // Load the downloaded one from the list: the status bar shows its memory.
    let rows: Vec<_> = h.query_all_by_label("Load").collect();
    assert_eq!(rows.len(), 2);
    let names: Vec<String> = h
        .state()
        .models
        .library()
        .unwrap()
        .models
        .iter()
        .map(|m| m.name.clone())
        .collect();
    let hub_row = names
        .iter()
        .position(|n| n == crate::common::fake_hub::REPO)
        .unwrap();
    rows[hub_row].click();
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    let ModelStatus::Loaded(info) = &h.state().model else {
        unreachable!()
    };
    assert!(info.path.ends_with(crate::common::fake_hub::COMMIT));
    assert!(info.memory_bytes > 1_000_000, "{}", info.memory_bytes);
    let shown = format!(
        "· {} ·",
        pentimento::engine::model::inspect::human_size(info.memory_bytes)
    );
    h.get_by_label_contains(&shown);
}

/// A fast circle: twenty positions reported within two frames, as a quick hand gives them. The
/// stroke follows every one from the press, so the mask is a closed ring, round and even.
#[test]
fn a_fast_circle_paints_a_closed_round_ring() {
    let mut h = harness(None);
    h.run_steps(3);
    let c = canvas_centre();
    let (r, n) = (140.0f32, 20usize);
    let at = |i: usize| {
        let a = i as f32 / n as f32 * std::f32::consts::TAU;
        c + egui::vec2(r * a.cos(), r * a.sin())
    };
    let primary = |pos, pressed| egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: Modifiers::NONE,
    };
    h.input_mut().events.push(egui::Event::PointerMoved(at(0)));
    h.step();
    h.input_mut().events.push(primary(at(0), true));
    for frame in 0..2 {
        for k in 1..=n / 2 {
            let i = frame * n / 2 + k;
            h.input_mut().events.push(egui::Event::PointerMoved(at(i)));
        }
        h.step();
    }
    h.input_mut().events.push(primary(at(n), false));
    h.step();

    let doc = &h.state().doc;
    let (w, ht) = doc.size();
    let mask = doc.mask_bytes();
    let painted: Vec<(f32, f32)> = (0..w * ht)
        .filter(|&i| mask[i] > 127)
        .map(|i| ((i % w) as f32 + 0.5, (i / w) as f32 + 0.5))
        .collect();
    assert!(
        painted.len() > 1000,
        "a ring was painted: {}",
        painted.len()
    );
    let (cx, cy) = painted
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0, y + p.1));
    let (cx, cy) = (cx / painted.len() as f32, cy / painted.len() as f32);
    // Per degree of angle around the centre: the ring's inner and outer radius.
    let mut inner = [f32::MAX; 360];
    let mut outer = [0f32; 360];
    for &(x, y) in &painted {
        let (dx, dy) = (x - cx, y - cy);
        let bin = ((dy.atan2(dx).to_degrees() + 360.0) as usize) % 360;
        let d = dx.hypot(dy);
        inner[bin] = inner[bin].min(d);
        outer[bin] = outer[bin].max(d);
    }
    assert!(
        outer.iter().all(|&o| o > 0.0),
        "the ring has a gap at {:?}°",
        outer.iter().position(|&o| o == 0.0)
    );
    let spread = |v: &[f32]| {
        let max = v.iter().cloned().fold(f32::MIN, f32::max);
        let min = v.iter().cloned().fold(f32::MAX, f32::min);
        (max - min) / max
    };
    // A 20-gon's edges dip 1.2 % of the radius; one position per frame (the old way) made
    // a triangle. The ring's edges are round within 3 %.
    assert!(
        spread(&outer) < 0.03,
        "outer edge not round: {}",
        spread(&outer)
    );
    assert!(
        spread(&inner) < 0.06,
        "inner edge not round: {}",
        spread(&inner)
    );
}

/// Shift+click draws a straight line from where the last stroke ended, as in Krita.
#[test]
fn shift_click_draws_a_line_from_the_last_stroke() {
    let mut h = harness(None);
    h.run_steps(3);
    let c = canvas_centre();
    let click = |h: &mut Harness<'static, PentimentoApp>, pos: Pos2, modifiers: Modifiers| {
        h.input_mut().events.push(egui::Event::PointerMoved(pos));
        for pressed in [true, false] {
            h.input_mut().events.push(egui::Event::PointerButton {
                pos,
                button: egui::PointerButton::Primary,
                pressed,
                modifiers,
            });
        }
        h.step();
    };
    let painted = |h: &Harness<'static, PentimentoApp>| {
        h.state()
            .doc
            .mask_bytes()
            .iter()
            .filter(|&&m| m > 127)
            .count()
    };
    click(&mut h, c - egui::vec2(150.0, 0.0), Modifiers::NONE);
    let dab = painted(&h);
    assert!(dab > 0, "a click paints one dab");
    click(&mut h, c + egui::vec2(150.0, 0.0), Modifiers::SHIFT);
    let line = painted(&h);
    // The line is about 300 screen px long and one brush wide: many dabs' worth.
    assert!(line > dab * 6, "{dab} → {line}");
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    assert_eq!(painted(&h), dab, "the line is one undo step");
}

/// "Open model…" on a file that is not a model says so and keeps the model that was loaded.
#[test]
fn opening_a_non_model_keeps_the_loaded_model() {
    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    let notes = std::env::temp_dir().join(format!(
        "pentimento-notes-{}.safetensors",
        std::process::id()
    ));
    std::fs::write(&notes, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}       ").unwrap();
    h.state_mut().load_model(notes.clone());
    pump_until(&mut h, 60, |app| {
        !matches!(app.model, ModelStatus::Loading { .. })
    });
    let app = h.state();
    assert!(
        matches!(app.model, ModelStatus::Loaded(_)),
        "the model was unloaded"
    );
    assert!(
        app.status.contains("the current model stays loaded"),
        "{}",
        app.status
    );
    // And it still generates.
    assert!(h.query_by_label("Generate").is_some());
    let _ = std::fs::remove_file(notes);
}

/// Where the system shows no file dialog (no portal, no zenity: as under this test), File →
/// Open image offers a path box instead of doing nothing.
#[test]
fn without_system_dialogs_a_path_box_opens_the_file() {
    let mut h = harness(None);
    h.run_steps(2);
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Open image…").click();
    h.step();
    pump_until(&mut h, 20, |app| app.status.contains("no file dialogs"));
    h.run_steps(2);
    let image = fixture("tiny-sd15-img2img.3-image.png");
    h.get_by_label("No file dialog is available on this system. Path:");
    h.get_by_role(egui::accesskit::Role::TextInput)
        .type_text(image.to_str().unwrap());
    h.run_steps(2);
    h.get_by_label("OK").click();
    h.run_steps(3);
    assert_eq!(h.state().doc.size(), (128, 128), "{}", h.state().status);
}

/// What users of other tools reach for: Ctrl+Enter generates from the prompt field, the staged
/// result's seed is shown and reusable, Enter accepts, the zoom is shown, and the welcome card
/// closes.
#[test]
fn keyboard_and_staging_conveniences() {
    let mut h = harness(None);
    h.run_steps(2);
    h.get_by_label("Close").click();
    h.run_steps(2);
    assert!(
        h.query_by_label("Welcome to Pentimento").is_none(),
        "the card closed"
    );
    assert!(
        h.query_by_label_contains(" %").is_some(),
        "the zoom is shown"
    );

    h.state_mut().load_model(fixture("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    {
        let app = h.state_mut();
        app.panel.params.width = 64;
        app.panel.params.height = 64;
        app.panel.params.steps = 2;
        app.panel.params.seed = 1234567890;
        app.panel.seed_locked = true;
    }
    h.get_by_label("Prompt").focus();
    h.get_by_label("Prompt").type_text("a cat");
    h.key_press_modifiers(Modifiers::COMMAND, Key::Enter);
    h.step();
    assert!(h.state().is_running(), "Ctrl+Enter generated");
    assert_eq!(
        h.state().panel.params.prompt,
        "a cat",
        "and typed no newline"
    );
    pump_until(&mut h, 120, |app| !app.doc.staged().is_empty());
    h.run_steps(2);
    assert!(
        h.query_by_label("seed 1234567890").is_some(),
        "the staged seed is shown"
    );
    h.state_mut().panel.seed_locked = false;
    h.get_by_label("Reuse").click();
    h.step();
    assert!(h.state().panel.seed_locked);
    assert_eq!(h.state().panel.params.seed, 1234567890);
    // Enter accepts (the prompt field lost the keyboard to the button).
    h.key_press(Key::Enter);
    h.run_steps(2);
    assert!(h.state().doc.staged().is_empty(), "Enter accepted");
    assert!(h.state().doc.has_image());
}

/// `pentimento IMAGE…` (the desktop entry's `%F`): the first image opens, the rest are named.
#[test]
fn images_named_on_the_command_line_open() {
    let mut h = harness(None);
    h.run_steps(2);
    let image = fixture("tiny-sd15-img2img.3-image.png");
    h.state_mut().open_images(&[image.clone(), image]);
    h.run_steps(2);
    assert_eq!(h.state().doc.size(), (128, 128));
    assert!(
        h.state().status.contains("not opened"),
        "{}",
        h.state().status
    );
}

/// The prompt and settings of the last Generate are there at the next start.
#[test]
fn prompt_and_settings_are_remembered_between_runs() {
    let history = history_dir();
    let mut h = harness_with_history(Some("tiny-sd15.safetensors"), history.clone());
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    {
        let app = h.state_mut();
        app.panel.params.width = 64;
        app.panel.params.height = 64;
        app.panel.params.steps = 3;
        app.panel.params.sampler = "DDIM".into();
    }
    h.get_by_label("Prompt").focus();
    h.get_by_label("Prompt").type_text("a lighthouse at dusk");
    h.step();
    h.get_by_label("Generate").click();
    h.step();
    pump_until(&mut h, 120, |app| !app.is_running());
    drop(h);

    let h = harness_with_history(None, history);
    let p = &h.state().panel.params;
    assert_eq!(p.prompt, "a lighthouse at dusk");
    assert_eq!((p.width, p.height, p.steps), (64, 64, 3));
    assert_eq!(p.sampler, "DDIM");
}

/// A session that ends without a clean quit (a crash, a kill) leaves its autosave; the next
/// start offers it, and Restore brings back the canvas and mask as they were.
#[test]
fn an_unclean_exit_leaves_an_autosave_the_next_start_restores() {
    let history = history_dir();
    let autosave = history.with_extension("autosave.pentimento");
    let _ = std::fs::remove_file(&autosave);
    let mut h = harness_with_history(None, history.clone());
    h.run_steps(2);
    let c = canvas_centre();
    h.input_mut().events.push(egui::Event::PointerMoved(c));
    for pressed in [true, false] {
        h.input_mut().events.push(egui::Event::PointerButton {
            pos: c,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: Modifiers::NONE,
        });
    }
    h.step();
    let painted = h.state().doc.mask_bytes().to_vec();
    assert!(painted.iter().any(|&m| m > 0));
    let start = Instant::now();
    while !autosave.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no autosave written"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(100));
    }
    // Written atomically: once there, it is whole.
    std::thread::sleep(Duration::from_millis(300));
    // No on_exit: the process "died".
    drop(h);

    let mut h = harness_with_history(None, history);
    h.run_steps(2);
    assert!(h.state().restore_offer.is_some());
    h.get_by_label("Restore").click();
    h.run_steps(2);
    assert!(h.state().restore_offer.is_none());
    assert_eq!(
        h.state().doc.mask_bytes(),
        &painted[..],
        "the mask came back"
    );
    assert!(
        h.state().status.contains("restored"),
        "{}",
        h.state().status
    );
}

/// Save document, then open it: image, mask and prompt settings come back.
#[test]
fn a_saved_document_opens_with_its_mask() {
    let mut h = harness(None);
    h.run_steps(2);
    h.state_mut()
        .open_image(&fixture("tiny-sd15-img2img.3-image.png"));
    h.state_mut()
        .execute(pentimento::ui::commands::Command::FillMask);
    h.run_steps(2);
    let doc =
        std::env::temp_dir().join(format!("pentimento-doc-{}.pentimento", std::process::id()));
    h.get_by_label("Prompt").focus();
    h.get_by_label("Prompt").type_text("a quiet harbour");
    h.run_steps(2);
    h.state_mut()
        .execute(pentimento::ui::commands::Command::SaveDocument(doc.clone()));
    let (rgba, mask) = (
        h.state().doc.rgba().to_vec(),
        h.state().doc.mask_bytes().to_vec(),
    );
    h.state_mut()
        .execute(pentimento::ui::commands::Command::ClearMask);
    h.state_mut().panel.params.prompt.clear();
    h.state_mut().open_image(&doc);
    h.run_steps(2);
    assert_eq!(
        h.state().panel.params.prompt,
        "a quiet harbour",
        "the prompt came back too"
    );
    assert_eq!(h.state().doc.rgba(), &rgba[..]);
    assert_eq!(
        h.state().doc.mask_bytes(),
        &mask[..],
        "{}",
        h.state().status
    );
    let _ = std::fs::remove_file(doc);
}

/// File → New canvas with a size preset, undoable.
#[test]
fn file_new_canvas_with_a_preset_size() {
    let mut h = harness(None);
    h.run_steps(2);
    h.state_mut()
        .open_image(&fixture("tiny-sd15-img2img.3-image.png"));
    h.run_steps(2);
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("New canvas").hover();
    h.run_steps(2);
    h.get_by_label("768 × 768").click();
    h.run_steps(2);
    assert_eq!(h.state().doc.size(), (768, 768));
    assert!(!h.state().doc.has_image());
    assert_eq!(h.state().panel.params.width, 768);
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    assert_eq!(h.state().doc.size(), (128, 128), "the old canvas is back");
    assert!(h.state().doc.has_image());
}

/// The VAE menu says which VAE decodes now.
#[test]
fn the_vae_menu_shows_what_is_in_use() {
    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    h.get_by_label("VAE").click();
    h.run_steps(2);
    assert!(h.query_by_label("in use: the model's own").is_some());
}

/// Quitting with work not saved to a file keeps it for the next start; quitting with nothing
/// new leaves nothing to restore. A second window never takes the first one's autosave.
#[test]
fn quitting_with_unsaved_work_keeps_it_for_the_next_start() {
    use eframe::App;
    let history = history_dir();
    let autosave = history.with_extension("autosave.pentimento");
    let _ = std::fs::remove_file(&autosave);
    // Nothing new: a clean quit leaves nothing.
    let mut h = harness_with_history(None, history.clone());
    h.run_steps(2);
    h.state_mut().on_exit();
    drop(h);
    assert!(!autosave.exists());

    let mut h = harness_with_history(None, history.clone());
    h.run_steps(2);
    // A second window over the same data folder while the first runs.
    let second = harness_with_history(None, history.clone());
    h.state_mut()
        .execute(pentimento::ui::commands::Command::FillMask);
    h.run_steps(2);
    h.state_mut().on_exit();
    drop(h);
    drop(second);
    assert!(autosave.exists(), "the unsaved mask was kept");

    let mut h = harness_with_history(None, history);
    h.run_steps(2);
    assert!(h.state().restore_offer.is_some());
    h.get_by_label("Restore").click();
    h.run_steps(2);
    assert!(h.state().doc.mask_bytes().iter().all(|&m| m == 255));
}

/// A `<lora:…>` tag the app cannot find stops Generate with a message naming it: never a
/// picture made without it.
#[test]
fn an_unknown_lora_in_the_prompt_is_named_not_ignored() {
    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    h.get_by_label("Prompt").focus();
    h.get_by_label("Prompt")
        .type_text("a heron <lora:nowhere_to_be_found:0.8>");
    h.step();
    h.get_by_label("Generate").click();
    h.run_steps(2);
    assert!(!h.state().is_running());
    assert!(
        h.state()
            .status
            .contains("no LoRA named \"nowhere_to_be_found\""),
        "{}",
        h.state().status
    );
}

/// An image wider than the GPU's largest texture is refused with a message, not a crash (a
/// hostile run opened an 8193×1 PNG; wgpu here takes 8192, this test opens the 16 384 px the
/// decoder allows).
#[test]
fn an_image_wider_than_the_gpu_shows_is_refused() {
    let mut h = harness(None);
    h.run_steps(2);
    let path = std::env::temp_dir().join(format!("pentimento-wide-{}.png", std::process::id()));
    image::RgbImage::from_pixel(16384, 1, image::Rgb([1, 2, 3]))
        .save(&path)
        .unwrap();
    h.state_mut().open_image(&path);
    h.run_steps(2);
    assert!(
        h.state().status.contains("larger than this GPU shows"),
        "{}",
        h.state().status
    );
    assert_eq!(h.state().doc.size(), (512, 512));
    let _ = std::fs::remove_file(path);
}

/// The LoRAs section lists the LoRA files beside the library's model folders (AUTOMATIC1111's
/// `models/Lora`), adds one to the prompt as a tag with one click, and the job applies it: the
/// result's record names it.
#[test]
fn a_lora_from_the_library_is_added_and_applied() {
    let history = history_dir();
    let root = history.with_extension("webui");
    let checkpoints = root.join("models/Stable-diffusion");
    let loras = root.join("models/Lora");
    std::fs::create_dir_all(&checkpoints).unwrap();
    std::fs::create_dir_all(&loras).unwrap();
    // The LoRA as a trainer leaves it: kohya's metadata in the header, a preview beside it.
    with_metadata(
        &fixture("extra/loras/ink_kohya.safetensors"),
        &loras.join("ink_kohya.safetensors"),
        &serde_json::json!({
            "ss_tag_frequency": serde_json::json!({"10_ink": {"inkstyle": 50, "heron": 20}}).to_string(),
            "ss_output_name": "ink_v1"
        }),
    );
    image::RgbImage::from_pixel(64, 64, image::Rgb([30, 140, 60]))
        .save(loras.join("ink_kohya.preview.png"))
        .unwrap();
    // AUTOMATIC1111's embeddings folder at the web UI's root.
    std::fs::create_dir_all(root.join("embeddings")).unwrap();
    std::fs::copy(
        fixture("extra/embeddings/murkyglow.safetensors"),
        root.join("embeddings/murkyglow.safetensors"),
    )
    .unwrap();
    let settings = history.with_extension("library.json");
    let mut library = pentimento::library::settings::LibrarySettings::default();
    library.add(&checkpoints).unwrap();
    library.save(&settings).unwrap();
    let mut h = harness_with_history(Some("tiny-sd15.safetensors"), history);
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    {
        let app = h.state_mut();
        app.panel.params.width = 64;
        app.panel.params.height = 64;
        app.panel.params.steps = 2;
        app.panel.params.prompt = "a heron".into();
    }
    h.run_steps(2);
    h.get_by_label("LoRAs").click();
    h.run_steps(2);
    h.get_by_label("+ ink_kohya").click();
    h.run_steps(2);
    assert_eq!(h.state().panel.params.prompt, "a heron <lora:ink_kohya:1>");
    h.get_by_label("LoRAs (1 in the prompt)");
    // Its trigger words, most frequent first: a click adds one.
    h.get_by_label("inkstyle").click();
    h.run_steps(2);
    assert_eq!(
        h.state().panel.params.prompt,
        "a heron <lora:ink_kohya:1>, inkstyle"
    );
    // The embeddings: "−" puts one in the negative prompt.
    h.get_by_label("Embeddings (1)").click();
    h.run_steps(2);
    h.get_by_label("−").click();
    h.run_steps(2);
    assert_eq!(h.state().panel.params.negative_prompt, "murkyglow");
    h.state_mut().status = String::new();
    h.run_steps(2);
    h.snapshot("lora_browser");
    h.get_by_label("Generate").click();
    pump_until(&mut h, 120, |app| !app.history.items.is_empty());
    let record = h.state().history.items[0].record.clone().unwrap();
    assert_eq!(record.loras.len(), 1, "{}", h.state().status);
    assert_eq!(record.loras[0].name, "ink_kohya");
    assert_eq!(record.embeddings.len(), 1, "{}", h.state().status);
    let _ = std::fs::remove_dir_all(root);
}

/// A copy of the safetensors file `from` at `to` with `metadata` as its `__metadata__`.
fn with_metadata(from: &std::path::Path, to: &std::path::Path, metadata: &serde_json::Value) {
    let bytes = std::fs::read(from).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"] = metadata.clone();
    let header = serde_json::to_vec(&header).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(to, out).unwrap();
}
