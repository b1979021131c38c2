//! The painting app: views only. The document holds what is edited, the worker owns the model;
//! this module turns input into document edits and requests, and events into what is shown.

mod canvas;
mod canvas_gpu;
mod history;
mod model_picker;
pub mod prompt_panel;

use std::path::{Path, PathBuf};

use eframe::egui::{self, Key, KeyboardShortcut, Modifiers, RichText};

use crate::document::brush::{BrushSettings, Tool};
use crate::document::{Document, StagedResult};
use crate::engine::image::RgbImage;
use crate::engine::model::{LoadOptions, ModelInfo};
use crate::engine::worker::{Event, JobId, Worker};
use crate::engine::{Job, JobKind};
use crate::png_info::write_png;
use canvas::{CanvasView, Shown};
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
}

struct RunningJob {
    ids: Vec<JobId>,
    step: usize,
    total: usize,
    preview: Option<(u64, RgbImage)>,
}

pub struct PentimentoApp {
    pub doc: Document,
    canvas: CanvasView,
    pub panel: PromptPanel,
    pub tool: Tool,
    pub brush: BrushSettings,
    pub color: [u8; 3],
    worker: Worker,
    pub model: ModelStatus,
    job: Option<RunningJob>,
    pub history: History,
    /// The last message for the status bar (errors included).
    pub status: String,
    /// How the next model load picks its VAE and UNet weights.
    pub load_options: LoadOptions,
    model_path: Option<PathBuf>,
    preview_revision: u64,
    /// Where the prompt panel was last frame: a PNG dropped there fills in its parameters only.
    prompt_panel_rect: Option<egui::Rect>,
    /// The model library window.
    pub models: ModelPicker,
}

/// Where the app keeps what outlives a session.
#[derive(Debug, Clone, Default)]
pub struct AppPlaces {
    /// The history folder; `None` keeps results in memory only.
    pub history: Option<PathBuf>,
    pub library: LibraryPlaces,
}

