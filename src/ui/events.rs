//! The worker's events applied to the app: model loads, job progress, previews, results.

use super::{ModelStatus, PentimentoApp};
use crate::backend::BackendEvent;
use crate::document::StagedResult;
use crate::engine::worker::{Event, JobId};

impl PentimentoApp {
    /// Applies the backend's events. Public so tests can pump it.
    pub fn handle_events(&mut self) {
        for event in self.backend.poll() {
            let event = match event {
                BackendEvent::Engine(event) => event,
                BackendEvent::Server(event) => {
                    self.apply_server_event(event);
                    continue;
                }
            };
            let mine = |id: JobId, job: &Option<super::RunningJob>| {
                job.as_ref().is_some_and(|j| j.ids.contains(&id))
            };
            match event {
                Event::ModelRejected { message, .. } => {
                    let kept = match self.before_load.take() {
                        Some((model, path)) => {
                            self.model = model;
                            self.model_path = path;
                            matches!(self.model, ModelStatus::Loaded(_))
                        }
                        None => false,
                    };
                    self.status = if kept {
                        format!("{message}; the current model stays loaded")
                    } else {
                        message
                    };
                }
                Event::ModelLoading { path } => self.status = format!("loading {}", path.display()),
                Event::ModelLoadProgress { progress } => {
                    if let ModelStatus::Loading {
                        progress: shown, ..
                    } = &mut self.model
                    {
                        *shown = progress.fraction();
                    }
                }
                Event::ModelLoaded { info, seconds } => {
                    self.status = format!(
                        "loaded {} ({}, {}) in {seconds:.1}s",
                        info.path.display(),
                        info.family,
                        info.format
                    );
                    self.model = ModelStatus::Loaded(info);
                    self.before_load = None;
                    // Another model makes another picture.
                    self.live.invalidate();
                }
                Event::Done { id, results, .. } if self.live.is_mine(id) => {
                    self.live.finished(id, results)
                }
                Event::Cancelled { id } if self.live.is_mine(id) => self.live.ended(id, None),
                Event::Failed {
                    id: Some(id),
                    message,
                } if self.live.is_mine(id) => self.live.ended(id, Some(message)),
                Event::Progress { id, step, total } if mine(id, &self.job) => {
                    if let Some(j) = &mut self.job {
                        j.report(step, total);
                    }
                }
                Event::Preview { id, image, .. } if mine(id, &self.job) => {
                    self.preview_revision += 1;
                    if let Some(j) = &mut self.job {
                        j.preview = Some((self.preview_revision, std::sync::Arc::new(image)));
                    }
                }
                Event::Done {
                    id,
                    results,
                    seconds,
                } if mine(id, &self.job) => {
                    let seeds: Vec<String> = results
                        .iter()
                        .map(|r| r.params().seed.to_string())
                        .collect();
                    self.status = format!("done in {seconds:.1}s (seed {})", seeds.join(", "));
                    // The staging bar appears and the canvas shrinks: fit the image again.
                    if self.doc.staged().is_empty() {
                        self.canvas.fit_pending = true;
                    }
                    for r in results {
                        self.history.push(r.image.clone(), r.record.clone());
                        self.doc.stage(StagedResult {
                            image: std::sync::Arc::new(r.image),
                            record: r.record,
                        });
                    }
                    self.finish_job(id);
                }
                Event::Notice { message } => self.status = message,
                Event::Cancelled { id } if mine(id, &self.job) => {
                    self.status = "cancelled".into();
                    self.job = None;
                }
                Event::Failed { id, message } => {
                    self.status = format!("error: {message}");
                    match id {
                        None => {
                            self.model = ModelStatus::None;
                            self.before_load = None;
                        }
                        Some(id) if mine(id, &self.job) => self.job = None,
                        Some(_) => {}
                    }
                }
                // Late events of a cancelled job.
                _ => {}
            }
        }
    }

    fn finish_job(&mut self, id: JobId) {
        if let Some(j) = &mut self.job {
            j.ids.retain(|&x| x != id);
            j.next_image();
            if j.ids.is_empty() {
                self.job = None;
            }
        }
    }
}
