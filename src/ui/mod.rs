//! The painting app: views only. The document holds what is edited, the worker owns the model;
//! this module turns input into document edits and requests, and events into what is shown.

mod autosave;
mod backend_choice;
pub mod backend_panel;
mod canvas;
mod canvas_gpu;
pub mod commands;
pub mod control_panel;
pub mod dialogs;
mod events;
mod history;
mod icons;
mod layers_panel;
pub mod live;
mod lora_panel;
mod model_picker;
pub mod prompt_panel;
mod running_job;
pub mod session;
mod staging_bar;
mod status_bar;
mod top_bar;

use std::path::{Path, PathBuf};

use eframe::egui::{self, Key, KeyboardShortcut, Modifiers, RichText};

use crate::backend::Backend;
use crate::document::brush::{BrushSettings, Tool};
use crate::document::Document;
use crate::engine::model::{LoadOptions, ModelInfo};
use crate::engine::{Job, JobKind};
use crate::png_info::write_image;
use canvas::{CanvasView, Shown};
pub use commands::Command;
use dialogs::{Dialog, Dialogs};
use history::{History, Reuse};
pub use model_picker::LibraryPlaces;
use model_picker::{ModelPicker, PickerAction};
use prompt_panel::{PanelAction, PromptPanel};

#[derive(Debug, Clone)]
pub enum ModelStatus {
    None,
    Loading {
        path: PathBuf,
        /// Fraction of the weights read, once the worker has said.
        progress: Option<f32>,
    },
    Loaded(ModelInfo),
    /// Jobs go to a server; its model, once connected and chosen.
    Server(ServerModel),
}

/// The server jobs go to and its model as the app knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerModel {
    pub url: String,
    /// `None` until the server has answered.
    pub kind: Option<crate::remote::ServerKind>,
    /// The checkpoint it uses (`None`: none loaded there yet).
    pub model: Option<String>,
    /// A checkpoint asked for and not yet loaded.
    pub choosing: Option<String>,
}

impl ModelStatus {
    /// Whether a job can be sent now.
    pub fn is_ready(&self) -> bool {
        match self {
            ModelStatus::Loaded(_) => true,
            ModelStatus::Server(s) => s.kind.is_some() && s.model.is_some(),
            ModelStatus::None | ModelStatus::Loading { .. } => false,
        }
    }
}

use running_job::RunningJob;

pub struct PentimentoApp {
    pub doc: Document,
    canvas: CanvasView,
    pub panel: PromptPanel,
    pub tool: Tool,
    pub brush: BrushSettings,
    pub color: [u8; 3],
    /// Where jobs run: the engine here, or a server.
    backend: Backend,
    pub model: ModelStatus,
    job: Option<RunningJob>,
    pub history: History,
    /// The last message for the status bar (errors included).
    pub status: String,
    /// How the next model load picks its VAE and UNet weights.
    pub load_options: LoadOptions,
    model_path: Option<PathBuf>,
    /// What was loaded before the load in flight: back to it when the file is not a model.
    before_load: Option<(ModelStatus, Option<PathBuf>)>,
    /// The first-run card was closed.
    welcome_closed: bool,
    preview_revision: u64,
    /// Where the prompt panel was last frame: a PNG dropped there fills in its parameters only.
    prompt_panel_rect: Option<egui::Rect>,
    /// The model library window.
    pub models: ModelPicker,
    /// File dialogs, answered on their own threads.
    dialogs: Dialogs,
    /// Where the panel's settings are remembered.
    session: Option<PathBuf>,
    autosave: Option<autosave::Autosave>,
    /// File → Quit was chosen: the window closes at the end of the frame.
    quit_requested: bool,
    /// The document revisions last saved to (or opened from) a file: a quit with others keeps
    /// the autosave.
    file_revisions: (u64, u64),
    /// An autosave a crashed or killed session left, until the user restores or discards it.
    pub restore_offer: Option<PathBuf>,
    icons: icons::Icons,
    /// The largest texture side the GPU takes: images beyond it cannot be shown.
    max_texture_side: Option<usize>,
    /// Live mode: regenerate after each stroke, in the background.
    pub live: live::Live,
    /// The control layer settings' state (ControlNets found, the path box).
    pub controls: control_panel::ControlPanel,
    /// Settings → Backend.
    pub backend_panel: backend_panel::BackendPanel,
    /// Asks for a frame: a backend's events wake the window with it.
    repaint: egui::Context,
}

