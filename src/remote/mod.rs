//! The engine on another machine: jobs sent to a server that speaks AUTOMATIC1111's API (a
//! Pentimento `serve`, AUTOMATIC1111, Forge), with the same requests and events as the local
//! worker — progress and previews from `/progress`, cancel through `/interrupt`, results with
//! their records. Jobs run one after another, in the order they were asked for.

pub mod http;
pub mod request;
pub mod response;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use serde_json::{json, Value};

use crate::backend::BackendEvent;
use crate::engine::job::Job;
use crate::engine::worker::{CancelMark, Event, JobId, JobIds};
pub use http::Server;

/// How often a running job's progress (and preview) is asked for.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(300);
/// The most models listed from a server (a list beyond this is not a model library).
pub const MAX_SERVER_MODELS: usize = 10_000;

/// What the server is: ours understands our extensions and writes our records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    Pentimento,
    /// AUTOMATIC1111, Forge, or another server with its API.
    Automatic1111,
}

impl std::fmt::Display for ServerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerKind::Pentimento => "a Pentimento server",
            ServerKind::Automatic1111 => "an AUTOMATIC1111-style server",
        })
    }
}

/// What a server said when we connected.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    pub url: String,
    pub kind: ServerKind,
    /// Its checkpoints' titles (`name [hash]`).
    pub models: Vec<String>,
    /// The checkpoint it has loaded, if any.
    pub model: Option<String>,
}

/// What the remote side reports besides the engine's events.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    Connected(ServerInfo),
    /// Connecting failed (the address, the key, the network).
    Unreachable {
        message: String,
    },
    ModelChosen {
        title: String,
    },
    ModelRefused {
        title: String,
        message: String,
    },
}

enum Request {
    Connect,
    ChooseModel(String),
    Generate {
        id: JobId,
        job: Box<Job>,
        previews: bool,
    },
    Shutdown,
}

/// The app's handle on a server, the remote twin of `engine::worker::Worker`.
pub struct RemoteWorker {
    requests: Sender<Request>,
    events: Receiver<BackendEvent>,
    ids: JobIds,
    url: String,
    thread: Option<JoinHandle<()>>,
}