impl AppPlaces {
    /// The user's data and config folders and the shared hub cache.
    pub fn user() -> Self {
        Self {
            history: History::default_dir(),
            library: LibraryPlaces::default(),
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
        let worker = Worker::spawn(move || ctx.request_repaint());
        let mut app = Self {
            doc: Document::blank(512, 512),
            canvas: CanvasView::default(),
            panel: PromptPanel::default(),
            tool: Tool::MaskBrush,
            brush: BrushSettings::default(),
            color: [220, 60, 40],
            worker,
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
            preview_revision: 0,
            prompt_panel_rect: None,
        };
        if let Some(path) = model {
            app.load_model(path);
        }
        app
    }

    pub fn load_model(&mut self, path: PathBuf) {
        self.model = ModelStatus::Loading {
            path: path.clone(),
            progress: None,
        };
        self.model_path = Some(path.clone());
        self.worker.load_model(path, self.load_options.clone());
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
        match image::open(path) {
            Ok(img) => {
                let rgb = img.to_rgb8();
                let (w, h) = rgb.dimensions();
                match RgbImage::new(w as usize, h as usize, rgb.into_raw()) {
                    Ok(image) => {
                        self.doc.discard();
                        // An opened PNG keeps the record it carries, for Save.
                        let record = std::fs::read(path)
                            .ok()
                            .and_then(|b| crate::png_info::parse_png(&b))
                            .and_then(|info| info.record);
                        self.doc.replace_image(&image, record);
                        self.canvas.fit_pending = true;
                        self.status = format!("opened {} ({w}×{h})", path.display());
                        // A PNG that carries parameters fills the panel.
                        if self.fill_params_from(path) {
                            self.status.push_str(", parameters filled in");
                        }
                    }
                    Err(e) => self.status = e.to_string(),
                }
            }
            Err(e) => self.status = format!("{}: cannot open: {e}", path.display()),
        }
    }

    /// Fills the prompt panel from the parameters a PNG carries (Pentimento, AUTOMATIC1111,
    /// Forge, Krita, InvokeAI, ComfyUI), keeping the current image. False when it has none.
    pub fn fill_params_from(&mut self, path: &Path) -> bool {
        let Some(info) = std::fs::read(path)
            .ok()
            .and_then(|b| crate::png_info::parse_png(&b))
        else {
            return false;
        };
        self.panel.params = match &info.record {
            Some(r) => r.params.clone(),
            None => info.apply_to(&self.panel.params),
        };
        // The seed came from the file: keep it for the next Generate.
        self.panel.seed_locked = true;
        true
    }

    /// A dropped file: on the prompt panel, a PNG's parameters fill the panel and the canvas is
    /// kept; anywhere else the file opens as the image.
    pub fn drop_file(&mut self, path: &Path, on_prompt_panel: bool) {
        if !on_prompt_panel {
            self.open_image(path);
        } else if self.fill_params_from(path) {
            self.status = format!(
                "parameters from {} (image kept; drop on the canvas to open it)",
                path.display()
            );
        } else {
            self.status = format!("{}: no generation parameters in it", path.display());
        }
    }

    /// Saves what the canvas shows, with the record of what made it when known (a staged
    /// result, the accepted one, an opened PNG's): the record the job layer made, so the file
    /// says what the CLI would write for the same job.
    pub fn save_png(&mut self, path: &Path) {
        let (image, record) = match self.doc.shown_result() {
            Some(r) => (r.image.clone(), Some(r.record.clone())),
            None => (self.doc.rgb(), self.doc.record().cloned()),
        };
        let written = match &record {
            Some(record) => write_png(path, &image, record),
            None => {
                image::RgbImage::from_raw(image.width as u32, image.height as u32, image.pixels)
                    .ok_or_else(|| std::io::Error::other("image buffer size"))
                    .and_then(|img| img.save(path).map_err(std::io::Error::other))
            }
        };
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

    /// Starts a job from the panel: inpainting when there is a mask, img2img when there is an
    /// image, text-to-image otherwise.
    pub fn generate(&mut self) {
        if self.job.is_some() {
            return;
        }
        if !matches!(self.model, ModelStatus::Loaded(_)) {
            self.status = "open a model first".into();
            return;
        }
        let first = self.panel.next_params();
        let batch = self.panel.batch_size.max(1);
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
            if self.doc.size() != (first.width, first.height) {
                self.doc = Document::blank(first.width, first.height);
                self.canvas.fit_pending = true;
            }
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
        let job = Job::new(kind, params).with_batch(batch);
        // Job n of a batch count starts where job n − 1's seeds end, as AUTOMATIC1111 numbers.
        let ids = (0..self.panel.batch_count.max(1))
            .map(|n| self.worker.generate(job.nth_of_run(n)))
            .collect();
        self.status = format!("generating (seed {})", first.seed);
        self.job = Some(RunningJob {
            ids,
            step: 0,
            total: first.steps,
            preview: None,
        });
    }

    pub fn cancel(&mut self) {
        if let Some(job) = &self.job {
            if let Some(&last) = job.ids.last() {
                self.worker.cancel(last);
            }
        }
    }

    /// Applies the worker's events. Public so tests can pump it.
    pub fn handle_events(&mut self) {
        for event in self.worker.poll() {
            let mine = |id: JobId, job: &Option<RunningJob>| {
                job.as_ref().is_some_and(|j| j.ids.contains(&id))
            };
            match event {
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
                }
                Event::Progress { id, step, total } if mine(id, &self.job) => {
                    if let Some(j) = &mut self.job {
                        j.step = step;
                        j.total = total;
                    }
                }
                Event::Preview { id, image, .. } if mine(id, &self.job) => {
                    self.preview_revision += 1;
                    if let Some(j) = &mut self.job {
                        j.preview = Some((self.preview_revision, image));
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
                    for r in results {
                        self.history.push(r.image.clone(), r.record.clone());
                        self.doc.stage(StagedResult {
                            image: r.image,
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
                        None => self.model = ModelStatus::None,
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
            j.preview = None;
            j.step = 0;
            if j.ids.is_empty() {
                self.job = None;
            }
        }
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        let redo = KeyboardShortcut::new(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
        let undo = KeyboardShortcut::new(Modifiers::COMMAND, Key::Z);
        if ctx.input_mut(|i| i.consume_shortcut(&redo)) {
            self.doc.redo();
        }
        if ctx.input_mut(|i| i.consume_shortcut(&undo)) {
            self.doc.undo();
        }
        let quit = KeyboardShortcut::new(Modifiers::COMMAND, Key::Q);
        if ctx.input_mut(|i| i.consume_shortcut(&quit)) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        ctx.input(|i| {
            if i.key_pressed(Key::B) {
                self.tool = Tool::MaskBrush;
            }
            if i.key_pressed(Key::E) {
                self.tool = Tool::MaskEraser;
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

    /// Two rows: files, models, undo and view on the first; painting tools on the second. Each
    /// wraps rather than clips in a narrow window.
    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open image…").clicked() {
                    ui.close();
                    if let Some(path) = rfd::FileDialog::new()
                        .add_filter("Images", &["png", "jpg", "jpeg", "webp"])
                        .pick_file()
                    {
                        self.open_image(&path);
                    }
                }
                if ui.button("Save PNG…").clicked() {
                    ui.close();
                    if let Some(path) = rfd::FileDialog::new()
                        .add_filter("PNG", &["png"])
                        .set_file_name("pentimento.png")
                        .save_file()
                    {
                        self.save_png(&path);
                    }
                }
                ui.separator();
                if ui
                    .button("Open model folder…")
                    .on_hover_text("A diffusers folder (model_index.json, unet/, vae/, …)")
                    .clicked()
                {
                    ui.close();
                    if let Some(path) = rfd::FileDialog::new().pick_folder() {
                        self.load_model(path);
                    }
                }
            });
            if ui
                .button("Models…")
                .on_hover_text("your model library and downloads from the Hugging Face hub")
                .clicked()
            {
                self.models.show_window();
            }
            if ui.button("Open model…").clicked() {
                if let Some(path) = rfd::FileDialog::new()
                    .add_filter("Checkpoints", &["safetensors", "ckpt"])
                    .pick_file()
                {
                    self.load_model(path);
                }
            }
            ui.menu_button("Device", |ui| {
                use crate::engine::device::DeviceKind;
                let current = DeviceKind::of(&self.load_options.device);
                for kind in DeviceKind::ALL {
                    let label = if kind == DeviceKind::Cpu {
                        "CPU (f32)".to_string()
                    } else {
                        format!("{} (f16)", kind.name())
                    };
                    let button = ui
                        .add_enabled(
                            kind.compiled(),
                            egui::Button::selectable(kind == current, label),
                        )
                        .on_disabled_hover_text(format!(
                            "this build has no {} support (cargo feature `{}`)",
                            kind.name(),
                            kind.name().to_lowercase()
                        ));
                    if button.clicked() {
                        self.set_device(kind);
                        ui.close();
                    }
                }
            });
            ui.menu_button("VAE", |ui| {
                use crate::engine::model::VaeChoice;
                if ui
                    .button("Automatic (NAME.vae.* beside the model)")
                    .clicked()
                {
                    self.set_vae(VaeChoice::Automatic);
                    ui.close();
                }
                if ui.button("The model's own").clicked() {
                    self.set_vae(VaeChoice::Builtin);
                    ui.close();
                }
                if ui.button("File…").clicked() {
                    if let Some(path) = rfd::FileDialog::new()
                        .add_filter("VAE", &["pt", "ckpt", "safetensors"])
                        .pick_file()
                    {
                        self.set_vae(VaeChoice::File(path));
                    }
                    ui.close();
                }
                if ui
                    .button("Preview decoder (TAESD folder)…")
                    .on_hover_text(
                        "madebyollin/taesd in diffusers layout: full-quality previews every step",
                    )
                    .clicked()
                {
                    if let Some(path) = rfd::FileDialog::new().pick_folder() {
                        self.worker.set_preview_decoder(Some(path));
                        self.status = "previews decoded with TAESD".into();
                    }
                    ui.close();
                }
                let mut ema = self.load_options.ema;
                if ui
                    .checkbox(&mut ema, "EMA weights (training checkpoints)")
                    .changed()
                {
                    self.load_options.ema = ema;
                    if let Some(path) = self.model_path.clone() {
                        self.load_model(path);
                    }
                }
            });
            ui.separator();
            if ui
                .add_enabled(self.doc.can_undo(), egui::Button::new("Undo"))
                .clicked()
            {
                self.doc.undo();
            }
            if ui
                .add_enabled(self.doc.can_redo(), egui::Button::new("Redo"))
                .clicked()
            {
                self.doc.redo();
            }
            ui.separator();
            if ui.button("Fit").clicked() {
                self.canvas.fit_pending = true;
            }
            if ui.button("1:1").clicked() {
                self.canvas.one_to_one();
            }
        });
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().slider_width = 90.0;
            ui.selectable_value(&mut self.tool, Tool::MaskBrush, "Mask brush")
                .on_hover_text("B");
            ui.selectable_value(&mut self.tool, Tool::MaskEraser, "Eraser")
                .on_hover_text("E");
            let color_tool = Tool::ColorBrush(self.color);
            if ui
                .selectable_label(matches!(self.tool, Tool::ColorBrush(_)), "Colour")
                .clicked()
            {
                self.tool = color_tool;
            }
            if ui.color_edit_button_srgb(&mut self.color).changed() {
                self.tool = Tool::ColorBrush(self.color);
            }
            ui.add(
                egui::Slider::new(&mut self.brush.size, 1.0..=400.0)
                    .logarithmic(true)
                    .text("Size"),
            );
            ui.add(egui::Slider::new(&mut self.brush.hardness, 0.0..=1.0).text("Hardness"));
            ui.separator();
            if ui.button("Fill mask").clicked() {
                self.doc.fill_mask();
            }
            if ui.button("Clear mask").clicked() {
                self.doc.clear_mask();
            }
            if ui.button("Invert mask").clicked() {
                self.doc.invert_mask();
            }
        });
    }

    fn staging_bar(&mut self, ui: &mut egui::Ui) {
        if self.doc.staged().is_empty() {
            return;
        }
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(format!(
                    "Result {} of {}",
                    self.doc.staged_index() + 1,
                    self.doc.staged().len()
                ))
                .strong(),
            );
            if ui
                .add_enabled(self.doc.staged_index() > 0, egui::Button::new("Previous"))
                .clicked()
            {
                self.doc.select_staged(self.doc.staged_index() - 1);
            }
            if ui
                .add_enabled(
                    self.doc.staged_index() + 1 < self.doc.staged().len(),
                    egui::Button::new("Next"),
                )
                .clicked()
            {
                self.doc.select_staged(self.doc.staged_index() + 1);
            }
            let mut before = self.doc.show_original();
            if ui.toggle_value(&mut before, "Before").changed() {
                self.doc.set_show_original(before);
            }
            if ui.button("Accept").clicked() {
                self.doc.accept();
            }
            if ui.button("Discard").clicked() {
                self.doc.discard();
            }
        });
    }

    fn first_run(&mut self, ui: &mut egui::Ui) {
        let text = "No model is loaded.\n\nOpen a Stable Diffusion checkpoint (.safetensors or .ckpt, SD 1.x or 2.x, \
            inpainting or not) with \"Open model…\", pick one from your folders or download one \
            from the Hugging Face hub under \"Models…\", or start Pentimento with --model PATH \
            (a diffusers folder works too). You can paint and save without one.";
        egui::Frame::popup(ui.style()).show(ui, |ui| {
            ui.set_max_width(380.0);
            ui.label(RichText::new("Welcome to Pentimento").heading());
            ui.label(text);
        });
    }
}

impl eframe::App for PentimentoApp {
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

