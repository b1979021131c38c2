//! What the user can ask the app to do, from any bar, menu, shortcut or dialog, and the one
//! place each is carried out.

use std::path::PathBuf;

use super::dialogs::Dialog;
use super::PentimentoApp;
use crate::document::layer_ops::{Direction, LayerError};
use crate::document::LayerId;
use crate::engine::device::DeviceKind;
use crate::engine::model::VaeChoice;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Ask for a path; the answer comes back as another command.
    Open(Dialog),
    /// A dialog was closed without a choice.
    DialogClosed,
    OpenImage(PathBuf),
    SavePng(PathBuf),
    SaveDocument(PathBuf),
    /// An empty canvas of this size (undoable).
    NewCanvas(usize, usize),
    Quit,
    LoadModel(PathBuf),
    SetDevice(DeviceKind),
    SetVae(VaeChoice),
    SetEma(bool),
    SetPreviewDecoder(PathBuf),
    AddLibraryFolder(PathBuf),
    ShowModels,
    /// Settings → Backend.
    ShowBackend,
    /// Compute on this computer (the model used here before comes back).
    UseLocal,
    /// Send jobs to the server at this address.
    UseServer {
        url: String,
        key: Option<String>,
    },
    /// Load this checkpoint of the server's.
    ChooseServerModel(String),
    /// Ask the server for its models again.
    RefreshServer,
    Undo,
    Redo,
    FitView,
    OneToOne,
    FillMask,
    ClearMask,
    InvertMask,
    Generate,
    Cancel,
    Accept,
    Discard,
    SelectStaged(usize),
    ShowOriginal(bool),
    /// A result's seed into the panel, locked.
    ReuseSeed(u64),
    AddPaintLayer,
    SelectLayer(LayerId),
    SetLayerVisible(LayerId, bool),
    /// 0 to 1; successive changes of one layer are one undo step.
    SetLayerOpacity(LayerId, f32),
    MoveLayer(LayerId, Direction),
    MergeDown(LayerId),
    DeleteLayer(LayerId),
    /// A history result onto the canvas as a new layer.
    HistoryToLayer(usize),
    /// Live mode on or off.
    SetLive(bool),
    /// Keep the live picture as a layer.
    KeepLive,
    /// A control layer made from this layer through this preprocessor (none: a sketch →
    /// scribbles, a picture → edges).
    AddControlLayer(LayerId, Option<crate::engine::control::Preprocessor>),
    SetControl(LayerId, crate::document::control_layer::ControlSettings),
    /// A message for the status bar.
    Status(String),
}

impl PentimentoApp {
    pub fn execute(&mut self, command: Command) {
        match command {
            Command::Open(dialog) => self.dialogs.open(dialog),
            Command::DialogClosed => {}
            Command::OpenImage(path) => self.open_image(&path),
            Command::SavePng(path) => self.save_png(&path),
            Command::SaveDocument(path) => self.save_document(&path),
            Command::NewCanvas(w, h) => {
                self.doc.new_canvas(w, h);
                self.panel.params.width = w;
                self.panel.params.height = h;
                self.canvas.fit_pending = true;
                self.status = format!("new canvas {w}×{h} (Ctrl+Z brings the old one back)");
            }
            Command::Quit => self.quit_requested = true,
            Command::LoadModel(path) => self.load_model(path),
            Command::SetDevice(kind) => self.set_device(kind),
            Command::SetVae(choice) => self.set_vae(choice),
            Command::SetEma(ema) => {
                self.load_options.ema = ema;
                if let Some(path) = self.model_path.clone() {
                    self.load_model(path);
                }
            }
            Command::SetPreviewDecoder(path) => {
                self.status = match self.backend.set_preview_decoder(Some(path)) {
                    Ok(()) => "previews decoded with TAESD".into(),
                    Err(e) => e,
                };
            }
            Command::AddLibraryFolder(folder) => self.models.add_folder(folder),
            Command::ShowModels => self.models.show_window(),
            Command::ShowBackend => self.backend_panel.open = true,
            Command::UseLocal => self.use_local(),
            Command::UseServer { url, key } => self.use_server(&url, key),
            Command::ChooseServerModel(title) => self.choose_server_model(title),
            Command::RefreshServer => self.refresh_server(),
            // What the last action said no longer holds once it is undone.
            Command::Undo => {
                self.status = if self.doc.undo() {
                    "undone"
                } else {
                    "nothing to undo"
                }
                .into();
            }
            Command::Redo => {
                self.status = if self.doc.redo() {
                    "redone"
                } else {
                    "nothing to redo"
                }
                .into();
            }
            Command::FitView => self.canvas.fit_pending = true,
            Command::OneToOne => self.canvas.one_to_one(),
            Command::FillMask => self.doc.fill_mask(),
            Command::ClearMask => self.doc.clear_mask(),
            Command::InvertMask => self.doc.invert_mask(),
            Command::Generate => self.generate(),
            Command::Cancel => self.cancel(),
            Command::Accept => {
                let kept = self.doc.accept();
                let message = if self.doc.mask_is_empty() {
                    "result kept as a layer"
                } else {
                    "result kept as a layer; the mask stays for another pass (Clear mask removes it)"
                };
                self.layer_outcome(kept.map(|_| ()), message);
            }
            Command::Discard => self.doc.discard(),
            Command::SelectStaged(i) => self.doc.select_staged(i),
            Command::ShowOriginal(show) => self.doc.set_show_original(show),
            Command::ReuseSeed(seed) => {
                self.panel.params.seed = seed;
                self.panel.seed_locked = true;
                self.status = format!("seed {seed} locked for the next Generate");
            }
            Command::AddPaintLayer => {
                let added = self.doc.add_paint_layer();
                self.layer_outcome(added.map(|_| ()), "new paint layer");
                if self.doc.active_layer().kind == crate::document::LayerKind::Paint
                    && !self.tool.paints_layer()
                {
                    // A new sketch layer is for painting on.
                    self.tool = crate::document::brush::Tool::ColorBrush(self.color);
                }
            }
            Command::SelectLayer(id) => {
                let selected = self.doc.select_layer(id);
                self.layer_outcome(selected, "");
            }
            Command::SetLayerVisible(id, visible) => {
                let done = self.doc.set_layer_visible(id, visible);
                self.layer_outcome(done, "");
            }
            Command::SetLayerOpacity(id, opacity) => {
                let done = self.doc.set_layer_opacity(id, opacity);
                self.layer_outcome(done, "");
            }
            Command::MoveLayer(id, direction) => {
                let done = self.doc.move_layer(id, direction);
                self.layer_outcome(done, "");
            }
            Command::MergeDown(id) => {
                let done = self.doc.merge_down(id);
                self.layer_outcome(done, "merged down");
            }
            Command::DeleteLayer(id) => {
                let done = self.doc.delete_layer(id);
                self.layer_outcome(done, "layer deleted (Ctrl+Z brings it back)");
            }
            Command::AddControlLayer(source, module) => self.add_control_layer(source, module),
            Command::SetControl(id, settings) => {
                let done = self.doc.set_control(id, settings);
                self.layer_outcome(done, "");
            }
            Command::Status(message) => self.status = message,
            Command::SetLive(on) => self.set_live(on),
            Command::KeepLive => self.keep_live(),
            Command::HistoryToLayer(index) => {
                let added = match self.history.items.get(index) {
                    Some(item) => self
                        .doc
                        .add_image_layer(&item.image, item.record.clone())
                        .map(|_| ()),
                    None => Err(LayerError::NotFound),
                };
                self.layer_outcome(added, "history result added as a layer");
            }
        }
    }