impl RemoteWorker {
    /// Starts talking to `server` (connecting at once). `wake` is called after each event.
    pub fn spawn(server: Server, wake: impl Fn() + Send + Sync + 'static) -> Self {
        let (requests, rx) = unbounded();
        let (tx, events) = unbounded();
        let ids = JobIds::new();
        let url = server.url().to_string();
        let cancelled = ids.mark();
        let thread = std::thread::Builder::new()
            .name("pentimento-remote".into())
            .spawn(move || {
                Session {
                    server,
                    kind: ServerKind::Automatic1111,
                    model: None,
                    cancelled,
                    send: Box::new(move |e| {
                        let _ = tx.send(e);
                        wake();
                    }),
                }
                .run(rx)
            })
            .ok();
        let _ = requests.send(Request::Connect);
        Self {
            requests,
            events,
            ids,
            url,
            thread,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Asks the server for its models again.
    pub fn reconnect(&self) {
        let _ = self.requests.send(Request::Connect);
    }

    /// Loads the server's checkpoint with this title.
    pub fn choose_model(&self, title: String) {
        let _ = self.requests.send(Request::ChooseModel(title));
    }

    pub fn generate(&mut self, job: Job) -> JobId {
        self.queue(job, true)
    }

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

    /// Stops job `id` (and those before it): interrupted on the server if it runs there.
    pub fn cancel(&self, id: JobId) {
        self.ids.cancel(id);
    }

    pub fn poll(&self) -> Vec<BackendEvent> {
        self.events.try_iter().collect()
    }
}

impl Drop for RemoteWorker {
    fn drop(&mut self) {
        self.ids.cancel_all();
        let _ = self.requests.send(Request::Shutdown);
        // A request in flight may wait on the network: the thread ends after it, unjoined.
        drop(self.thread.take());
    }
}

struct Session {
    server: Server,
    kind: ServerKind,
    /// The checkpoint jobs ask for (so that any instance behind a balancer loads it).
    model: Option<String>,
    cancelled: CancelMark,
    send: Box<dyn Fn(BackendEvent) + Send>,
}

impl Session {
    fn run(mut self, requests: Receiver<Request>) {
        for request in requests.iter() {
            match request {
                Request::Connect => self.connect(),
                Request::ChooseModel(title) => self.choose_model(title),
                Request::Generate { id, job, previews } => self.generate(id, &job, previews),
                Request::Shutdown => break,
            }
        }
    }

    fn engine(&self, event: Event) {
        (self.send)(BackendEvent::Engine(event));
    }

    fn server_event(&self, event: ServerEvent) {
        (self.send)(BackendEvent::Server(event));
    }

    fn connect(&mut self) {
        match self.server_info() {
            Ok(info) => {
                self.kind = info.kind;
                self.model = info.model.clone();
                self.server_event(ServerEvent::Connected(info));
            }
            Err(message) => self.server_event(ServerEvent::Unreachable { message }),
        }
    }

    fn server_info(&self) -> Result<ServerInfo, String> {
        use http::HttpError;
        let kind = match self.server.get("/health") {
            Ok(v) if v.get("server").and_then(Value::as_str) == Some("pentimento") => {
                ServerKind::Pentimento
            }
            Err(e @ (HttpError::Unreachable { .. } | HttpError::BadAddress(_))) => {
                return Err(e.to_string())
            }
            Err(HttpError::Status {
                status: 401 | 403,
                detail,
            }) => return Err(format!("{}: {detail}", self.server.url())),
            _ => ServerKind::Automatic1111,
        };
        let list = self
            .server
            .get("/sdapi/v1/sd-models")
            .map_err(|e| format!("{}: {e}", self.server.url()))?;
        let models: Vec<String> = list
            .as_array()
            .ok_or("the server's model list is not a list")?
            .iter()
            .take(MAX_SERVER_MODELS)
            .filter_map(|m| m.get("title").and_then(Value::as_str).map(str::to_string))
            .collect();
        let options = self
            .server
            .get("/sdapi/v1/options")
            .map_err(|e| format!("{}: {e}", self.server.url()))?;
        let model = options
            .get("sd_model_checkpoint")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        Ok(ServerInfo {
            url: self.server.url().to_string(),
            kind,
            models,
            model,
        })
    }

    fn choose_model(&mut self, title: String) {
        let body = json!({ "sd_model_checkpoint": title }).to_string();
        match self.server.post("/sdapi/v1/options", &body, false) {
            Ok(_) => {
                self.model = Some(title.clone());
                self.server_event(ServerEvent::ModelChosen { title });
            }
            Err(e) => self.server_event(ServerEvent::ModelRefused {
                title,
                message: e.to_string(),
            }),
        }
    }

    fn generate(&self, id: JobId, job: &Job, previews: bool) {
        let cancelled = || self.cancelled.is_cancelled(id);
        if cancelled() {
            return self.engine(Event::Cancelled { id });
        }
        let failed = |message: String| Event::Failed {
            id: Some(id),
            message,
        };
        let request = match request::request_for(job, self.model.as_deref(), self.kind) {
            Ok(r) => r,
            Err(m) => return self.engine(failed(m)),
        };
        let body = match request.body() {
            Ok(b) => b,
            Err(e) => return self.engine(failed(e.to_string())),
        };
        let started = Instant::now();
        // The job's request waits on its own thread; this one watches progress and cancel.
        let (tx, answer) = crossbeam_channel::bounded(1);
        let (server, path) = (self.server.clone(), request.path());
        std::thread::spawn(move || {
            let _ = tx.send(server.post(path, &body, false));
        });
        let mut interrupted = false;
        let mut shown_step = None;
        let result = loop {
            match answer.recv_timeout(PROGRESS_INTERVAL) {
                Ok(result) => break result,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return self.engine(failed("the request stopped unanswered".into()))
                }
            }
            if interrupted {
                continue;
            }
            if cancelled() {
                interrupted = true;
                let _ = self.server.post("/sdapi/v1/interrupt", "{}", true);
                continue;
            }
            self.report_progress(id, previews, &mut shown_step);
        };
        if interrupted {
            return self.engine(Event::Cancelled { id });
        }
        let event = match result
            .map_err(|e| e.to_string())
            .and_then(|answer| response::results(job, &answer, self.kind))
        {
            Ok(results) => Event::Done {
                id,
                results,
                seconds: started.elapsed().as_secs_f64(),
            },
            Err(message) => failed(message),
        };
        self.engine(event);
    }

    /// The server's step (and its picture, for a job that shows previews), when it moved. A
    /// progress call that fails is skipped: the job's own answer says what went wrong.
    fn report_progress(&self, id: JobId, previews: bool, shown: &mut Option<usize>) {
        let path = format!("/sdapi/v1/progress?skip_current_image={}", !previews);
        let Ok(p) = self.server.get(&path) else {
            return;
        };
        let state = p.get("state");
        let number = |k: &str| {
            state
                .and_then(|s| s.get(k))
                .and_then(Value::as_u64)
                .map(|n| n as usize)
        };
        let (Some(step), Some(total)) = (number("sampling_step"), number("sampling_steps")) else {
            return;
        };
        if total == 0 || step > total || *shown == Some(step) {
            return;
        }
        *shown = Some(step);
        self.engine(Event::Progress { id, step, total });
        if !previews {
            return;
        }
        let image = p
            .get("current_image")
            .and_then(Value::as_str)
            .and_then(|b64| crate::server::api::decode_image(b64).ok());
        if let Some(image) = image {
            self.engine(Event::Preview { id, step, image });
        }
    }
}
