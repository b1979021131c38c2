//! The engine on its own thread: it owns the model and talks to the UI only through channels.
//! Requests go in; progress, previews, results and errors come out, each tagged with its job id
//! so that a late event of a cancelled job can be ignored. Cancelling takes effect within one
//! block of a network (see `interrupt`); the worker survives every job.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::image::RgbImage;
use super::interrupt::{interruptible, Interrupt};
pub use super::job::Generated;
use super::job::Job;
use super::model::taesd::Taesd;
use super::model::{LoadOptions, LoadProgress, ModelInfo, StableDiffusion};
use super::preview::PreviewThread;
use super::EngineError;

pub type JobId = u64;

/// Job ids handed out in order, and the cancel mark the thread running them reads: every job
/// up to the mark is cancelled (so cancelling a job also drops those queued before it).
#[derive(Debug)]
pub struct JobIds {
    next: JobId,
    mark: CancelMark,
}

/// The running side's view of a [`JobIds`]' cancel mark.
#[derive(Debug, Clone, Default)]
pub struct CancelMark(Arc<AtomicU64>);

impl JobIds {
    pub fn new() -> Self {
        Self {
            next: 1,
            mark: CancelMark::default(),
        }
    }

    /// The next job's id.
    pub fn issue(&mut self) -> JobId {
        let id = self.next;
        self.next += 1;
        id
    }

    /// Cancels job `id` and every job before it.
    pub fn cancel(&self, id: JobId) {
        self.mark.0.fetch_max(id, Ordering::SeqCst);
    }

    /// Cancels every job, issued or not (the handle is going away).
    pub fn cancel_all(&self) {
        self.mark.0.store(u64::MAX, Ordering::SeqCst);
    }

    pub fn mark(&self) -> CancelMark {
        self.mark.clone()
    }
}

impl Default for JobIds {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelMark {
    pub fn is_cancelled(&self, id: JobId) -> bool {
        self.0.load(Ordering::SeqCst) >= id
    }
}

#[derive(Debug, Clone)]
pub enum Request {
    LoadModel {
        path: PathBuf,
        options: LoadOptions,
    },
    /// Decode previews with TAESD from this folder (or weights file); `None`: the fast
    /// latent-to-RGB projection.
    SetPreviewDecoder(Option<PathBuf>),
    Generate {
        id: JobId,
        job: Box<Job>,
        /// Decode previews as it samples (a live preview job shows only its result).
        previews: bool,
    },
    Shutdown,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// The file asked for is not a model; the model loaded before (if any) is still loaded.
    ModelRejected {
        path: PathBuf,
        message: String,
    },
    ModelLoading {
        path: PathBuf,
    },
    /// How much of the weights a model load has read (sent as each whole percent passes).
    ModelLoadProgress {
        progress: LoadProgress,
    },
    ModelLoaded {
        info: ModelInfo,
        seconds: f64,
    },
    Progress {
        id: JobId,
        step: usize,
        total: usize,
    },
    /// The picture at `step` (the first image of a batch). Previews are decoded beside the
    /// sampling and may skip steps when decoding is slower; the last step always comes.
    Preview {
        id: JobId,
        step: usize,
        image: RgbImage,
    },
    /// Something to tell the user that stops nothing (a preview decoder that cannot be used).
    Notice {
        message: String,
    },
    /// Every image of the job, in seed order.
    Done {
        id: JobId,
        results: Vec<Generated>,
        seconds: f64,
    },
    Cancelled {
        id: JobId,
    },
    /// `id` is `None` for errors outside a job (loading a model).
    Failed {
        id: Option<JobId>,
        message: String,
    },
}

/// The UI's handle on the engine thread.
pub struct Worker {
    requests: Sender<Request>,
    events: Receiver<Event>,
    ids: JobIds,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the engine thread. `wake` is called after each event (the UI asks for a repaint).
    pub fn spawn(wake: impl Fn() + Send + Sync + 'static) -> Self {
        let (requests, rx) = unbounded();
        let (tx, events) = unbounded();
        let ids = JobIds::new();
        let mark = ids.mark();
        let thread = std::thread::Builder::new()
            .name("pentimento-engine".into())
            .spawn(move || run(rx, tx, mark, wake))
            .ok();
        Self {
            requests,
            events,
            ids,
            thread,
        }
    }

    pub fn load_model(&self, path: PathBuf, options: LoadOptions) {
        let _ = self.requests.send(Request::LoadModel { path, options });
    }

    pub fn set_preview_decoder(&self, path: Option<PathBuf>) {
        let _ = self.requests.send(Request::SetPreviewDecoder(path));
    }

    /// Queues a job and returns its id.
    pub fn generate(&mut self, job: Job) -> JobId {
        self.queue(job, true)
    }

    /// Queues a job that sends no previews, only its result (on a small machine decoding
    /// previews costs as much as a few-step job's sampling).
    pub fn generate_without_previews(&mut self, job: Job) -> JobId {
        self.queue(job, false)
    }

    fn queue(&mut self, job: Job, previews: bool) -> JobId {
        let id = self.ids.issue();
        let _ = self.requests.send(Request::Generate {
            id,
            job: Box::new(job),
            previews,
        });
        id
    }

    /// Stops job `id` at its next step (or before it starts).
    pub fn cancel(&self, id: JobId) {
        self.ids.cancel(id);
    }

    /// The event channel itself, for a caller that waits on it from its own thread.
    pub fn events(&self) -> Receiver<Event> {
        self.events.clone()
    }

