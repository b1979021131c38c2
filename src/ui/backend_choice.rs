//! Switching where jobs run, and what a server says, applied to the app: a switch ends the
//! jobs of the backend left (their events would never come) and drops its model.

use super::{ModelStatus, PentimentoApp, ServerModel};
use crate::backend::Backend;
use crate::remote::{Server, ServerEvent};

impl PentimentoApp {
    /// Sends jobs to the server at `url` from now on.
    pub fn use_server(&mut self, url: &str, key: Option<String>) {
        let server = match Server::new(url, key) {
            Ok(s) => s,
            Err(e) => {
                self.backend_panel.problem = Some(e.to_string());
                self.status = e.to_string();
                return;
            }
        };
        self.leave_backend();
        let url = server.url().to_string();
        let ctx = self.repaint.clone();
        self.backend = Backend::remote(server, move || ctx.request_repaint());
        self.model = ModelStatus::Server(ServerModel {
            url: url.clone(),
            kind: None,
            model: None,
            choosing: None,
        });
        self.backend_panel.problem = None;
        self.status = format!("connecting to {url}…");
        self.remember_session();
    }

    /// Computes on this computer again, reloading the model used here before.
    pub fn use_local(&mut self) {
        if self.backend.server_url().is_none() {
            return;
        }
        self.leave_backend();
        let ctx = self.repaint.clone();
        self.backend = Backend::local(move || ctx.request_repaint());
        self.model = ModelStatus::None;
        self.status = "computing on this computer".into();
        self.remember_session();
        if let Some(path) = self.model_path.clone() {
            self.load_model(path);
        }
    }

    /// The running job and the live one end with the backend that runs them.
    fn leave_backend(&mut self) {
        if let Some(job) = self.job.take() {
            if let Some(&last) = job.ids.last() {
                self.backend.cancel(last);
            }
        }
        if let Some(id) = self.live.stop() {
            self.backend.cancel(id);
        }
        self.live.invalidate();
        self.before_load = None;
    }

    pub fn choose_server_model(&mut self, title: String) {
        if let (Backend::Remote(remote), ModelStatus::Server(s)) = (&self.backend, &mut self.model)
        {
            s.choosing = Some(title.clone());
            self.status = format!("the server loads {title}…");
            remote.choose_model(title);
        }
    }

    pub fn refresh_server(&mut self) {
        if let Backend::Remote(remote) = &self.backend {
            remote.reconnect();
        }
    }

    pub(super) fn apply_server_event(&mut self, event: ServerEvent) {
        let ModelStatus::Server(status) = &mut self.model else {
            return;
        };
        match event {
            ServerEvent::Connected(info) => {
                status.kind = Some(info.kind);
                status.model = info.model.clone();
                self.status = match &info.model {
                    Some(m) => format!("connected to {} ({m})", info.url),
                    None => format!(
                        "connected to {}: choose its model in Settings > Backend",
                        info.url
                    ),
                };
                self.backend_panel.problem = None;
                self.backend_panel.server = Some(info);
                self.live.invalidate();
            }
            ServerEvent::Unreachable { message } => {
                self.status = format!("cannot use the server: {message}");
                self.backend_panel.problem = Some(message);
                self.backend_panel.open = true;
            }
            ServerEvent::ModelChosen { title } => {
                status.choosing = None;
                self.status = format!("the server uses {title}");
                status.model = Some(title);
                self.live.invalidate();
            }
            ServerEvent::ModelRefused { title, message } => {
                status.choosing = None;
                self.status = format!("the server cannot load {title}: {message}");
                self.backend_panel.problem = Some(message);
            }
        }
    }
}
