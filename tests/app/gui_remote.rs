//! The app with its jobs on a server: a real `pentimento serve` process on 127.0.0.1 with an
//! API key, chosen through Settings → Backend. The same job gives the same pixels and record
//! on the server as on this computer; previews arrive while it samples; Cancel interrupts it
//! there; a wrong key or a dead address is said, and the app computes here again on request.

use eframe::egui::{Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use pentimento::ui::{ModelStatus, PentimentoApp};

use crate::common::serve_process::serve;
use crate::common::{fixture, temp_dir};
use crate::gui::{harness, pump_until};

const KEY: &str = "k3y-for-tests";

fn set_job(h: &mut Harness<'static, PentimentoApp>, steps: usize) {
    let app = h.state_mut();
    app.panel.params.width = 64;
    app.panel.params.height = 64;
    app.panel.params.steps = steps;
    app.panel.params.seed = 1234;
    app.panel.params.prompt = "a lighthouse at dusk".into();
    app.panel.seed_locked = true;
}

/// Replaces the text of the field labelled `label` (select all, type).
fn retype(h: &mut Harness<'static, PentimentoApp>, label: &str, text: &str) {
    h.get_by_label(label).focus();
    h.step();
    h.key_press_modifiers(Modifiers::COMMAND, Key::A);
    h.step();
    h.get_by_label(label).type_text(text);
    h.step();
}

fn connect(h: &mut Harness<'static, PentimentoApp>, url: &str, key: &str) {
    if h.query_by_label("Connect").is_none() {
        h.get_by_label("Settings").click();
        h.run_steps(2);
        h.get_by_label("Backend…").click();
        h.run_steps(6);
    }
    retype(h, "Address", url);
    retype(h, "API key", key);
    h.get_by_label("Connect").click();
    h.step();
}

fn is_server_ready(app: &PentimentoApp) -> bool {
    matches!(&app.model, ModelStatus::Server(s) if s.model.is_some() && s.kind.is_some())
}

#[test]
fn the_app_paints_on_a_server_as_it_paints_here() {
    let cache = temp_dir("gui-remote", "cache");
    let model = fixture("tiny-sd15.safetensors");
    let server = serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--model",
            model.to_str().unwrap(),
            "--api-key",
            KEY,
        ],
        &cache,
    );

    // Here first: the reference.
    let mut h = harness(Some("tiny-sd15.safetensors"));
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
    set_job(&mut h, 6);
    h.get_by_label("Generate").click();
    pump_until(&mut h, 120, |app| app.history.items.len() == 1);
    h.get_by_label("Discard").click();
    h.step();

    // A wrong key is said, and nothing can be generated.
    connect(&mut h, &server.url, "wrong");
    pump_until(&mut h, 30, |app| app.backend_panel.problem.is_some());
    let problem = h.state().backend_panel.problem.clone().unwrap();
    assert!(problem.contains("API key"), "{problem}");
    assert!(!h.state().model.is_ready());

    // The right key: the server's model is in use.
    connect(&mut h, &server.url, KEY);
    pump_until(&mut h, 30, is_server_ready);
    assert!(
        h.state().status.contains("tiny-sd15"),
        "{}",
        h.state().status
    );
    // (No snapshot: the window shows the server's port, which changes each run.)

    // The same job on the server: the same pixels and the same parameters.
    h.get_by_label("Generate").click();
    h.step();
    assert!(h.state().is_running());
    pump_until(&mut h, 120, |app| app.history.items.len() == 2);
    {
        let app = h.state();
        let (here, there) = (&app.history.items[0], &app.history.items[1]);
        assert_eq!(here.params, there.params);
        let differ = here
            .image
            .pixels
            .iter()
            .zip(&there.image.pixels)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differ, 0, "the server's image differs from this computer's");
        let record = there.record.as_ref().expect("the server's record");
        assert_eq!(record.model.as_deref(), Some("tiny-sd15"));
        assert_eq!(
            serde_json::to_value(record).unwrap(),
            serde_json::to_value(here.record.as_ref().unwrap()).unwrap(),
            "the server's record is the one made here"
        );
    }
    h.get_by_label("Discard").click();
    h.step();

    // A long job: previews come while it samples, and Cancel stops it on the server.
    set_job(&mut h, 400);
    h.get_by_label("Generate").click();
    h.step();
    let before = h.state().previews_received();
    pump_until(&mut h, 120, |app| app.previews_received() > before);
    h.get_by_label("Cancel").click();
    h.step();
    pump_until(&mut h, 60, |app| !app.is_running());
    assert_eq!(h.state().status, "cancelled");
    assert_eq!(h.state().history.items.len(), 2);
    // The server stopped too: it is idle at once, not 400 steps later.
    let health = |url: &str| -> serde_json::Value {
        let r = ureq::get(&format!("{url}/health"))
            .set("Authorization", &format!("Bearer {KEY}"))
            .call()
            .unwrap();
        serde_json::from_str(&r.into_string().unwrap()).unwrap()
    };
    let asked = std::time::Instant::now();
    while health(&server.url)["busy"] == true {
        assert!(asked.elapsed().as_secs() < 10, "the server still samples");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // Back to this computer: the model used here before loads again.
    h.get_by_label("This computer").click();
    pump_until(&mut h, 60, |app| {
        matches!(app.model, ModelStatus::Loaded(_))
    });
}

#[test]
fn a_dead_address_is_said_and_nothing_runs() {
    let mut h = harness(None);
    h.run_steps(2);
    // A port nothing listens on (discard), and an address that is not one.
    connect(&mut h, "http://127.0.0.1:9", "");
    pump_until(&mut h, 30, |app| app.backend_panel.problem.is_some());
    assert!(!h.state().model.is_ready());
    h.get_by_label("Generate").click();
    h.step();
    assert!(!h.state().is_running());
    connect(&mut h, "file:///etc/passwd", "");
    let problem = h.state().backend_panel.problem.clone().unwrap();
    assert!(problem.contains("http://"), "{problem}");
}
