//! The engine thread on its own: events in order, previews, cancel, errors as events.

mod common;

use std::time::Duration;

use common::fixture;
use pentimento::engine::model::LoadOptions;
use pentimento::engine::worker::{Event, JobInput, Worker};
use pentimento::engine::GenerationParams;

fn until(worker: &Worker, mut f: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut seen = vec![];
    loop {
        let e = worker
            .recv_timeout(Duration::from_secs(120))
            .expect("no event within 2 minutes");
        let stop = f(&e);
        seen.push(e);
        if stop {
            return seen;
        }
    }
}

fn params() -> GenerationParams {
    GenerationParams {
        prompt: "a cat".into(),
        steps: 3,
        width: 64,
        height: 64,
        seed: 1,
        ..Default::default()
    }
}

#[test]
fn previews_come_from_taesd_when_present() {
    let mut worker = Worker::spawn(|| {});
    worker.load_model(fixture("tiny-sd15.safetensors"), LoadOptions::cpu());
    until(&worker, |e| matches!(e, Event::ModelLoaded { .. }));

    let id = worker.generate(params(), JobInput::Text);
    let events = until(&worker, |e| {
        matches!(e, Event::Done { .. } | Event::Failed { .. })
    });
    let previews: Vec<(usize, usize)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Preview { id: i, image } if *i == id => Some((image.width, image.height)),
            _ => None,
        })
        .collect();
    assert_eq!(
        previews,
        vec![(8, 8); 3],
        "one latent-projection preview per step"
    );

    worker.set_preview_decoder(Some(fixture("taesd")));
    let id = worker.generate(params(), JobInput::Text);
    let events = until(&worker, |e| {
        matches!(e, Event::Done { .. } | Event::Failed { .. })
    });
    let previews: Vec<(usize, usize)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Preview { id: i, image } if *i == id => Some((image.width, image.height)),
            _ => None,
        })
        .collect();
    assert_eq!(previews, vec![(64, 64); 3], "full-size TAESD previews");
    assert!(matches!(events.last(), Some(Event::Done { .. })));
}

#[test]
fn errors_are_events_and_the_worker_survives() {
    let mut worker = Worker::spawn(|| {});
    let id = worker.generate(params(), JobInput::Text);
    let events = until(&worker, |e| matches!(e, Event::Failed { .. }));
    assert!(matches!(events.last(), Some(Event::Failed { id: Some(i), .. }) if *i == id));
    worker.load_model(fixture("no-such-model.safetensors"), LoadOptions::cpu());
    let events = until(&worker, |e| matches!(e, Event::Failed { .. }));
    assert!(
        matches!(events.last(), Some(Event::Failed { id: None, message }) if message.contains("no such file"))
    );
    worker.load_model(fixture("tiny-sd15.safetensors"), LoadOptions::cpu());
    until(&worker, |e| matches!(e, Event::ModelLoaded { .. }));
    let id = worker.generate(params(), JobInput::Text);
    worker.cancel(id);
    let events = until(&worker, |e| {
        matches!(e, Event::Cancelled { .. } | Event::Done { .. })
    });
    assert!(matches!(events.last(), Some(Event::Cancelled { .. })));
}