/// Where the app keeps what outlives a session.
#[derive(Debug, Clone, Default)]
pub struct AppPlaces {
    /// The history folder; `None` keeps results in memory only.
    pub history: Option<PathBuf>,
    pub library: LibraryPlaces,
    /// Where the prompt panel's settings are kept between runs; `None`: not kept.
    pub session: Option<PathBuf>,
    /// The autosave file; `None`: no autosave.
    pub autosave: Option<PathBuf>,
}

impl AppPlaces {
    /// The user's data and config folders and the shared hub cache.
    pub fn user() -> Self {
        Self {
            history: History::default_dir(),
            library: LibraryPlaces::default(),
            session: session::default_path(),
            autosave: crate::library::app_dirs::data_dir().map(|d| d.join("autosave.pentimento")),
        }
    }
}

impl PentimentoApp {
    /// The app with its history and library in the user's folders.
    pub fn new(cc: &eframe::CreationContext<'_>, model: Option<PathBuf>) -> Self {
        Self::with_places(cc, model, AppPlaces::user())
    }

    /// The app keeping its history and library where `places` says (tests use temp folders).
    pub fn with_places(
        cc: &eframe::CreationContext<'_>,
        model: Option<PathBuf>,
        places: AppPlaces,
    ) -> Self {
        if let Some(rs) = cc.wgpu_render_state.as_ref() {
            canvas_gpu::CanvasRenderer::install(rs);
        }
        let ctx = cc.egui_ctx.clone();
        let backend = Backend::local(move || ctx.request_repaint());
        let ctx = cc.egui_ctx.clone();
        let dialogs = Dialogs::new(move || ctx.request_repaint());
        let mut app = Self {
            doc: Document::blank(512, 512),
            canvas: CanvasView::default(),
            panel: PromptPanel::default(),
            tool: Tool::MaskBrush,
            brush: BrushSettings::default(),
            color: [220, 60, 40],
            backend,
            model: ModelStatus::None,
            job: None,
            models: ModelPicker::new(places.library),
            history: match places.history {
                Some(dir) => History::persistent(dir),
                None => History::in_memory(),
            },
            status: String::new(),
            load_options: LoadOptions::cpu(),
            model_path: None,
            before_load: None,
            welcome_closed: false,
            preview_revision: 0,
            prompt_panel_rect: None,
            dialogs,
            session: places.session,
            autosave: places.autosave.and_then(autosave::Autosave::open),
            restore_offer: None,
            quit_requested: false,
            file_revisions: (0, 0),
            icons: icons::Icons::load(&cc.egui_ctx),
            max_texture_side: cc
                .wgpu_render_state
                .as_ref()
                .map(|rs| rs.device.limits().max_texture_dimension_2d as usize),
            live: live::Live::default(),
            controls: control_panel::ControlPanel::default(),
            backend_panel: backend_panel::BackendPanel::default(),
            repaint: cc.egui_ctx.clone(),
        };
        app.file_revisions = app.doc_revisions();
        app.restore_offer = app.autosave.as_ref().and_then(|a| a.leftover());
        if let Some(saved) = app
            .session
            .as_deref()
            .and_then(session::PanelSettings::load)
        {
            if let Some(url) = saved.server.clone() {
                app.backend_panel.url = url.clone();
                if model.is_none() {
                    app.use_server(&url, None);
                }
            }
            saved.apply(&mut app.panel);
        }
        if let Some(path) = model {
            app.load_model(path);
        }
        app
    }

    pub fn load_model(&mut self, path: PathBuf) {
        if let Some(url) = self.backend.server_url() {
            self.status = format!(
                "jobs go to {url}: choose among its models in Settings > Backend, or compute on this computer there"
            );
            return;
        }
        let previous = std::mem::replace(
            &mut self.model,
            ModelStatus::Loading {
                path: path.clone(),
                progress: None,
            },
        );
        let previous_path = self.model_path.replace(path.clone());
        if !matches!(previous, ModelStatus::Loading { .. }) {
            self.before_load = Some((previous, previous_path));
        }
        if let Err(e) = self.backend.load_model(path, self.load_options.clone()) {
            self.status = e;
        }
    }

    /// Computes on another device from now on, reloading the model there.
    pub fn set_device(&mut self, kind: crate::engine::device::DeviceKind) {
        match kind.open() {
            Ok(device) => {
                self.load_options.device = device;
                self.status = format!("computing on the {}", kind.name());
                if let Some(path) = self.model_path.clone() {
                    self.load_model(path);
                }
            }
            Err(e) => self.status = format!("error: {e}"),
        }
    }

    /// Decodes with another VAE (a .vae.pt/.vae.safetensors file), reloading the model.
    pub fn set_vae(&mut self, choice: crate::engine::model::VaeChoice) {
        self.load_options.vae = choice;
        if let Some(path) = self.model_path.clone() {
            self.load_model(path);
        }
    }

