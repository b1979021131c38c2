//! The history of results: a strip under the canvas and a grid view, each result with its
//! parameters; click one to reuse its settings. Results are kept on disk as PNGs carrying their
//! parameters (the same files `pentimento info` reads), so closing the app loses nothing.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{unbounded, Receiver, Sender};
use eframe::egui::{self, TextureHandle};

use crate::engine::image::RgbImage;
use crate::engine::params::GenerationParams;
use crate::png_info::{parse_image, write_png, ImageRecord};

/// How many of the newest saved results are shown after a restart.
pub const LOADED_ON_START: usize = 200;

pub struct HistoryItem {
    pub image: RgbImage,
    pub params: GenerationParams,
    /// What made it, when the file says (a Pentimento result).
    pub record: Option<ImageRecord>,
    thumbnail: Option<TextureHandle>,
}

/// What a click on a result asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Reuse {
    /// Every setting of the result.
    Settings(GenerationParams),
    /// Only its seed, keeping the panel's prompt and settings.
    Seed(u64),
    /// The image itself, as a new layer on the canvas (item index).
    AsLayer(usize),
}

/// What happened in the background: an old result read back, or a write that failed.
enum Background {
    Loaded(Box<HistoryItem>),
    Failed(String),
}

pub struct History {
    pub items: Vec<HistoryItem>,
    /// Where results are kept; `None` keeps them in memory only.
    dir: Option<PathBuf>,
    /// Items read back from disk go before this session's.
    loaded: usize,
    events: Receiver<Background>,
    sender: Sender<Background>,
    saved: u64,
    pub grid_open: bool,
}

impl Default for History {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl History {
    pub fn in_memory() -> Self {
        let (sender, events) = unbounded();
        Self {
            items: vec![],
            dir: None,
            loaded: 0,
            events,
            sender,
            saved: 0,
            grid_open: false,
        }
    }

    /// A history kept in `dir`; its newest results are read back on a background thread.
    pub fn persistent(dir: PathBuf) -> Self {
        let mut h = Self::in_memory();
        let tx = h.sender.clone();
        let from = dir.clone();
        std::thread::Builder::new()
            .name("pentimento-history".into())
            .spawn(move || load_all(&from, &tx))
            .ok();
        h.dir = Some(dir);
        h
    }

