//! Live mode through the UI: turned on with its checkbox, a colour stroke regenerates the
//! picture (img2img) at the reduced size in the background, the brush keeps painting while a
//! live job runs, a mask stroke regenerates only the masked region, Shift+Enter keeps the live
//! picture as a layer (transparent outside the mask) and Ctrl+Z takes it away again.

use eframe::egui::{self, Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use pentimento::ui::live::Placement;
use pentimento::ui::{ModelStatus, PentimentoApp};

use crate::gui::{canvas_centre, harness, pump_until};

fn stroke(h: &mut Harness<'static, PentimentoApp>, dy: f32) {
    let c = canvas_centre() + egui::vec2(-40.0, dy);
    h.hover_at(c);
    h.step();
    h.drag_at(c);
    h.step();
    for i in 1..=5 {
        h.hover_at(c + egui::vec2(i as f32 * 14.0, 0.0));
        h.step();
    }
    h.drop_at(c + egui::vec2(70.0, 0.0));
    h.step();
}

#[test]
fn live_mode_follows_strokes_and_keeps_a_picture_as_a_layer() {
    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    {
        let app = h.state_mut();
        app.panel.params.sampler = "LCM".into();
        app.panel.params.steps = 2;
        app.panel.params.cfg_scale = 1.0;
        app.panel.params.strength = 0.6;
        app.panel.params.seed = 7;
        app.panel.seed_locked = true;
    }
    h.get_by_label("Live").click();
    h.run_steps(2);
    assert!(h.state().live.enabled);
    h.get_by_label("Live preview");
    // A colour stroke on the blank 512² canvas: img2img at 256².
    h.key_press(Key::P);
    h.step();
    stroke(&mut h, 0.0);
    pump_until(&mut h, 60, |app| app.live.result.is_some());
    {
        let result = h.state().live.result.as_ref().unwrap();
        assert_eq!((result.image.width, result.image.height), (256, 256));
        assert_eq!(result.record.kind, "img2img");
        assert!(matches!(result.placement, Placement::Whole));
    }
    assert!(
        h.state().doc.staged().is_empty(),
        "live pictures are not staged"
    );
    // The brush is never held: a stroke while a live job runs paints at once.
    stroke(&mut h, 40.0);
    pump_until(&mut h, 10, |app| app.live.running_id().is_some());
    let before = h.state().doc.image_revision();
    stroke(&mut h, 80.0);
    assert_ne!(
        h.state().doc.image_revision(),
        before,
        "the stroke painted while the live job ran"
    );
    // The last stroke's picture arrives (the older job was cancelled or finished).
    let revision = h.state().doc.image_revision();
    pump_until(&mut h, 60, |app| {
        app.live.running_id().is_none()
            && app.live.result.is_some()
            && app.doc.image_revision() == revision
    });
    h.run_steps(30);
    pump_until(&mut h, 60, |app| app.live.running_id().is_none());
    // Shift+Enter keeps it; Ctrl+Z takes it away.
    let layers = h.state().doc.layers().len();
    h.key_press_modifiers(Modifiers::SHIFT, Key::Enter);
    h.run_steps(2);
    assert_eq!(h.state().doc.layers().len(), layers + 1);
    let top = h.state().doc.layers().last().unwrap();
    assert!(
        top.props.name.starts_with("Result · seed 7"),
        "{}",
        top.props.name
    );
    assert_eq!(top.record.as_ref().unwrap().params.seed, 7);
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run_steps(2);
    assert_eq!(h.state().doc.layers().len(), layers);
    // A mask stroke: inpainting, kept only where the mask is.
    h.key_press(Key::B);
    h.step();
    stroke(&mut h, -60.0);
    pump_until(&mut h, 60, |app| {
        app.live.running_id().is_none()
            && app
                .live
                .result
                .as_ref()
                .is_some_and(|r| r.record.kind == "inpaint")
    });
    assert!(matches!(
        h.state().live.result.as_ref().unwrap().placement,
        Placement::Masked(_)
    ));
    h.get_by_label("Keep as layer").click();
    h.run_steps(2);
    let top = h.state().doc.layers().last().unwrap();
    assert_eq!(top.rgba()[3], 0, "transparent outside the mask");
    assert!(
        top.rgba().chunks_exact(4).any(|p| p[3] == 255),
        "opaque inside it"
    );
    h.state_mut().status = String::new();
    // The measured time differs run to run: a fixed one for the picture.
    if let Some(r) = &mut h.state_mut().live.result {
        r.latency = std::time::Duration::from_millis(1500);
    }
    h.run_steps(3);
    h.snapshot("live_mode");
    // Off: the window goes and nothing more runs.
    h.get_by_label("Live").click();
    h.run_steps(2);
    assert!(!h.state().live.enabled);
    assert!(h.query_by_label("Live preview").is_none());
}