    pub fn open_image(&mut self, path: &Path) {
        let is_document = crate::png_info::read_png_file(path)
            .is_ok_and(|b| crate::document::file::is_document(&b));
        if is_document {
            match crate::document::file::read(path) {
                Ok(opened) => match self.take_document(opened) {
                    Ok(()) => {
                        self.file_revisions = self.doc_revisions();
                        self.status = format!("opened document {}", path.display());
                    }
                    Err(e) => self.status = format!("{}: {e}", path.display()),
                },
                Err(e) => self.status = e.to_string(),
            }
            return;
        }
        let image = match crate::engine::image::read_image_file(path) {
            Ok(image) => image,
            Err(e) => {
                self.status = e.to_string();
                return;
            }
        };
        if let Err(e) = self.fits_gpu(image.width, image.height) {
            self.status = format!("{}: {e}", path.display());
            return;
        }
        self.doc.discard();
        // Read once (without text, looking for hidden parameters decodes the pixels again):
        // the record it carries is kept for Save, its parameters fill the panel.
        let info = image_info(path);
        self.doc
            .replace_image(&image, info.as_ref().and_then(|i| i.record.clone()));
        self.file_revisions = self.doc_revisions();
        self.canvas.fit_pending = true;
        self.status = format!(
            "opened {} ({}×{})",
            path.display(),
            image.width,
            image.height
        );
        if let Some(info) = info {
            let notes = self.fill_params(info);
            self.status.push_str(", parameters filled in");
            self.status.push_str(&notes_text(&notes));
        }
    }

    /// The images named on the command line: the first opens (the window holds one image);
    /// the status names any left out.
    pub fn open_images(&mut self, images: &[PathBuf]) {
        let Some(first) = images.first() else { return };
        self.open_image(first);
        if images.len() > 1 {
            let rest: Vec<String> = images[1..]
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            self.status = format!(
                "{}; one image per window: not opened {}",
                self.status,
                rest.join(", ")
            );
        }
    }

    /// Fills the prompt panel from the parameters an image carries (Pentimento, AUTOMATIC1111,
    /// Forge, Krita, InvokeAI, ComfyUI, NovelAI, Fooocus; PNG, JPEG or WebP), keeping the current
    /// image. `None` when it has none; else what could not be carried over.
    pub fn fill_params_from(&mut self, path: &Path) -> Option<Vec<String>> {
        image_info(path).map(|info| self.fill_params(info))
    }

    /// Fills the prompt panel from `info`; returns what could not be carried over.
    fn fill_params(&mut self, info: crate::png_info::PngInfo) -> Vec<String> {
        self.panel.params = match &info.record {
            Some(r) => r.params.clone(),
            None => info.apply_to(&self.panel.params),
        };
        // The seed came from the file: keep it for the next Generate.
        self.panel.seed_locked = true;
        info.not_carried_over(&self.panel.params)
    }

    /// A dropped file: on the prompt panel, a PNG's parameters fill the panel and the canvas is
    /// kept; anywhere else the file opens as the image.
    pub fn drop_file(&mut self, path: &Path, on_prompt_panel: bool) {
        if !on_prompt_panel {
            self.open_image(path);
        } else if let Some(notes) = self.fill_params_from(path) {
            self.status = format!(
                "parameters from {} (image kept; drop on the canvas to open it){}",
                path.display(),
                notes_text(&notes)
            );
        } else {
            self.status = format!("{}: no generation parameters in it", path.display());
        }
    }

    /// Saves the document (image, mask, record) as a `.pentimento` file.
    pub fn save_document(&mut self, path: &Path) {
        let snapshot = crate::document::file::DocumentSnapshot::of(&self.doc)
            .with_settings(self.panel.params.clone());
        self.status = match snapshot.write(path) {
            Ok(()) => {
                self.file_revisions = self.doc_revisions();
                format!("saved document {}", path.display())
            }
            Err(e) => format!("{}: cannot save: {e}", path.display()),
        };
    }

    /// A document read from a file (opened or restored) in place of the current one, its
    /// prompt settings into the panel.
    fn take_document(&mut self, opened: crate::document::file::Opened) -> Result<(), String> {
        let (w, h) = opened.doc.size();
        self.fits_gpu(w, h)?;
        self.doc = opened.doc;
        if let Some(settings) = opened.settings {
            self.panel.params = settings;
        }
        self.canvas.fit_pending = true;
        Ok(())
    }