    /// A control layer from `source`: a sketch (paint layer) through the scribble
    /// preprocessor, a picture through Canny; with the network chosen last or one named for it.
    fn add_control_layer(
        &mut self,
        source: LayerId,
        chosen: Option<crate::engine::control::Preprocessor>,
    ) {
        use crate::engine::control::preprocess::{Preprocessor, DEFAULT_CANNY};
        let Some(kind) = self
            .doc
            .layers()
            .iter()
            .find(|l| l.id == source)
            .map(|l| l.kind)
        else {
            return self.layer_outcome(Err(LayerError::NotFound), "");
        };
        let module = chosen.unwrap_or(match kind {
            crate::document::LayerKind::Paint => Preprocessor::Scribble,
            _ => Preprocessor::Canny {
                low: DEFAULT_CANNY.0,
                high: DEFAULT_CANNY.1,
            },
        });
        let library = self.models.settings_path();
        let model = self.controls.default_model(module, library.as_deref());
        if self.doc.layer_is_empty(source) {
            return self.layer_outcome(Err(LayerError::Empty), "");
        }
        if module.needs_model() {
            // A network's preprocessor runs off the UI thread; the layer comes when it is done.
            let Some(picture) = self.doc.layer_picture(source) else {
                return self.layer_outcome(Err(LayerError::NotFound), "");
            };
            let hub = self.models.hub_cache();
            self.status = self.controls.start_depth(source, picture, model, &hub);
            return;
        }
        let message = match &model {
            Some(m) => format!(
                "control layer ({}) with {}; paint on it to correct it",
                module.name(),
                m.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ),
            None => format!(
                "control layer ({}); choose its ControlNet model in the layer's settings",
                module.name()
            ),
        };
        let added = self.doc.add_control_layer(source, module, model);
        if added.is_ok() {
            // Corrections of a condition are white (add) or the eraser (remove), not colour.
            self.color = [255, 255, 255];
            self.tool = crate::document::brush::Tool::ColorBrush(self.color);
        }
        self.layer_outcome(added.map(|_| ()), &message);
    }

    /// A depth map made off the UI thread becomes its control layer.
    pub(super) fn depth_layer_done(&mut self, done: super::control_panel::DepthDone) {
        use crate::engine::control::Preprocessor;
        match done.map {
            Ok(map) => {
                let added = self.doc.add_control_layer_with(
                    done.source,
                    Preprocessor::Depth,
                    &map,
                    done.model,
                );
                self.layer_outcome(added.map(|_| ()), "depth control layer (near is white)");
            }
            Err(e) => self.status = format!("depth map: {e}"),
        }
    }

    /// Says what a layer command did, or why it could not.
    pub(super) fn layer_outcome(&mut self, outcome: Result<(), LayerError>, done: &str) {
        match outcome {
            Ok(()) if !done.is_empty() => self.status = done.into(),
            Ok(()) => {}
            Err(e) => self.status = format!("layers: {e}"),
        }
    }
}
