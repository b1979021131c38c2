//! Layers through the UI: a result kept as a layer, a paint layer sketched on, hidden, faded,
//! merged, deleted and brought back, saved in a document and opened again; a history result
//! added as a layer; the model in use shown in the Models window.

use eframe::egui::{self, Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use pentimento::document::brush::Tool;
use pentimento::ui::{ModelStatus, PentimentoApp};

use crate::gui::{canvas_centre, harness, pump_until};

fn names(h: &Harness<'static, PentimentoApp>) -> Vec<String> {
    h.state()
        .doc
        .layers()
        .iter()
        .map(|l| l.props.name.clone())
        .collect()
}

/// A quick stroke across the canvas centre.
fn stroke(h: &mut Harness<'static, PentimentoApp>) {
    let c = canvas_centre();
    h.hover_at(c);
    h.run_steps(2);
    h.drag_at(c);
    h.run_steps(2);
    for i in 1..=6 {
        h.hover_at(c + egui::vec2(i as f32 * 10.0, 0.0));
        h.step();
    }
    h.drop_at(c + egui::vec2(60.0, 0.0));
    h.run_steps(2);
}

fn generate(h: &mut Harness<'static, PentimentoApp>) {
    h.get_by_label("Generate").click();
    h.run_steps(2);
    pump_until(h, 120, |app| !app.doc.staged().is_empty());
}

#[test]
fn results_and_sketches_are_layers() {
    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    {
        let app = h.state_mut();
        app.panel.params.width = 64;
        app.panel.params.height = 64;
        app.panel.params.steps = 4;
        app.panel.params.seed = 42;
        app.panel.seed_locked = true;
    }
    generate(&mut h);
    // While a result is staged the layer buttons wait for it.
    h.get_by_label("New paint layer").click();
    h.run_steps(2);
    assert_eq!(names(&h), ["Background"], "{}", h.state().status);
    h.get_by_label("Accept").click();
    h.run_steps(2);
    assert_eq!(names(&h), ["Background", "Result · seed 42"]);
    h.get_by_label("Result · seed 42");
    let result_pixels = h.state().doc.rgba().to_vec();

    // A paint layer: the colour brush is picked for it, the stroke lands on it alone.
    h.get_by_label("New paint layer").click();
    h.run_steps(2);
    assert_eq!(names(&h), ["Background", "Result · seed 42", "Paint 1"]);
    assert!(matches!(h.state().tool, Tool::ColorBrush(_)));
    stroke(&mut h);
    let painted = h.state().doc.rgba().to_vec();
    assert_ne!(painted, result_pixels, "the stroke shows");
    let result_layer: Vec<u8> = h.state().doc.layers()[1].rgba().to_vec();
    assert_eq!(
        &result_layer
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect::<Vec<_>>()[..],
        &result_pixels
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect::<Vec<_>>()[..],
        "the result layer is untouched"
    );

    // Hide it, paint on it (refused, said why), show it again.
    h.get_by_label("Hide Paint 1").click();
    h.run_steps(2);
    assert_eq!(h.state().doc.rgba(), &result_pixels[..]);
    stroke(&mut h);
    assert!(h.state().status.contains("hidden"), "{}", h.state().status);
    h.get_by_label("Show Paint 1").click();
    h.run_steps(2);
    assert_eq!(h.state().doc.rgba(), &painted[..]);

    // Merge down, undo, delete, undo: the picture is the same each time it should be.
    h.get_by_label("Merge down").click();
    h.run_steps(2);
    assert_eq!(names(&h), ["Background", "Result · seed 42"]);
    assert_eq!(h.state().doc.rgba(), &painted[..]);
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run_steps(2);
    assert_eq!(names(&h).len(), 3);
    h.get_by_label("Paint 1").click();
    h.run_steps(2);
    h.get_by_label("Delete layer").click();
    h.run_steps(2);
    assert_eq!(h.state().doc.rgba(), &result_pixels[..]);
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run_steps(2);
    assert_eq!(h.state().doc.rgba(), &painted[..]);

    // Move the paint layer under the result: the opaque result covers it.
    h.get_by_label("Move layer down").click();
    h.run_steps(2);
    assert_eq!(names(&h)[1], "Paint 1");
    assert_eq!(h.state().doc.rgba(), &result_pixels[..]);
    h.get_by_label("Move layer up").click();
    h.run_steps(2);

    // Saved and opened again, the layers are all there.
    let path = std::env::temp_dir().join(format!(
        "pentimento-layers-{}.pentimento",
        std::process::id()
    ));
    h.state_mut()
        .execute(pentimento::ui::commands::Command::SaveDocument(
            path.clone(),
        ));
    h.state_mut()
        .execute(pentimento::ui::commands::Command::NewCanvas(128, 128));
    h.run_steps(2);
    assert_eq!(names(&h), ["Background"]);
    h.state_mut().open_image(&path);
    h.run_steps(2);
    assert_eq!(names(&h), ["Background", "Result · seed 42", "Paint 1"]);
    assert_eq!(h.state().doc.rgba(), &painted[..]);
    assert_eq!(
        h.state().doc.record().map(|r| r.params.seed),
        Some(42),
        "the result layer keeps what made it"
    );
    // `pentimento info` reads the document's description without decoding a layer.
    let info = std::process::Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .arg("info")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    assert!(
        text.contains("Seed: 42") && text.contains("Layers, bottom first:"),
        "{text}"
    );
    assert!(text.contains("Paint \"Paint 1\""), "{text}");
    let _ = std::fs::remove_file(path);

    // A history result onto the canvas as a layer, from its context menu.
    h.get_by_label("History: seed 42").click_secondary();
    h.run_steps(2);
    h.get_by_label("Add to canvas as a layer").click();
    h.run_steps(2);
    assert_eq!(names(&h).len(), 4, "{}", h.state().status);
    assert_eq!(h.state().doc.rgba(), &result_pixels[..]);
}

#[test]
fn the_models_window_shows_the_model_in_use() {
    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    h.get_by_label("Models…").click();
    h.run_steps(3);
    h.get_by_label("In use: tiny-sd15.safetensors");
    // Not in the (empty) library: its folder can be added in one click.
    h.get_by_label("Add its folder").click();
    pump_until(&mut h, 30, |app| {
        app.models
            .library()
            .is_some_and(|lib| !lib.models.is_empty())
    });
    h.run_steps(3);
    h.get_by_label("in use");
}