    /// Whether an image of `w`×`h` can be shown: the canvas is one GPU texture.
    fn fits_gpu(&self, w: usize, h: usize) -> Result<(), String> {
        match self.max_texture_side {
            Some(max) if w > max || h > max => Err(format!(
                "{w}×{h} is larger than this GPU shows ({max} px a side at most); scale it down first"
            )),
            _ => Ok(()),
        }
    }

    fn doc_revisions(&self) -> (u64, u64) {
        (self.doc.image_revision(), self.doc.mask_revision())
    }

    /// Saves what the canvas shows, with the record of what made it when known (a staged
    /// result, the accepted one, an opened PNG's): the record the job layer made, so the file
    /// says what the CLI would write for the same job.
    pub fn save_png(&mut self, path: &Path) {
        let (image, record) = match self.doc.shown_result() {
            Some(r) => (r.image.clone(), Some(r.record.clone())),
            None => (
                std::sync::Arc::new(self.doc.rgb()),
                self.doc.record().cloned(),
            ),
        };
        let written = match &record {
            Some(record) => write_image(path, &image, record),
            None => image::RgbImage::from_raw(
                image.width as u32,
                image.height as u32,
                image.pixels.clone(),
            )
            .ok_or_else(|| std::io::Error::other("image buffer size"))
            .and_then(|img| img.save(path).map_err(std::io::Error::other)),
        };
        // The image is in a file now (a mask is not part of a flat PNG; Save document keeps it).
        if written.is_ok() && self.doc.mask_is_empty() {
            self.file_revisions = self.doc_revisions();
        }
        self.status = match written {
            Ok(()) if record.is_some() => format!("saved {}", path.display()),
            Ok(()) => format!(
                "saved {} (no generation parameters: nothing generated it)",
                path.display()
            ),
            Err(e) => format!("{}: cannot save: {e}", path.display()),
        };
    }

    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// How many previews of jobs have arrived since the app started.
    pub fn previews_received(&self) -> u64 {
        self.preview_revision
    }

    /// Starts a job from the panel: inpainting when there is a mask, img2img when there is an
    /// image, text-to-image otherwise.
    pub fn generate(&mut self) {
        if self.job.is_some() {
            return;
        }
        if !self.model.is_ready() {
            self.status = match &self.model {
                ModelStatus::Server(_) => "choose the server's model in Settings > Backend",
                _ => "open a model first",
            }
            .into();
            return;
        }
        let first = self.panel.next_params();
        if let Err(e) = self.fits_gpu(first.width, first.height) {
            self.status = e;
            return;
        }
        self.remember_session();
        if !self.doc.has_image() && self.doc.size() != (first.width, first.height) {
            self.doc = Document::blank(first.width, first.height);
            self.canvas.fit_pending = true;
        }
        let job = match self.job_for(&first) {
            Ok(job) => job.with_batch(self.panel.batch_size.max(1)),
            Err(e) => {
                self.status = e;
                return;
            }
        };
        // The user's job goes first: a live one would only delay it.
        if let Some(id) = self.live.stop() {
            self.backend.cancel(id);
        }
        // Job n of a batch count starts where job n − 1's seeds end, as AUTOMATIC1111 numbers.
        let ids = (0..self.panel.batch_count.max(1))
            .map(|n| self.backend.generate(job.nth_of_run(n)))
            .collect();
        self.status = format!("generating (seed {})", first.seed);
        self.job = Some(RunningJob::new(ids));
    }

    /// The job `first` asks for on the document as it is: inpainting where there is a mask,
    /// img2img when there is an image (at its size), text-to-image otherwise; with the LoRAs
    /// and embeddings its prompts name. The one place both Generate and live mode get it from.
    fn job_for(&self, first: &crate::engine::GenerationParams) -> Result<Job, String> {
        let (w, h) = self.doc.size();
        let from_canvas = crate::engine::GenerationParams {
            width: (w / 8 * 8).max(8),
            height: (h / 8 * 8).max(8),
            ..first.clone()
        };
        let whole_image = matches!(
            self.panel.inpaint.area,
            crate::engine::inpaint::InpaintArea::Whole
        );
        let (params, kind) = if !self.doc.has_image() {
            (first.clone(), JobKind::Txt2Img)
        } else if !self.doc.mask_is_empty() {
            let kind = JobKind::Inpaint {
                image: std::sync::Arc::new(self.doc.rgb()),
                mask: std::sync::Arc::new(self.doc.mask()),
                options: self.panel.inpaint,
            };
            (
                if whole_image {
                    from_canvas
                } else {
                    first.clone()
                },
                kind,
            )
        } else {
            let init = std::sync::Arc::new(self.doc.rgb());
            (from_canvas, JobKind::Img2Img { init })
        };
        let library = self.models.settings_path();
        // A server finds the prompt's LoRAs and embeddings in its own library, by name.
        let (loras, embeddings) = if self.backend.server_url().is_some() {
            (vec![], vec![])
        } else {
            let dirs = crate::library::adapter_dirs::lora_dirs(&[], library.as_deref());
            let loras = crate::engine::model::adapters::find::prompt_loras(&first.prompt, &dirs)
                .map_err(|e| e.to_string())?;
            let embeddings = crate::engine::model::adapters::embedding::embeddings_in(
                &[&first.prompt, &first.negative_prompt],
                &crate::library::adapter_dirs::embedding_dirs(&[], library.as_deref()),
            );
            (loras, embeddings)
        };
        if let Some(layer) = self.doc.layers().iter().find(|l| {
            l.props
                .control
                .as_ref()
                .is_some_and(|c| c.enabled && c.model.is_none())
        }) {
            return Err(format!(
                "{} has no ControlNet model: choose one in its settings (or untick Use in generation)",
                layer.props.name
            ));
        }
        Ok(Job::new(kind, params)
            .with_loras(loras)
            .with_embeddings(embeddings)
            .with_controls(self.doc.control_units()))
    }

