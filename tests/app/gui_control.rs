//! ControlNet through the UI: a sketch on a paint layer becomes a scribble control layer in one
//! click (the sketch hidden, the layer's settings shown), its ControlNet is named by path, and
//! Generate sends it: the result records the unit and differs from the same job without it.

use eframe::egui::{self, Key};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use pentimento::document::LayerKind;
use pentimento::ui::{ModelStatus, PentimentoApp};

use crate::common::fixture;
use crate::gui::{canvas_centre, harness, pump_until};

fn sketch_stroke(h: &mut Harness<'static, PentimentoApp>) {
    let c = canvas_centre() + egui::vec2(-60.0, -30.0);
    h.hover_at(c);
    h.step();
    h.drag_at(c);
    h.step();
    for i in 1..=8 {
        h.hover_at(c + egui::vec2(i as f32 * 15.0, i as f32 * 8.0));
        h.step();
    }
    h.drop_at(c + egui::vec2(120.0, 64.0));
    h.step();
}

fn generate(h: &mut Harness<'static, PentimentoApp>) -> usize {
    let before = h.state().history.items.len();
    h.get_by_label("Generate").click();
    h.step();
    pump_until(h, 120, |app| app.history.items.len() > before);
    h.state().history.items.len()
}

#[test]
fn a_sketch_becomes_a_scribble_control_layer_that_steers_generate() {
    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    h.state_mut()
        .execute(pentimento::ui::commands::Command::NewCanvas(128, 128));
    {
        let app = h.state_mut();
        app.panel.params.steps = 4;
        app.panel.params.seed = 11;
        app.panel.seed_locked = true;
    }
    h.get_by_label("Prompt").focus();
    h.get_by_label("Prompt").type_text("a castle on a hill");
    h.step();

    // A sketch on its own layer.
    h.get_by_label("New paint layer").click();
    h.step();
    h.key_press(Key::P);
    h.step();
    sketch_stroke(&mut h);
    let sketch = h.state().doc.active_layer().id;
    assert!(h.state().doc.has_image(), "the sketch is on the canvas");

    // One click: the control layer, the sketch hidden, nothing in the picture.
    h.get_by_label("Control layer").click();
    h.run_steps(2);
    {
        let doc = &h.state().doc;
        let control = doc.active_layer();
        assert_eq!(control.kind, LayerKind::Control);
        let settings = control.props.control.as_ref().unwrap();
        assert_eq!(settings.module, "scribble");
        assert!(settings.model.is_none(), "no ControlNet folders here");
        let sketch_layer = doc.layers().iter().find(|l| l.id == sketch).unwrap();
        assert!(!sketch_layer.props.visible);
        assert!(!doc.has_image(), "control layers are not the picture");
        // White scribbles on black where the stroke went.
        let white = control
            .rgba()
            .chunks_exact(4)
            .filter(|p| p[0] == 255)
            .count();
        assert!(white > 20, "{white} white pixels");
    }
    assert!(
        h.state().status.contains("choose its ControlNet"),
        "{}",
        h.state().status
    );
    // Without a network Generate says what is missing.
    h.get_by_label("Generate").click();
    h.step();
    assert!(
        h.state().status.contains("no ControlNet model"),
        "{}",
        h.state().status
    );

    // Name the network by path.
    let cn = fixture("extra/controlnet/tiny-cn-a");
    h.get_by_label("Path").focus();
    h.get_by_label("Path").type_text(&cn.display().to_string());
    h.step();
    h.get_by_label("Use path").click();
    h.run_steps(2);
    let model = h
        .state()
        .doc
        .active_layer()
        .props
        .control
        .clone()
        .unwrap()
        .model;
    assert_eq!(model.as_deref(), Some(cn.as_path()));
    h.state_mut().status = "ready".into();
    h.run_steps(3);
    h.snapshot("control_layer_sketch");

    let n = generate(&mut h);
    let item = &h.state().history.items[n - 1];
    let (with_pixels, record) = (item.image.pixels.clone(), item.record.clone().unwrap());
    assert_eq!(
        record.kind, "txt2img",
        "the hidden sketch is not an init image"
    );
    assert_eq!(record.controls.len(), 1);
    assert_eq!(record.controls[0].model, "tiny-cn-a");
    assert_eq!(record.controls[0].module, "scribble");
    h.state_mut().status = "done".into();
    h.run_steps(3);
    h.snapshot("control_layer");
    h.get_by_label("Discard").click();
    h.step();

    // The same job with the layer unticked: another picture, no unit recorded.
    h.get_by_label("Use in generation").click();
    h.run_steps(2);
    let n = generate(&mut h);
    let without = &h.state().history.items[n - 1];
    assert!(without.record.as_ref().unwrap().controls.is_empty());
    assert_ne!(
        with_pixels, without.image.pixels,
        "the ControlNet changed nothing"
    );
    // One undo step takes the setting back.
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::Z);
    h.step();
    assert!(
        h.state()
            .doc
            .active_layer()
            .props
            .control
            .as_ref()
            .unwrap()
            .enabled
    );
}

/// A depth control layer from a picture: without Depth Anything the status says what to
/// download; with it (in the app's hub cache, as `models pull` leaves it) the map is made off
/// the UI thread and is what `pentimento preprocess depth` makes of the same picture.
#[test]
fn a_picture_becomes_a_depth_control_layer() {
    let mut h = harness(None);
    let picture = fixture("extra/depth/depth-square.png");
    h.state_mut()
        .execute(pentimento::ui::commands::Command::OpenImage(
            picture.clone(),
        ));
    h.run_steps(2);
    h.get_by_label("made with").click();
    h.run_steps(2);
    h.get_by_label("depth").click();
    h.run_steps(2);
    h.get_by_label("Control layer").click();
    h.run_steps(2);
    assert!(
        h.state()
            .status
            .contains("models pull depth-anything/Depth-Anything-V2-Small-hf"),
        "{}",
        h.state().status
    );
    // Depth Anything in the app's hub cache, as a download leaves it.
    let hub = h.state().history.dir().unwrap().with_extension("hub");
    let repo = hub.join("models--depth-anything--Depth-Anything-V2-Small-hf");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ] {
        std::fs::copy(
            fixture("extra/depth/tiny-depth-anything").join(f),
            snapshot.join(f),
        )
        .unwrap();
    }
    h.get_by_label("Control layer").click();
    h.step();
    assert!(
        h.state().status.contains("making a depth map"),
        "{}",
        h.state().status
    );
    pump_until(&mut h, 60, |app| {
        app.doc.active_layer().kind == LayerKind::Control
    });
    let layer = h.state().doc.active_layer();
    assert_eq!(
        layer.props.control.as_ref().unwrap().module,
        "depth_anything_v2"
    );
    let out = std::env::temp_dir().join(format!("pentimento-depth-gui-{}.png", std::process::id()));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(["preprocess", "depth"])
        .arg(&picture)
        .arg("--out")
        .arg(&out)
        .arg("--depth-model")
        .arg(fixture("extra/depth/tiny-depth-anything"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = image::open(&out).unwrap().to_rgba8().into_raw();
    assert_eq!(layer.rgba(), &want[..], "the app's depth map is the CLI's");
    std::fs::remove_file(&out).ok();
}
