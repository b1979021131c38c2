//! File dialogs that never block a frame: each runs rfd's async dialog on a thread of its own
//! and hands back its answer as a `Command`, which the app executes on a later frame.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::commands::Command;

/// What a dialog asks for, and what its answer becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialog {
    OpenImage,
    SavePng,
    OpenModelFile,
    OpenModelFolder,
    VaeFile,
    PreviewDecoderFolder,
    AddLibraryFolder,
}

impl Dialog {
    /// The command a chosen path becomes.
    fn command(self, path: PathBuf) -> Command {
        match self {
            Dialog::OpenImage => Command::OpenImage(path),
            Dialog::SavePng => Command::SavePng(path),
            Dialog::OpenModelFile | Dialog::OpenModelFolder => Command::LoadModel(path),
            Dialog::VaeFile => Command::SetVae(crate::engine::model::VaeChoice::File(path)),
            Dialog::PreviewDecoderFolder => Command::SetPreviewDecoder(path),
            Dialog::AddLibraryFolder => Command::AddLibraryFolder(path),
        }
    }

    fn run(self) -> Option<PathBuf> {
        let d = rfd::AsyncFileDialog::new();
        let handle = match self {
            Dialog::OpenImage => pollster::block_on(
                d.add_filter("Images", &["png", "jpg", "jpeg", "webp"])
                    .pick_file(),
            ),
            Dialog::SavePng => pollster::block_on(
                d.add_filter("PNG", &["png"])
                    .set_file_name("pentimento.png")
                    .save_file(),
            ),
            Dialog::OpenModelFile => pollster::block_on(
                d.add_filter("Checkpoints", &["safetensors", "ckpt"])
                    .pick_file(),
            ),
            Dialog::VaeFile => pollster::block_on(
                d.add_filter("VAE", &["pt", "ckpt", "safetensors"])
                    .pick_file(),
            ),
            Dialog::OpenModelFolder | Dialog::PreviewDecoderFolder | Dialog::AddLibraryFolder => {
                pollster::block_on(d.pick_folder())
            }
        };
        handle.map(|h| h.path().to_path_buf())
    }
}

/// The dialogs open now and the answers that came back.
pub struct Dialogs {
    answers: Receiver<Command>,
    sender: Sender<Command>,
    /// The dialog open now: one at a time, as a desktop app has them.
    open: Option<Dialog>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Dialogs {
    /// Dialogs that call `wake` when an answer arrives (the UI asks for a repaint).
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        let (sender, answers) = unbounded();
        Self {
            answers,
            sender,
            open: None,
            wake: Arc::new(wake),
        }
    }

    /// Opens `dialog` unless one is open already.
    pub fn open(&mut self, dialog: Dialog) {
        if self.open.is_some() {
            return;
        }
        self.open = Some(dialog);
        let (sender, wake) = (self.sender.clone(), self.wake.clone());
        std::thread::spawn(move || {
            let command = match dialog.run() {
                Some(path) => dialog.command(path),
                None => Command::DialogClosed,
            };
            let _ = sender.send(command);
            wake();
        });
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Answers that arrived since the last frame.
    pub fn answers(&mut self) -> Vec<Command> {
        let answers: Vec<Command> = self.answers.try_iter().collect();
        if !answers.is_empty() {
            self.open = None;
        }
        answers
    }
}