    /// The user's history folder: `$PENTIMENTO_DATA_DIR/history`, else the platform's data
    /// folder (`~/.local/share/pentimento/history` on Linux).
    pub fn default_dir() -> Option<PathBuf> {
        Some(crate::library::app_dirs::data_dir()?.join("history"))
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Adds a result and writes it to the history folder in the background.
    pub fn push(&mut self, image: RgbImage, record: ImageRecord) {
        if let Some(dir) = &self.dir {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            // Names sort in the order results were made.
            let path = dir.join(format!(
                "{millis:015}-{:04}-seed{}.png",
                self.saved % 10_000,
                record.params.seed
            ));
            self.saved += 1;
            let (image, record, dir) = (image.clone(), record.clone(), dir.clone());
            let tx = self.sender.clone();
            std::thread::spawn(move || {
                let written = std::fs::create_dir_all(&dir)
                    .map_err(|e| e.to_string())
                    .and_then(|()| write_png(&path, &image, &record).map_err(|e| e.to_string()));
                if let Err(e) = written {
                    let _ = tx.send(Background::Failed(format!(
                        "history: cannot save {}: {e}",
                        path.display()
                    )));
                }
            });
        }
        self.items.push(HistoryItem {
            image,
            params: record.params.clone(),
            record: Some(record),
            thumbnail: None,
        });
    }

    /// Takes what the background threads finished; returns an error message to show, if any.
    pub fn poll(&mut self) -> Option<String> {
        let mut error = None;
        for event in self.events.try_iter() {
            match event {
                Background::Loaded(item) => {
                    self.items.insert(self.loaded, *item);
                    self.loaded += 1;
                }
                Background::Failed(message) => error = Some(message),
            }
        }
        error
    }

    pub fn last_params(&self) -> Option<GenerationParams> {
        self.items.last().map(|i| i.params.clone())
    }

    /// Shows the strip (and the grid view when open); returns what a click asked to reuse.
    pub fn show(&mut self, ui: &mut egui::Ui) -> Option<Reuse> {
        let mut picked = None;
        ui.horizontal(|ui| {
            ui.toggle_value(&mut self.grid_open, "Grid view")
                .on_hover_text("all results, large");
            egui::ScrollArea::horizontal()
                .id_salt("history")
                .max_height(92.0)
                .show(ui, |ui| {
                    ui.horizontal(|ui| {
                        if self.items.is_empty() {
                            ui.weak("Results appear here.");
                        }
                        for i in (0..self.items.len()).rev() {
                            if let Some(r) = self.thumbnail_button(ui, i, 80.0) {
                                picked = Some(r);
                            }
                        }
                    });
                });
        });
        if self.grid_open {
            let mut open = true;
            egui::Window::new("History")
                .open(&mut open)
                .default_size([720.0, 520.0])
                .show(ui.ctx(), |ui| {
                    egui::ScrollArea::vertical().show(ui, |ui| {
                        ui.horizontal_wrapped(|ui| {
                            for i in (0..self.items.len()).rev() {
                                ui.vertical(|ui| {
                                    if let Some(r) = self.thumbnail_button(ui, i, 160.0) {
                                        picked = Some(r);
                                    }
                                    let p = &self.items[i].params;
                                    ui.small(format!("seed {} · {}", p.seed, p.sampler));
                                });
                            }
                        });
                    });
                });
            self.grid_open = open;
        }
        picked
    }

    /// A thumbnail of item `i`, at most `side` points wide and high: a click reuses its
    /// settings, its context menu offers the seed alone.
    fn thumbnail_button(&mut self, ui: &mut egui::Ui, i: usize, side: f32) -> Option<Reuse> {
        let item = &mut self.items[i];
        let tex = item.thumbnail.get_or_insert_with(|| {
            let img = egui::ColorImage::from_rgb(
                [item.image.width, item.image.height],
                &item.image.pixels,
            );
            ui.ctx()
                .load_texture(format!("history-{i}"), img, egui::TextureOptions::LINEAR)
        });
        let aspect = item.image.height as f32 / item.image.width.max(1) as f32;
        let size = egui::vec2(side, side * aspect).min(egui::vec2(side, side));
        let p = &item.params;
        let name = format!("History: seed {}", p.seed);
        let hover = format!(
            "seed {} · {} · {} steps · CFG {}\n{}\nclick to reuse these settings, right-click for the seed only or to add it as a layer",
            p.seed, p.sampler, p.steps, p.cfg_scale, p.prompt
        );
        let response = ui
            .add(egui::Button::image(egui::Image::new((tex.id(), size))))
            .on_hover_text(hover);
        response.widget_info(|| {
            egui::WidgetInfo::labeled(egui::accesskit::Role::Button, true, name.clone())
        });
        let mut reuse = response.clicked().then(|| Reuse::Settings(p.clone()));
        response.context_menu(|ui| {
            if ui.button("Reuse settings").clicked() {
                reuse = Some(Reuse::Settings(p.clone()));
            }
            if ui.button("Reuse seed only").clicked() {
                reuse = Some(Reuse::Seed(p.seed));
            }
            if ui.button("Add to canvas as a layer").clicked() {
                reuse = Some(Reuse::AsLayer(i));
            }
        });
        reuse
    }
}

/// Reads the newest saved results, oldest first, skipping files that are not ours to show.
fn load_all(dir: &Path, tx: &Sender<Background>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return; // No history yet.
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    let skip = files.len().saturating_sub(LOADED_ON_START);
    for path in &files[skip..] {
        match load_item(path) {
            Ok(item) => {
                if tx.send(Background::Loaded(Box::new(item))).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Background::Failed(format!(
                    "history: skipped {}: {e}",
                    path.display()
                )));
            }
        }
    }
}

fn load_item(path: &Path) -> Result<HistoryItem, String> {
    let bytes = crate::png_info::read_png_file(path).map_err(|e| e.to_string())?;
    let info = parse_image(&bytes).ok_or("no generation parameters")?;
    let params = match &info.record {
        Some(r) => r.params.clone(),
        None => info.apply_to(&GenerationParams::default()),
    };
    let rgb = image::load_from_memory(&bytes)
        .map_err(|e| e.to_string())?
        .to_rgb8();
    let (w, h) = rgb.dimensions();
    let image = RgbImage::new(w as usize, h as usize, rgb.into_raw()).map_err(|e| e.to_string())?;
    Ok(HistoryItem {
        image,
        params,
        record: info.record,
        thumbnail: None,
    })
}
