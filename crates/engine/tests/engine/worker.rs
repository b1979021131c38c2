//! The engine thread on its own: events in order, previews, cancel, errors as events.

use std::time::Duration;

use crate::common::fixture;
use pentimento_engine::model::LoadOptions;
use pentimento_engine::worker::{Event, Worker};
use pentimento_engine::GenerationParams;
use pentimento_engine::{Job, JobKind};

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

/// The previews of job `id` (step, width, height) until its last step's preview and its end.
fn previews_of(worker: &Worker, id: u64, steps: usize) -> Vec<(usize, usize, usize)> {
    let mut previews = vec![];
    let mut done = false;
    until(worker, |e| {
        match e {
            Event::Preview { id: i, step, image } if *i == id => {
                previews.push((*step, image.width, image.height))
            }
            Event::Done { id: i, .. } if *i == id => done = true,
            Event::Failed { message, .. } => panic!("{message}"),
            _ => {}
        }
        done && previews.last().is_some_and(|p| p.0 == steps)
    });
    previews
}

#[test]
fn previews_come_from_taesd_when_present() {
    let mut worker = Worker::spawn(|| {});
    worker.load_model(fixture("tiny-sd15.safetensors"), LoadOptions::cpu());
    until(&worker, |e| matches!(e, Event::ModelLoaded { .. }));

    let id = worker.generate(Job::new(JobKind::Txt2Img, params()));
    let previews = previews_of(&worker, id, 3);
    assert!(
        previews.iter().all(|&(_, w, h)| (w, h) == (8, 8)),
        "latent-projection previews: {previews:?}"
    );
    assert!(
        previews.windows(2).all(|p| p[0].0 < p[1].0),
        "newest last: {previews:?}"
    );

    worker.set_preview_decoder(Some(fixture("taesd")));
    let id = worker.generate(Job::new(JobKind::Txt2Img, params()));
    let previews = previews_of(&worker, id, 3);
    assert!(
        previews.iter().all(|&(_, w, h)| (w, h) == (64, 64)),
        "full-size TAESD previews: {previews:?}"
    );

    // A folder that is not TAESD is a notice; the model stays loaded and previews go on.
    worker.set_preview_decoder(Some(fixture("tiny-sd15/unet")));
    until(&worker, |e| matches!(e, Event::Notice { .. }));
    let id = worker.generate(Job::new(JobKind::Txt2Img, params()));
    let previews = previews_of(&worker, id, 3);
    assert!(previews.iter().all(|&(_, w, h)| (w, h) == (8, 8)));
}

#[test]
fn errors_are_events_and_the_worker_survives() {
    let mut worker = Worker::spawn(|| {});
    let id = worker.generate(Job::new(JobKind::Txt2Img, params()));
    let events = until(&worker, |e| matches!(e, Event::Failed { .. }));
    assert!(matches!(events.last(), Some(Event::Failed { id: Some(i), .. }) if *i == id));
    worker.load_model(fixture("no-such-model.safetensors"), LoadOptions::cpu());
    // Refused from its path alone, before any model is freed.
    let events = until(&worker, |e| matches!(e, Event::ModelRejected { .. }));
    assert!(
        matches!(events.last(), Some(Event::ModelRejected { message, .. }) if message.contains("no such file"))
    );
    worker.load_model(fixture("tiny-sd15.safetensors"), LoadOptions::cpu());
    until(&worker, |e| matches!(e, Event::ModelLoaded { .. }));
    let id = worker.generate(Job::new(JobKind::Txt2Img, params()));
    worker.cancel(id);
    let events = until(&worker, |e| {
        matches!(e, Event::Cancelled { .. } | Event::Done { .. })
    });
    assert!(matches!(events.last(), Some(Event::Cancelled { .. })));
}

/// A load reports its progress in whole percents, in order, up to all of the weights, for a
/// single file, a diffusers folder and a `.ckpt`.
#[test]
fn model_loads_report_their_progress() {
    let worker = Worker::spawn(|| {});
    for model in [
        "tiny-sd15.safetensors",
        "tiny-sd15",
        "tiny-sd15-inpainting.ckpt",
    ] {
        worker.load_model(fixture(model), LoadOptions::cpu());
        let events = until(&worker, |e| {
            matches!(e, Event::ModelLoaded { .. } | Event::Failed { .. })
        });
        assert!(
            matches!(events.last(), Some(Event::ModelLoaded { .. })),
            "{model}: {events:?}"
        );
        let fractions: Vec<f32> = events
            .iter()
            .filter_map(|e| match e {
                Event::ModelLoadProgress { progress } => progress.fraction(),
                _ => None,
            })
            .collect();
        assert!(fractions.len() > 10, "{model}: {fractions:?}");
        assert!(
            fractions.windows(2).all(|w| w[0] < w[1]),
            "{model}: not increasing {fractions:?}"
        );
        let last = *fractions.last().unwrap();
        assert!(last > 0.99, "{model}: the load ended at {last}");
    }
}

/// A cancel stops the job inside the network it is running, not at the next step: the step
/// callback lets every step continue, and the job still ends before its second step.
#[test]
fn a_cancel_interrupts_the_network_mid_pass() {
    use pentimento_engine::interrupt::{interruptible, Interrupt};
    use std::ops::ControlFlow;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let model = pentimento_engine::StableDiffusion::load(
        &fixture("tiny-sd15.safetensors"),
        &LoadOptions::cpu(),
    )
    .unwrap();
    let job = Job::new(JobKind::Txt2Img, params());
    // Cancelled as soon as the first step's callback ran: the second UNet call is cut short.
    let flag = Arc::new(AtomicBool::new(false));
    let check = flag.clone();
    let steps = AtomicUsize::new(0);
    let result = interruptible(Interrupt::new(move || check.load(Ordering::SeqCst)), || {
        model.run(&job, &mut |_| {
            steps.fetch_add(1, Ordering::SeqCst);
            flag.store(true, Ordering::SeqCst);
            ControlFlow::Continue(())
        })
    });
    assert!(
        matches!(result, Err(pentimento_engine::EngineError::Cancelled)),
        "{:?}",
        result.map(|r| r.len())
    );
    assert_eq!(steps.load(Ordering::SeqCst), 1, "no step after the cancel");
    // Without a cancel the same model runs the job whole.
    let done = interruptible(Interrupt::new(|| false), || {
        model.run(&job, &mut |_| ControlFlow::Continue(()))
    });
    assert_eq!(done.unwrap().len(), 1);
}

#[test]
fn a_file_that_is_not_a_model_leaves_the_loaded_one_working() {
    let mut worker = Worker::spawn(|| {});
    worker.load_model(fixture("tiny-sd15.safetensors"), LoadOptions::cpu());
    until(&worker, |e| matches!(e, Event::ModelLoaded { .. }));
    let dir = std::env::temp_dir().join(format!("pentimento-reject-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("notes.ckpt");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    worker.load_model(garbage, LoadOptions::cpu());
    let seen = until(&worker, |e| {
        matches!(e, Event::ModelRejected { .. } | Event::ModelLoading { .. })
    });
    assert!(
        matches!(seen.last(), Some(Event::ModelRejected { .. })),
        "{seen:?}"
    );
    let id = worker.generate(Job::new(JobKind::Txt2Img, params()));
    until(&worker, |e| match e {
        Event::Done { id: i, .. } => *i == id,
        Event::Failed { message, .. } => panic!("{message}"),
        _ => false,
    });
}