        egui::Panel::top("tools").show(ui, |ui| self.top_bar(ui));
        if self.models.open {
            if let PickerAction::Load(path) = self.models.show(&ctx) {
                self.load_model(path);
            }
        }
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                let model = match &self.model {
                    ModelStatus::None => "no model".to_string(),
                    ModelStatus::Loading { path, .. } => format!("loading {}…", path.display()),
                    ModelStatus::Loaded(info) => format!(
                        "{} · {} · {} · VAE: {}{}",
                        info.path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        info.family,
                        crate::engine::model::inspect::human_size(info.memory_bytes),
                        info.vae
                            .as_ref()
                            .and_then(|p| p.file_name())
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "model's own".into()),
                        if info.ema { " · EMA" } else { "" }
                    ),
                };
                ui.label(model);
                if let ModelStatus::Loading {
                    progress: Some(f), ..
                } = self.model
                {
                    ui.add(
                        egui::ProgressBar::new(f)
                            .desired_width(140.0)
                            .text(format!("{:.0} %", f * 100.0)),
                    );
                }
                ui.separator();
                ui.label(&self.status);
            });
        });
        egui::Panel::bottom("history")
            .resizable(false)
            .show(ui, |ui| {
                self.staging_bar(ui);
                if let Some(reuse) = self.history.show(ui) {
                    match reuse {
                        Reuse::Settings(params) => self.panel.params = params,
                        Reuse::Seed(seed) => self.panel.params.seed = seed,
                    }
                    // The reused seed is the point: keep it for the next Generate.
                    self.panel.seed_locked = true;
                }
            });
        let prompt_panel = egui::Panel::left("prompt")
            .resizable(true)
            .default_size(320.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    let running = self.job.as_ref().map(|j| (j.step, j.total));
                    let can_generate = matches!(self.model, ModelStatus::Loaded(_));
                    match self.panel.show(ui, running, can_generate) {
                        PanelAction::Generate => self.generate(),
                        PanelAction::Cancel => self.cancel(),
                        PanelAction::None => {}
                    }
                });
            });
        self.prompt_panel_rect = Some(prompt_panel.response.rect);
        egui::CentralPanel::default()
            .frame(egui::Frame::NONE)
            .show(ui, |ui| {
                let preview = self.job.as_ref().and_then(|j| j.preview.as_ref());
                let staged = self.doc.shown_result().map(|r| r.image.clone());
                let shown_result_rev = self.doc.image_revision();
                let shown = match (preview, &staged) {
                    (Some((rev, img)), _) => Shown::Rgb {
                        revision: *rev,
                        width: img.width,
                        height: img.height,
                        pixels: &img.pixels,
                    },
                    (None, Some(img)) => Shown::Rgb {
                        revision: shown_result_rev | (1 << 62),
                        width: img.width,
                        height: img.height,
                        pixels: &img.pixels,
                    },
                    (None, None) => Shown::Document,
                };
                let paint = staged.is_none() && preview.is_none();
                let tool = match self.tool {
                    Tool::ColorBrush(_) => Tool::ColorBrush(self.color),
                    t => t,
                };
                // Split borrows: the preview lives in self.job, the canvas needs &mut doc.
                let preview_owned = preview.map(|(r, i)| (*r, i.clone()));
                let shown = match (&preview_owned, shown) {
                    (Some((rev, img)), _) => Shown::Rgb {
                        revision: *rev,
                        width: img.width,
                        height: img.height,
                        pixels: &img.pixels,
                    },
                    (None, s) => s,
                };
                self.canvas
                    .show(ui, &mut self.doc, shown, tool, self.brush, paint);
                if matches!(self.model, ModelStatus::None) {
                    let area = ui.max_rect();
                    let panel = egui::Rect::from_center_size(
                        egui::pos2(area.center().x, area.top() + 120.0),
                        egui::vec2(400.0, 200.0),
                    );
                    let mut child = ui.new_child(egui::UiBuilder::new().max_rect(panel));
                    self.first_run(&mut child);
                }
            });
        if self.job.is_some() {
            ctx.request_repaint();
        }
    }
}

/// Runs the app in a native window.
pub fn run(model: Option<PathBuf>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([1280.0, 820.0])
            .with_title("Pentimento")
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native(
        "Pentimento",
        options,
        Box::new(move |cc| Ok(Box::new(PentimentoApp::new(cc, model)))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
