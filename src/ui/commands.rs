//! What the user can ask the app to do, from any bar, menu, shortcut or dialog, and the one
//! place each is carried out.

use std::path::PathBuf;

use super::dialogs::Dialog;
use super::PentimentoApp;
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
                self.worker.set_preview_decoder(Some(path));
                self.status = "previews decoded with TAESD".into();
            }
            Command::AddLibraryFolder(folder) => self.models.add_folder(folder),
            Command::ShowModels => self.models.show_window(),
            Command::Undo => {
                self.doc.undo();
            }
            Command::Redo => {
                self.doc.redo();
            }
            Command::FitView => self.canvas.fit_pending = true,
            Command::OneToOne => self.canvas.one_to_one(),
            Command::FillMask => self.doc.fill_mask(),
            Command::ClearMask => self.doc.clear_mask(),
            Command::InvertMask => self.doc.invert_mask(),
            Command::Generate => self.generate(),
            Command::Cancel => self.cancel(),
            Command::Accept => {
                self.doc.accept();
            }
            Command::Discard => self.doc.discard(),
            Command::SelectStaged(i) => self.doc.select_staged(i),
            Command::ShowOriginal(show) => self.doc.set_show_original(show),
            Command::ReuseSeed(seed) => {
                self.panel.params.seed = seed;
                self.panel.seed_locked = true;
                self.status = format!("seed {seed} locked for the next Generate");
            }
        }
    }
}