    /// Events that have arrived, without waiting.
    pub fn poll(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    /// Waits for the next event (for tests and the CLI).
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.ids.cancel_all();
        let _ = self.requests.send(Request::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    requests: Receiver<Request>,
    events: Sender<Event>,
    cancelled: CancelMark,
    wake: impl Fn() + Send + Sync + 'static,
) {
    let wake = Arc::new(wake);
    let send = |e: Event| {
        let _ = events.send(e);
        wake();
    };
    let previews = {
        let (events, wake) = (events.clone(), wake.clone());
        PreviewThread::spawn(move |id, step, image| {
            let _ = events.send(Event::Preview { id, step, image });
            wake();
        })
    };
    let mut model: Option<StableDiffusion> = None;
    // The TAESD folder asked for, opened on the model's device.
    let mut taesd_path: Option<PathBuf> = None;
    let open_taesd = |path: &Option<PathBuf>, model: &Option<StableDiffusion>| match path {
        None => Ok(None),
        Some(p) => {
            let device = model
                .as_ref()
                .map(|m| m.device.clone())
                .unwrap_or(candle_core::Device::Cpu);
            Taesd::open(p, &device).map(Some)
        }
    };
    for request in requests {
        match request {
            Request::Shutdown => break,
            Request::SetPreviewDecoder(path) => {
                taesd_path = path;
                match open_taesd(&taesd_path, &model) {
                    Ok(t) => previews.set_decoder(t),
                    Err(e) => {
                        taesd_path = None;
                        previews.set_decoder(None);
                        send(Event::Notice {
                            message: format!("TAESD previews are off: {e}"),
                        });
                    }
                }
            }
            Request::LoadModel { path, options } => {
                // A file that is not a model leaves the working one loaded.
                if let Err(e) = caught(|| StableDiffusion::precheck(&path, &options)) {
                    send(Event::ModelRejected {
                        path,
                        message: e.to_string(),
                    });
                    continue;
                }
                // Free the old model before loading the next, so two never share memory.
                model = None;
                send(Event::ModelLoading { path: path.clone() });
                let started = Instant::now();
                let (events, wake) = (events.clone(), wake.clone());
                let mut last_percent = None;
                let reporting = move |progress: LoadProgress| {
                    let percent = progress.fraction().map(|f| (f * 100.0) as u32);
                    if percent != last_percent {
                        last_percent = percent;
                        let _ = events.send(Event::ModelLoadProgress { progress });
                        wake();
                    }
                };
                match caught(|| StableDiffusion::load_reporting(&path, &options, reporting)) {
                    Ok(m) => {
                        send(Event::ModelLoaded {
                            info: m.info.clone(),
                            seconds: started.elapsed().as_secs_f64(),
                        });
                        model = Some(m);
                        // Previews decode where the model computes.
                        if taesd_path.is_some() {
                            previews.set_decoder(open_taesd(&taesd_path, &model).ok().flatten());
                        }
                    }
                    Err(e) => send(Event::Failed {
                        id: None,
                        message: e.explained(),
                    }),
                }
            }
            Request::Generate {
                id,
                job,
                previews: wants_previews,
            } => {
                if cancelled.is_cancelled(id) {
                    send(Event::Cancelled { id });
                    continue;
                }
                let Some(m) = &model else {
                    send(Event::Failed {
                        id: Some(id),
                        message: "no model is loaded: open a checkpoint first".into(),
                    });
                    continue;
                };
                let started = Instant::now();
                let mut on_step = |s: super::denoise::StepInfo| {
                    send(Event::Progress {
                        id,
                        step: s.step,
                        total: s.total,
                    });
                    if wants_previews {
                        previews.submit(id, s.step, s.total, s.latents);
                    }
                    if cancelled.is_cancelled(id) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                };
                let mark = cancelled.clone();
                let interrupt = Interrupt::new(move || mark.is_cancelled(id));
                let ran = caught(|| interruptible(interrupt, || m.run(&job, &mut on_step)));
                match ran {
                    Ok(results) => send(Event::Done {
                        id,
                        results,
                        seconds: started.elapsed().as_secs_f64(),
                    }),
                    Err(EngineError::Cancelled) => send(Event::Cancelled { id }),
                    Err(e) => send(Event::Failed {
                        id: Some(id),
                        message: e.explained(),
                    }),
                }
            }
        }
    }
}

/// Runs `work`, turning a panic (a bug) into an error so that the worker, and the app with it,
/// survives: the models it holds are immutable, so the next job runs on them unharmed.
fn caught<T>(work: impl FnOnce() -> super::Result<T>) -> super::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(EngineError::Internal(what))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_comes_with_advice() {
        let oom = EngineError::Tensor {
            context: "UNet".into(),
            source: candle_core::Error::Msg("CUDA_ERROR_OUT_OF_MEMORY: out of memory".into()),
        };
        assert!(
            oom.explained().contains("smaller size"),
            "{}",
            oom.explained()
        );
        let other = EngineError::InvalidParams("x".into());
        assert_eq!(other.explained(), other.to_string());
    }

    #[test]
    fn a_panic_in_a_job_becomes_an_error() {
        let r: super::super::Result<()> = caught(|| panic!("boom {}", 1));
        assert!(
            matches!(r, Err(EngineError::Internal(ref m)) if m == "boom 1"),
            "{r:?}"
        );
        assert!(matches!(caught(|| Ok(2)), Ok(2)));
    }
}
