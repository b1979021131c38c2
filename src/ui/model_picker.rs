//! The model library window: models in the hub cache and the user's folders (type, size, hash),
//! adding a folder, and downloads from the hub with a progress bar. The scan and the downloads
//! run on their own threads; the window only shows their state.

use std::path::PathBuf;
use std::time::Instant;

use crossbeam_channel::{unbounded, Receiver};
use eframe::egui::{self, RichText};

use crate::engine::model::inspect::human_size;
use crate::library::hub::{self, Hub, PullEvent};
use crate::library::scan::{scan, Library, Source};
use crate::library::settings::LibrarySettings;

/// Where the library's settings and the hub cache are; `None` fields take the user's defaults.
#[derive(Debug, Clone, Default)]
pub struct LibraryPlaces {
    pub settings: Option<PathBuf>,
    pub hub_cache: Option<PathBuf>,
    pub hub_endpoint: Option<String>,
}

enum DownloadMessage {
    Event(PullEvent),
    Finished(Result<PathBuf, String>),
}

struct Download {
    repo: String,
    messages: Receiver<DownloadMessage>,
    file: String,
    done: u64,
    total: u64,
    bytes_per_second: f64,
    files_done: usize,
    files_total: usize,
    started: Instant,
}

pub struct ModelPicker {
    pub open: bool,
    places: LibraryPlaces,
    library: Option<Library>,
    scanning: Option<Receiver<Library>>,
    repo_input: String,
    download: Option<Download>,
    /// The last thing worth telling the user (errors included).
    pub message: String,
}

/// What the window asks the app to do.
pub enum PickerAction {
    None,
    Load(PathBuf),
    /// Ask for a folder to add (the app's dialogs answer with it).
    AddFolder,
    /// Add this folder (the one the model in use came from).
    AddFolderPath(PathBuf),
}

impl ModelPicker {
    pub fn new(places: LibraryPlaces) -> Self {
        Self {
            open: false,
            places,
            library: None,
            scanning: None,
            repo_input: String::new(),
            download: None,
            message: String::new(),
        }
    }

    /// Where the library's folder list is kept.
    pub fn settings_path(&self) -> Option<PathBuf> {
        self.places
            .settings
            .clone()
            .or_else(LibrarySettings::default_path)
    }

    /// The hub cache the app downloads into.
    pub fn hub_cache(&self) -> PathBuf {
        self.places.hub_cache.clone().unwrap_or_else(hub::cache_dir)
    }

    /// Opens the window and rescans in the background.
    pub fn show_window(&mut self) {
        self.open = true;
        self.rescan();
    }

    pub fn rescan(&mut self) {
        let folders = match self.settings_path().map(|p| LibrarySettings::load(&p)) {
            Some(Ok(s)) => s.all_folders(),
            Some(Err(e)) => {
                self.message = e.to_string();
                vec![]
            }
            None => vec![],
        };
        let hub_cache = self.hub_cache();
        let (tx, rx) = unbounded();
        std::thread::spawn(move || {
            let _ = tx.send(scan(Some(&hub_cache), &folders));
        });
        self.scanning = Some(rx);
    }

    pub fn is_scanning(&self) -> bool {
        self.scanning.is_some()
    }

    pub fn library(&self) -> Option<&Library> {
        self.library.as_ref()
    }

    pub fn is_downloading(&self) -> bool {
        self.download.is_some()
    }

    /// Remembers `folder` in the library settings and rescans.
    pub fn add_folder(&mut self, folder: PathBuf) {
        let Some(path) = self.settings_path() else {
            self.message = "no config folder on this system".into();
            return;
        };
        let result = LibrarySettings::update(&path, |s| s.add(&folder).map(|_| ()));
        self.message = match result {
            Ok(()) => format!("added {}", folder.display()),
            Err(e) => e.to_string(),
        };
        self.rescan();
    }

    /// Starts downloading `repo` (a short name or owner/name) on its own thread.
    pub fn start_download(&mut self, repo: &str) {
        if self.download.is_some() {
            return;
        }
        let hub = match Hub::new(
            self.places.hub_endpoint.clone(),
            self.places.hub_cache.clone(),
        ) {
            Ok(h) => h,
            Err(e) => {
                self.message = e.to_string();
                return;
            }
        };
        let (tx, rx) = unbounded();
        let name = repo.trim().to_string();
        let repo_name = name.clone();
        std::thread::spawn(move || {
            let events = tx.clone();
            let result = hub.pull(&repo_name, None, &[], &mut |e| {
                let _ = events.send(DownloadMessage::Event(e));
            });
            let _ = tx.send(DownloadMessage::Finished(result.map_err(|e| e.to_string())));
        });
        self.download = Some(Download {
            repo: name,
            messages: rx,
            file: String::new(),
            done: 0,
            total: 0,
            bytes_per_second: 0.0,
            files_done: 0,
            files_total: 0,
            started: Instant::now(),
        });
    }

    /// Takes what the background threads finished.
    pub fn poll(&mut self) {
        if let Some(rx) = &self.scanning {
            if let Ok(lib) = rx.try_recv() {
                self.library = Some(lib);
                self.scanning = None;
            }
        }
        let mut finished = None;
        if let Some(d) = &mut self.download {
            for m in d.messages.try_iter() {
                match m {
                    DownloadMessage::Event(PullEvent::Planned { files }) => {
                        d.files_total = files.len()
                    }
                    DownloadMessage::Event(PullEvent::Cached { .. })
                    | DownloadMessage::Event(PullEvent::Downloaded { .. }) => d.files_done += 1,
                    DownloadMessage::Event(PullEvent::Progress {
                        file,
                        done,
                        total,
                        bytes_per_second,
                    }) => {
                        d.file = file;
                        d.done = done;
                        d.total = total;
                        d.bytes_per_second = bytes_per_second;
                    }
                    DownloadMessage::Finished(r) => finished = Some((d.repo.clone(), r)),
                }
            }
        }
        if let Some((repo, result)) = finished {
            self.download = None;
            self.message = match result {
                Ok(path) => format!("downloaded {repo} to {}", path.display()),
                Err(e) => e,
            };
            self.rescan();
        }
    }