    /// Writes the autosave when due, and asks about a previous session's leftover one.
    fn autosave_and_offer(&mut self, ctx: &egui::Context) {
        if let Some(path) = self.restore_offer.clone() {
            let when = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .map(|e| match e.as_secs() / 60 {
                    0 => " from less than a minute ago".to_string(),
                    1 => " from a minute ago".to_string(),
                    m if m < 120 => format!(" from {m} minutes ago"),
                    m => format!(" from {} hours ago", m / 60),
                })
                .unwrap_or_default();
            let mut answer = None;
            egui::Window::new("Restore unsaved work?")
                .collapsible(false)
                .resizable(false)
                .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
                .show(ctx, |ui| {
                    ui.label(format!(
                        "The last session left unsaved work: its autosave{when} holds the canvas and mask."
                    ));
                    ui.horizontal(|ui| {
                        if ui.button("Restore").clicked() {
                            answer = Some(true);
                        }
                        if ui.button("Discard").clicked() {
                            answer = Some(false);
                        }
                    });
                });
            match answer {
                Some(true) => {
                    match crate::document::file::read(&path) {
                        Ok(opened) => {
                            self.status = match self.take_document(opened) {
                                Ok(()) => "restored the autosaved canvas".into(),
                                Err(e) => format!("cannot restore: {e}"),
                            };
                        }
                        Err(e) => self.status = format!("cannot restore: {e}"),
                    }
                    if let Some(a) = &mut self.autosave {
                        a.mark_saved(&self.doc);
                    }
                    self.restore_offer = None;
                }
                Some(false) => {
                    let _ = std::fs::remove_file(&path);
                    self.restore_offer = None;
                }
                None => return,
            }
        }
        if let Some(a) = &mut self.autosave {
            if let Some(message) = a.tick(&self.doc, &self.panel.params) {
                self.status = message;
            }
            if a.pending() {
                ctx.request_repaint_after(std::time::Duration::from_millis(500));
            }
        }
    }

    /// Keeps the panel's settings for the next start (a failure to write costs only that).
    fn remember_session(&mut self) {
        if let Some(path) = &self.session {
            let settings = session::PanelSettings::of(&self.panel)
                .with_server(self.backend.server_url().map(str::to_string));
            if let Err(e) = settings.save(path) {
                self.status = format!("{}: settings not kept: {e}", path.display());
            }
        }
    }

