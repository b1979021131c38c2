//! The engine behind the server: one worker (one model on one device), jobs run in the order
//! they arrive. A thread turns the worker's events into the state `/progress` reads and into
//! each waiting request's answer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::engine::image::RgbImage;
use crate::engine::job::{Generated, Job};
use crate::engine::model::{LoadOptions, ModelInfo};
use crate::engine::worker::{Event, JobId, Worker};

/// How a job ended.
pub enum Outcome {
    Done(Vec<Generated>),
    Cancelled,
    Failed(String),
}

#[derive(Debug, Clone, Default)]
pub enum ModelState {
    #[default]
    None,
    Loading(PathBuf),
    Loaded(ModelInfo),
}

/// The job sampling now.
#[derive(Debug, Clone)]
pub struct Current {
    pub id: JobId,
    pub step: usize,
    pub total: usize,
    pub preview: Option<Arc<RgbImage>>,
    pub started: Instant,
}

#[derive(Default)]
struct State {
    model: ModelState,
    /// The model before the load in flight: a file that is not a model leaves it loaded.
    before_load: Option<ModelState>,
    current: Option<Current>,
    /// Jobs queued and not yet ended.
    pending: Vec<JobId>,
    waiting: HashMap<JobId, oneshot::Sender<Outcome>>,
    model_waiting: Vec<oneshot::Sender<Result<ModelInfo, String>>>,
    interrupted: bool,
}

/// What `/progress` shows.
pub struct Progress {
    pub current: Option<Current>,
    pub queued: usize,
    pub interrupted: bool,
}

#[derive(Clone)]
pub struct Engine {
    worker: Arc<Mutex<Worker>>,
    state: Arc<Mutex<State>>,
    options: LoadOptions,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind: keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    pub fn start(options: LoadOptions) -> Self {
        let worker = Worker::spawn(|| {});
        let events = worker.events();
        let state: Arc<Mutex<State>> = Arc::default();
        let pump_state = state.clone();
        std::thread::Builder::new()
            .name("pentimento-serve-events".into())
            .spawn(move || {
                for event in events.iter() {
                    apply(&mut lock(&pump_state), event);
                }
            })
            .ok();
        Self {
            worker: Arc::new(Mutex::new(worker)),
            state,
            options,
        }
    }

    pub fn model(&self) -> ModelState {
        lock(&self.state).model.clone()
    }

    /// Loads `path` and waits for it; the model loaded before stays when it is not a model.
    pub async fn load(&self, path: PathBuf) -> Result<ModelInfo, String> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = lock(&self.state);
            state.model_waiting.push(tx);
            if !matches!(state.model, ModelState::Loading(_)) {
                state.before_load = Some(state.model.clone());
            }
            state.model = ModelState::Loading(path.clone());
        }
        lock(&self.worker).load_model(path, self.options.clone());
        rx.await
            .unwrap_or_else(|_| Err("the engine stopped".into()))
    }

    /// Runs `jobs` one after another (behind any queued before) and returns their images.
    pub async fn run(&self, jobs: Vec<Job>) -> Result<Vec<Generated>, String> {
        if !matches!(self.model(), ModelState::Loaded(_)) {
            return Err("no model is loaded: set sd_model_checkpoint in /sdapi/v1/options".into());
        }
        let mut receivers = vec![];
        {
            // Queue all of this request's jobs together: another request's come after them.
            let mut worker = lock(&self.worker);
            let mut state = lock(&self.state);
            for job in jobs {
                let (tx, rx) = oneshot::channel();
                let id = worker.generate(job);
                state.waiting.insert(id, tx);
                state.pending.push(id);
                receivers.push((id, rx));
            }
        }
        let mut images = vec![];
        let last = receivers.last().map(|(id, _)| *id);
        for (id, rx) in receivers {
            let outcome = rx
                .await
                .unwrap_or(Outcome::Failed("the engine stopped".into()));
            // The request's jobs after this one: cancelling up to the last leaves others'.
            let later = last.filter(|&l| l > id);
            match outcome {
                Outcome::Done(mut results) => images.append(&mut results),
                // An interrupt ends the request with what was made, as AUTOMATIC1111's does;
                // the request's later jobs are dropped.
                Outcome::Cancelled => {
                    self.cancel_up_to(later);
                    break;
                }
                Outcome::Failed(message) => {
                    self.cancel_up_to(later);
                    return Err(message);
                }
            }
        }
        Ok(images)
    }

    fn cancel_up_to(&self, id: Option<JobId>) {
        if let Some(id) = id {
            lock(&self.worker).cancel(id);
        }
    }

    /// Stops the job sampling now (the request it belongs to returns what it has).
    pub fn interrupt(&self) {
        let mut state = lock(&self.state);
        let running = state
            .current
            .as_ref()
            .map(|c| c.id)
            .or(state.pending.first().copied());
        if let Some(id) = running {
            state.interrupted = true;
            lock(&self.worker).cancel(id);
        }
    }

    pub fn progress(&self) -> Progress {
        let state = lock(&self.state);
        Progress {
            current: state.current.clone(),
            queued: state.pending.len(),
            interrupted: state.interrupted,
        }
    }
}

/// One worker event applied to the shared state.
fn apply(state: &mut State, event: Event) {
    let finish = |state: &mut State, id: JobId, outcome: Outcome| {
        state.pending.retain(|&p| p != id);
        if state.current.as_ref().is_some_and(|c| c.id == id) {
            state.current = None;
        }
        if state.pending.is_empty() {
            state.interrupted = false;
        }
        if let Some(tx) = state.waiting.remove(&id) {
            let _ = tx.send(outcome);
        }
    };
    match event {
        Event::ModelLoading { path } => state.model = ModelState::Loading(path),
        Event::ModelLoaded { info, .. } => {
            state.model = ModelState::Loaded(info.clone());
            state.before_load = None;
            for tx in state.model_waiting.drain(..) {
                let _ = tx.send(Ok(info.clone()));
            }
        }
        Event::ModelRejected { message, .. } | Event::Failed { id: None, message } => {
            state.model = state.before_load.take().unwrap_or_default();
            for tx in state.model_waiting.drain(..) {
                let _ = tx.send(Err(message.clone()));
            }
        }
        Event::Progress { id, step, total } => match &mut state.current {
            Some(c) if c.id == id => {
                c.step = step;
                c.total = total;
            }
            _ => {
                state.current = Some(Current {
                    id,
                    step,
                    total,
                    preview: None,
                    started: Instant::now(),
                })
            }
        },
        Event::Preview { id, image, .. } => {
            if let Some(c) = state.current.as_mut().filter(|c| c.id == id) {
                c.preview = Some(Arc::new(image));
            }
        }
        Event::Done { id, results, .. } => finish(state, id, Outcome::Done(results)),
        Event::Cancelled { id } => finish(state, id, Outcome::Cancelled),
        Event::Failed {
            id: Some(id),
            message,
        } => finish(state, id, Outcome::Failed(message)),
        Event::ModelLoadProgress { .. } | Event::Notice { .. } => {}
    }
}
