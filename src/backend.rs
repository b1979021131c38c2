//! Where jobs run: the engine on this computer (its own thread) or a server speaking
//! AUTOMATIC1111's API. Both take the same jobs and answer with the engine's events, so the
//! app handles one stream whichever computes.

use std::path::PathBuf;

use crate::engine::job::Job;
use crate::engine::model::LoadOptions;
use crate::engine::worker::{Event, JobId, Worker};
use crate::remote::{RemoteWorker, Server, ServerEvent};

/// What a backend reports.
#[derive(Debug, Clone)]
pub enum BackendEvent {
    Engine(Event),
    /// Only a server says these (connected, its models).
    Server(ServerEvent),
}

pub enum Backend {
    Local(Worker),
    Remote(RemoteWorker),
}

impl Backend {
    pub fn local(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Backend::Local(Worker::spawn(wake))
    }

    pub fn remote(server: Server, wake: impl Fn() + Send + Sync + 'static) -> Self {
        Backend::Remote(RemoteWorker::spawn(server, wake))
    }

    /// The server's address, when jobs go to one.
    pub fn server_url(&self) -> Option<&str> {
        match self {
            Backend::Local(_) => None,
            Backend::Remote(r) => Some(r.url()),
        }
    }

    /// Loads a model file here; a server chooses among its own (`choose_model`), so for it
    /// this says why not.
    pub fn load_model(&self, path: PathBuf, options: LoadOptions) -> Result<(), String> {
        match self {
            Backend::Local(w) => {
                w.load_model(path, options);
                Ok(())
            }
            Backend::Remote(r) => Err(format!(
                "jobs go to {}: choose one of its models in Settings > Backend",
                r.url()
            )),
        }
    }

    pub fn set_preview_decoder(&self, path: Option<PathBuf>) -> Result<(), String> {
        match self {
            Backend::Local(w) => {
                w.set_preview_decoder(path);
                Ok(())
            }
            Backend::Remote(_) => Err("the server decodes its own previews".into()),
        }
    }

    pub fn generate(&mut self, job: Job) -> JobId {
        match self {
            Backend::Local(w) => w.generate(job),
            Backend::Remote(r) => r.generate(job),
        }
    }

    pub fn generate_without_previews(&mut self, job: Job) -> JobId {
        match self {
            Backend::Local(w) => w.generate_without_previews(job),
            Backend::Remote(r) => r.generate_without_previews(job),
        }
    }

    pub fn cancel(&self, id: JobId) {
        match self {
            Backend::Local(w) => w.cancel(id),
            Backend::Remote(r) => r.cancel(id),
        }
    }

    pub fn poll(&self) -> Vec<BackendEvent> {
        match self {
            Backend::Local(w) => w.poll().into_iter().map(BackendEvent::Engine).collect(),
            Backend::Remote(r) => r.poll(),
        }
    }
}