    /// Asks the worker to stop the job (it does within a fraction of a second) and says so at
    /// once.
    pub fn cancel(&mut self) {
        if let Some(job) = &mut self.job {
            if let Some(&last) = job.ids.last() {
                self.backend.cancel(last);
                job.cancelling = true;
                self.status = "cancelling…".into();
            }
        }
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        let quit = KeyboardShortcut::new(Modifiers::COMMAND, Key::Q);
        if ctx.input_mut(|i| i.consume_shortcut(&quit)) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        // Generates from the prompt field too, as in AUTOMATIC1111 and Krita AI Diffusion.
        let generate = KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter);
        if ctx.input_mut(|i| i.consume_shortcut(&generate))
            && self.job.is_none()
            && self.model.is_ready()
        {
            // The prompt lets the keyboard go, so Enter then accepts the result, not a newline.
            ctx.memory_mut(|m| {
                if let Some(id) = m.focused() {
                    m.surrender_focus(id);
                }
            });
            self.execute(Command::Generate);
        }
        // While a text field has the keyboard, Ctrl+Z belongs to it, not to the canvas.
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let redo = KeyboardShortcut::new(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
        let undo = KeyboardShortcut::new(Modifiers::COMMAND, Key::Z);
        if ctx.input_mut(|i| i.consume_shortcut(&redo)) {
            self.execute(Command::Redo);
        }
        if ctx.input_mut(|i| i.consume_shortcut(&undo)) {
            self.execute(Command::Undo);
        }
        // Esc stops a running job, as it closes a staged result.
        if self.job.is_some() && ctx.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Escape)) {
            self.execute(Command::Cancel);
        }
        // Before plain Enter, which would take Shift+Enter too.
        if self.live.enabled && ctx.input_mut(|i| i.consume_key(Modifiers::SHIFT, Key::Enter)) {
            self.execute(Command::KeepLive);
        }
        if !self.doc.staged().is_empty() {
            if ctx.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Enter)) {
                self.execute(Command::Accept);
            }
            if ctx.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Escape)) {
                self.execute(Command::Discard);
            }
        }
        ctx.input(|i| {
            if i.key_pressed(Key::B) {
                self.tool = Tool::MaskBrush;
            }
            if !i.modifiers.shift && i.key_pressed(Key::E) {
                self.tool = Tool::MaskEraser;
            }
            if i.key_pressed(Key::P) {
                self.tool = Tool::ColorBrush(self.color);
            }
            if i.modifiers.shift && i.key_pressed(Key::E) {
                self.tool = Tool::LayerEraser;
            }
            if i.key_pressed(Key::X) {
                self.tool = match self.tool {
                    Tool::MaskBrush => Tool::MaskEraser,
                    _ => Tool::MaskBrush,
                };
            }
            if i.key_pressed(Key::OpenBracket) {
                self.brush.size = (self.brush.size / 1.25).max(1.0);
            }
            if i.key_pressed(Key::CloseBracket) {
                self.brush.size = (self.brush.size * 1.25).min(1000.0);
            }
        });
    }

    fn first_run(&mut self, ui: &mut egui::Ui) {
        let text = "No model is loaded.\n\nOpen a Stable Diffusion checkpoint (.safetensors or .ckpt, SD 1.x or 2.x, \
            inpainting or not) with \"Open model…\", pick one from your folders or download one \
            from the Hugging Face hub under \"Models…\", or start Pentimento with --model PATH \
            (a diffusers folder works too), or render on a server under Settings > Backend. You can paint \
            and save without one.";
        egui::Frame::popup(ui.style()).show(ui, |ui| {
            ui.set_max_width(380.0);
            ui.horizontal(|ui| {
                ui.label(RichText::new("Welcome to Pentimento").heading());
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if ui.button("Close").on_hover_text("Hide this card").clicked() {
                        self.welcome_closed = true;
                    }
                });
            });
            ui.label(text);
        });
    }
}