    /// The window; `in_use` is the model loaded (or loading) now, wherever it came from.
    pub fn show(&mut self, ctx: &egui::Context, in_use: Option<&std::path::Path>) -> PickerAction {
        self.poll();
        if self.scanning.is_some() || self.download.is_some() {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
        let mut action = PickerAction::None;
        let mut open = self.open;
        egui::Window::new("Models")
            .open(&mut open)
            .default_size([760.0, 420.0])
            .show(ctx, |ui| {
                ui.horizontal(|ui| {
                    if ui.button("Add folder…").clicked() {
                        action = PickerAction::AddFolder;
                    }
                    if ui.button("Rescan").clicked() {
                        self.rescan();
                    }
                    if self.scanning.is_some() {
                        ui.spinner();
                    }
                });
                ui.separator();
                self.in_use(ui, in_use, &mut action);
                self.list(ui, in_use, &mut action);
                ui.separator();
                self.download_row(ui);
                if !self.message.is_empty() {
                    ui.label(&self.message);
                }
            });
        self.open = open;
        action
    }

    /// The model in use, and whether the library lists it (one opened by `--model` or "Open
    /// model…" from elsewhere is not, until its folder is added).
    fn in_use(
        &self,
        ui: &mut egui::Ui,
        in_use: Option<&std::path::Path>,
        action: &mut PickerAction,
    ) {
        let Some(path) = in_use else {
            ui.weak("No model in use.");
            return;
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let listed = self
            .library
            .as_ref()
            .is_some_and(|lib| lib.models.iter().any(|m| same_path(&m.path, path)));
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(format!("In use: {name}")).strong())
                .on_hover_text(path.display().to_string());
            if !listed {
                ui.weak(format!("from {}, not in your folders", parent_of(path)));
                if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    if ui
                        .button("Add its folder")
                        .on_hover_text(folder.display().to_string())
                        .clicked()
                    {
                        *action = PickerAction::AddFolderPath(folder.to_path_buf());
                    }
                }
            }
        });
    }

    fn list(
        &mut self,
        ui: &mut egui::Ui,
        in_use: Option<&std::path::Path>,
        action: &mut PickerAction,
    ) {
        let Some(lib) = &self.library else {
            ui.weak("Looking for models…");
            return;
        };
        if lib.models.is_empty() {
            ui.weak("No models yet: add a folder of checkpoints or download one below.");
        }
        egui::ScrollArea::vertical()
            .max_height(260.0)
            .show(ui, |ui| {
                egui::Grid::new("models")
                    .num_columns(6)
                    .striped(true)
                    .spacing([12.0, 4.0])
                    .show(ui, |ui| {
                        for m in &lib.models {
                            if in_use.is_some_and(|p| same_path(p, &m.path)) {
                                ui.label("in use");
                            } else if ui
                                .button("Load")
                                .on_hover_text(m.path.display().to_string())
                                .clicked()
                            {
                                *action = PickerAction::Load(m.path.clone());
                            }
                            ui.label(RichText::new(&m.name).strong());
                            ui.label(m.kind());
                            ui.label(human_size(m.bytes));
                            ui.label(m.hash.as_deref().unwrap_or("-"));
                            ui.weak(match &m.source {
                                Source::Hub { .. } => "hub cache".to_string(),
                                Source::Folder { folder } => folder.display().to_string(),
                            });
                            ui.end_row();
                        }
                    });
                for p in &lib.problems {
                    ui.weak(format!("skipped {}: {}", p.path.display(), p.message));
                }
            });
    }

    fn download_row(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let label = ui.label("Download");
            ui.add(
                egui::TextEdit::singleline(&mut self.repo_input)
                    .hint_text("owner/name or sd15, sd15-inpainting, sd21, sd2-inpainting, taesd")
                    .desired_width(360.0),
            )
            .labelled_by(label.id);
            let can = self.download.is_none() && !self.repo_input.trim().is_empty();
            if ui.add_enabled(can, egui::Button::new("Get")).clicked() {
                let repo = self.repo_input.clone();
                self.start_download(&repo);
            }
        });
        if let Some(d) = &self.download {
            let fraction = if d.total > 0 {
                d.done as f32 / d.total as f32
            } else {
                0.0
            };
            ui.add(egui::ProgressBar::new(fraction).text(format!(
                "{} · file {} of {} · {} of {} · {}/s · {:.0}s",
                if d.file.is_empty() { &d.repo } else { &d.file },
                (d.files_done + 1).min(d.files_total.max(1)),
                d.files_total.max(1),
                human_size(d.done),
                human_size(d.total),
                human_size(d.bytes_per_second as u64),
                d.started.elapsed().as_secs_f64()
            )));
        }
    }
}

/// Whether two paths name the same file (through links and `..` where the file exists). Only
/// paths with the same file name are resolved: the list asks once per model and frame.
fn same_path(a: &std::path::Path, b: &std::path::Path) -> bool {
    if a == b {
        return true;
    }
    if a.file_name() != b.file_name() {
        return false;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn parent_of(path: &std::path::Path) -> String {
    path.parent()
        .map(|p| p.display().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".".into())
}