impl eframe::App for PentimentoApp {
    fn on_exit(&mut self) {
        self.remember_session();
        // Unanswered, the offer stands for the next start.
        if self.restore_offer.is_some() {
            return;
        }
        let unsaved = self.doc_revisions() != self.file_revisions;
        if let Some(a) = &mut self.autosave {
            // Work not saved to a file is kept for the next start to offer; else nothing is.
            if !(unsaved && a.write_now(&self.doc, &self.panel.params).is_ok()) {
                a.discard();
            }
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.handle_events();
        if let Some(message) = self.history.poll() {
            self.status = message;
        }
        self.shortcuts(&ctx);
        let (dropped, pointer): (Vec<PathBuf>, Option<egui::Pos2>) = ctx.input(|i| {
            let files = i
                .raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
            (files, i.pointer.latest_pos())
        });
        if let Some(path) = dropped.first() {
            let on_panel = matches!(
                (self.prompt_panel_rect, pointer),
                (Some(rect), Some(pos)) if rect.contains(pos)
            );
            self.drop_file(path, on_panel);
        }

        self.autosave_and_offer(&ctx);
        if let Some(done) = self.controls.poll_depth() {
            self.depth_layer_done(done);
        }
        if self.controls.depth_running() {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
        if self.job.is_some() {
            // The progress text counts seconds even between the worker's events.
            ctx.request_repaint_after(std::time::Duration::from_millis(500));
        }
        let (answers, message) = self.dialogs.answers();
        if let Some(message) = message {
            self.status = message;
        }
        for command in answers {
            self.execute(command);
        }
        if let Some(command) = self.dialogs.show(ui.ctx()) {
            self.execute(command);
        }
        let top = top_bar::TopBarView {
            can_undo: self.doc.can_undo(),
            can_redo: self.doc.can_redo(),
            device: crate::engine::device::DeviceKind::of(&self.load_options.device),
            ema: self.load_options.ema,
            vae_choice: self.load_options.vae.clone(),
            vae_loaded: match &self.model {
                ModelStatus::Loaded(info) => info.vae.clone(),
                _ => None,
            },
        };
        let tools = top_bar::Tools {
            tool: &mut self.tool,
            brush: &mut self.brush,
            color: &mut self.color,
        };
        let mut commands = egui::Panel::top("tools")
            .show(ui, |ui| top_bar::show(ui, &top, tools, &self.icons))
            .inner;
        if self.models.open {
            match self.models.show(&ctx, self.model_path.as_deref()) {
                PickerAction::Load(path) => commands.push(Command::LoadModel(path)),
                PickerAction::AddFolderPath(folder) => {
                    commands.push(Command::AddLibraryFolder(folder))
                }
                PickerAction::AddFolder => commands.push(Command::Open(Dialog::AddLibraryFolder)),
                PickerAction::None => {}
            }
        }
        if self.backend_panel.open {
            let view = backend_panel::BackendView {
                connected_to: self.backend.server_url(),
                model: match &self.model {
                    ModelStatus::Server(s) => s.choosing.as_deref().or(s.model.as_deref()),
                    _ => None,
                },
            };
            match self.backend_panel.show(&ctx, view) {
                backend_panel::BackendAction::None => {}
                backend_panel::BackendAction::UseLocal => commands.push(Command::UseLocal),
                backend_panel::BackendAction::UseServer { url, key } => {
                    commands.push(Command::UseServer { url, key })
                }
                backend_panel::BackendAction::ChooseModel(title) => {
                    commands.push(Command::ChooseServerModel(title))
                }
                backend_panel::BackendAction::Refresh => commands.push(Command::RefreshServer),
            }
        }
        egui::Panel::bottom("status").show(ui, |ui| {
            status_bar::show(ui, &self.model, &self.status, self.canvas.zoom)
        });
        egui::Panel::bottom("history")
            .resizable(false)
            .show(ui, |ui| {
                let staging = staging_bar::StagingView {
                    count: self.doc.staged().len(),
                    index: self.doc.staged_index(),
                    show_original: self.doc.show_original(),
                    seed: self
                        .doc
                        .staged()
                        .get(self.doc.staged_index())
                        .map(|r| r.record.params.seed),
                };
                commands.extend(staging_bar::show(ui, &staging));
                match self.history.show(ui) {
                    Some(Reuse::AsLayer(index)) => commands.push(Command::HistoryToLayer(index)),
                    Some(reuse) => {
                        match reuse {
                            Reuse::Settings(params) => self.panel.params = params,
                            Reuse::Seed(seed) => self.panel.params.seed = seed,
                            Reuse::AsLayer(_) => {}
                        }
                        // The reused seed is the point: keep it for the next Generate.
                        self.panel.seed_locked = true;
                    }
                    None => {}
                }
            });
        let prompt_panel = egui::Panel::left("prompt")
            .resizable(true)
            .default_size(320.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    let running = self.job.as_ref().map(RunningJob::progress);
                    let can_generate = self.model.is_ready();
                    let masked_only = !self.doc.mask_is_empty()
                        && !matches!(
                            self.panel.inpaint.area,
                            crate::engine::inpaint::InpaintArea::Whole
                        );
                    let fixed_size =
                        (self.doc.has_image() && !masked_only).then(|| self.doc.size());
                    let library = self.models.settings_path();
                    match self
                        .panel
                        .show(ui, running, can_generate, fixed_size, library.as_deref())
                    {
                        PanelAction::Generate => commands.push(Command::Generate),
                        PanelAction::Cancel => commands.push(Command::Cancel),
                        PanelAction::None => {}
                    }
                    let mut live = self.live.enabled;
                    let toggle = ui.checkbox(&mut live, "Live").on_hover_text(
                        "regenerate a moment after each stroke, at a reduced size, while you keep \
                         painting (quick with LCM, TCD or SD-Turbo); Shift+Enter keeps the picture",
                    );
                    if toggle.changed() {
                        commands.push(Command::SetLive(live));
                    }
                });
            });
        self.prompt_panel_rect = Some(prompt_panel.response.rect);
        egui::Panel::right("layers")
            .resizable(true)
            .default_size(210.0)
            .show(ui, |ui| {
                let locked = if !self.doc.staged().is_empty() {
                    Some("keep or discard the result first")
                } else {
                    None
                };
                if self.live.enabled {
                    let working = self.live.running_id().is_some();
                    match live::show(ui, &mut self.live, working) {
                        live::LiveAction::Keep => commands.push(Command::KeepLive),
                        live::LiveAction::TurnOff => commands.push(Command::SetLive(false)),
                        live::LiveAction::None => {}
                    }
                }
                commands.extend(layers_panel::show(
                    ui,
                    &self.icons,
                    &self.doc,
                    locked,
                    &mut self.controls.new_from,
                ));
                let library = self.models.settings_path();
                commands.extend(self.controls.show(
                    ui,
                    self.doc.active_layer(),
                    library.as_deref(),
                    locked.is_none(),
                ));
            });
        egui::CentralPanel::default()
            .frame(egui::Frame::NONE)
            .show(ui, |ui| {
                // Shared images: nothing is copied per frame.
                let preview = self.job.as_ref().and_then(|j| j.preview.clone());
                let staged = self.doc.shown_result().map(|r| r.image.clone());
                let shown = match (&preview, &staged) {
                    (Some((number, image)), _) => Shown::Preview {
                        number: *number,
                        image,
                    },
                    (None, Some(image)) => Shown::Staged {
                        revision: self.doc.image_revision(),
                        index: self.doc.staged_index(),
                        image,
                    },
                    (None, None) => Shown::Document,
                };
                let hidden_target =
                    self.tool.paints_layer() && !self.doc.active_layer().props.visible;
                let paint = staged.is_none() && preview.is_none() && !hidden_target;
                let tool = match self.tool {
                    Tool::ColorBrush(_) => Tool::ColorBrush(self.color),
                    t => t,
                };
                let outcome = self
                    .canvas
                    .show(ui, &mut self.doc, shown, tool, self.brush, paint);
                if outcome.refused_paint {
                    self.status = if hidden_target {
                        format!(
                            "\"{}\" is hidden: show it (the eye in Layers) to paint on it",
                            self.doc.active_layer().props.name
                        )
                    } else if self.job.is_some() {
                        "painting waits until the job is done (or cancelled)".into()
                    } else {
                        "accept or discard the result first (Enter / Esc), then paint".into()
                    };
                }
                if matches!(self.model, ModelStatus::None) && !self.welcome_closed {
                    let area = ui.max_rect();
                    let panel = egui::Rect::from_center_size(
                        egui::pos2(area.center().x, area.top() + 120.0),
                        egui::vec2(400.0, 200.0),
                    );
                    let mut child = ui.new_child(egui::UiBuilder::new().max_rect(panel));
                    self.first_run(&mut child);
                }
            });
        for command in commands {
            self.execute(command);
        }
        self.tick_live(&ctx);
        if std::mem::take(&mut self.quit_requested) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        if self.job.is_some() {
            ctx.request_repaint();
        }
    }
}

/// The generation parameters the image file at `path` carries, if any.
fn image_info(path: &Path) -> Option<crate::png_info::PngInfo> {
    crate::png_info::read_png_file(path)
        .ok()
        .and_then(|b| crate::png_info::parse_image(&b))
}

/// What could not be carried over from another tool's parameters, for the status bar.
fn notes_text(notes: &[String]) -> String {
    if notes.is_empty() {
        String::new()
    } else {
        format!("; not carried over: {}", notes.join("; "))
    }
}

/// The window's icon (assets/app-icon, drawn by make_app_icon.py).
const APP_ICON_PNG: &[u8] = include_bytes!("../../assets/app-icon/pentimento-256.png");

/// Runs the app in a native window.
pub fn run(model: Option<PathBuf>, images: Vec<PathBuf>) -> anyhow::Result<()> {
    let mut viewport = egui::ViewportBuilder::default()
        .with_inner_size([1280.0, 820.0])
        .with_title("Pentimento")
        // The desktop entry's name: a window manager matches the window to its icon by it.
        .with_app_id("pentimento")
        .with_drag_and_drop(true);
    match eframe::icon_data::from_png_bytes(APP_ICON_PNG) {
        Ok(icon) => viewport = viewport.with_icon(icon),
        Err(e) => eprintln!("the window icon cannot be read: {e}"),
    }
    let options = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native(
        "Pentimento",
        options,
        Box::new(move |cc| {
            let mut app = PentimentoApp::new(cc, model);
            app.open_images(&images);
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

#[cfg(test)]
mod app_icon_tests {
    #[test]
    fn the_window_icon_decodes() {
        let icon = eframe::icon_data::from_png_bytes(super::APP_ICON_PNG).unwrap();
        assert_eq!((icon.width, icon.height), (256, 256));
    }
}
