//! File dialogs that never block a frame: each runs rfd's async dialog on a thread of its own
//! and hands back its answer as a `Command`, which the app executes on a later frame. Where the
//! system has no dialog to show (no desktop portal, no zenity), a path box inside the window
//! takes its place, saying why.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};
use eframe::egui;

use super::commands::Command;

/// What a dialog asks for, and what its answer becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialog {
    OpenImage,
    SavePng,
    SaveDocument,
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
            Dialog::SaveDocument => Command::SaveDocument(path),
            Dialog::OpenModelFile | Dialog::OpenModelFolder => Command::LoadModel(path),
            Dialog::VaeFile => Command::SetVae(crate::engine::model::VaeChoice::File(path)),
            Dialog::PreviewDecoderFolder => Command::SetPreviewDecoder(path),
            Dialog::AddLibraryFolder => Command::AddLibraryFolder(path),
        }
    }

    fn title(self) -> &'static str {
        match self {
            Dialog::OpenImage => "Open image",
            Dialog::SavePng => "Save image as (PNG, JPEG or WebP)",
            Dialog::SaveDocument => "Save document as",
            Dialog::OpenModelFile => "Open model file",
            Dialog::OpenModelFolder => "Open model folder",
            Dialog::VaeFile => "VAE file",
            Dialog::PreviewDecoderFolder => "TAESD folder",
            Dialog::AddLibraryFolder => "Add model folder",
        }
    }

    fn run(self) -> Option<PathBuf> {
        let d = rfd::AsyncFileDialog::new();
        let handle = match self {
            Dialog::OpenImage => pollster::block_on(
                d.add_filter(
                    "Images and documents",
                    &["png", "jpg", "jpeg", "webp", "pentimento"],
                )
                .pick_file(),
            ),
            Dialog::SavePng => pollster::block_on(
                d.add_filter("PNG", &["png"])
                    .add_filter("JPEG (parameters in EXIF)", &["jpg", "jpeg"])
                    .add_filter("WebP (parameters in EXIF)", &["webp"])
                    .set_file_name("pentimento.png")
                    .save_file(),
            ),
            Dialog::SaveDocument => pollster::block_on(
                d.add_filter("Pentimento document", &["pentimento"])
                    .set_file_name("untitled.pentimento")
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

/// A dialog that answered "no file" faster than anyone can click Cancel was never shown.
const NEVER_SHOWN: std::time::Duration = std::time::Duration::from_millis(250);

/// What a dialog thread sends back.
enum Answer {
    Chosen(Command),
    Closed,
    /// The system showed no dialog.
    Unavailable(Dialog),
}

/// The in-window stand-in for a dialog the system cannot show.
struct PathBox {
    dialog: Dialog,
    text: String,
}

/// The dialogs open now and the answers that came back.
pub struct Dialogs {
    answers: Receiver<Answer>,
    sender: Sender<Answer>,
    path_box: Option<PathBox>,
    /// Set once a dialog failed to show: later ones go straight to the path box.
    system_has_none: bool,
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
            path_box: None,
            system_has_none: false,
            open: None,
            wake: Arc::new(wake),
        }
    }

    /// Opens `dialog` unless one is open already.
    pub fn open(&mut self, dialog: Dialog) {
        if self.open.is_some() || self.path_box.is_some() {
            return;
        }
        if self.system_has_none {
            self.path_box = Some(PathBox {
                dialog,
                text: String::new(),
            });
            return;
        }
        self.open = Some(dialog);
        let (sender, wake) = (self.sender.clone(), self.wake.clone());
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let answer = match dialog.run() {
                Some(path) => Answer::Chosen(dialog.command(path)),
                None if started.elapsed() < NEVER_SHOWN => Answer::Unavailable(dialog),
                None => Answer::Closed,
            };
            let _ = sender.send(answer);
            wake();
        });
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some() || self.path_box.is_some()
    }

    /// Answers that arrived since the last frame; a dialog the system could not show becomes
    /// the path box (and a message for the status bar).
    pub fn answers(&mut self) -> (Vec<Command>, Option<String>) {
        let mut commands = vec![];
        let mut message = None;
        for answer in self.answers.try_iter() {
            self.open = None;
            match answer {
                Answer::Chosen(c) => commands.push(c),
                Answer::Closed => commands.push(Command::DialogClosed),
                Answer::Unavailable(dialog) => {
                    self.system_has_none = true;
                    self.path_box = Some(PathBox {
                        dialog,
                        text: String::new(),
                    });
                    message = Some(
                        "this system shows no file dialogs (install xdg-desktop-portal or zenity): type the path, or drop files on the window"
                            .to_string(),
                    );
                }
            }
        }
        (commands, message)
    }

    /// The path box, when one is open; its answer as a command.
    pub fn show(&mut self, ctx: &egui::Context) -> Option<Command> {
        let path_box = self.path_box.as_mut()?;
        let mut answer = None;
        let mut open = true;
        egui::Window::new(path_box.dialog.title())
            .collapsible(false)
            .resizable(false)
            .open(&mut open)
            .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
            .show(ctx, |ui| {
                ui.label("No file dialog is available on this system. Path:");
                let edit = ui.add(
                    egui::TextEdit::singleline(&mut path_box.text)
                        .desired_width(420.0)
                        .hint_text("/home/you/pictures/photo.png"),
                );
                edit.request_focus();
                let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                ui.horizontal(|ui| {
                    let path = path_box.text.trim();
                    if (ui
                        .add_enabled(!path.is_empty(), egui::Button::new("OK"))
                        .clicked()
                        || entered)
                        && !path.is_empty()
                    {
                        answer = Some(path_box.dialog.command(PathBuf::from(path)));
                    }
                    if ui.button("Cancel").clicked() {
                        answer = Some(Command::DialogClosed);
                    }
                });
            });
        if !open {
            answer = Some(Command::DialogClosed);
        }
        if answer.is_some() {
            self.path_box = None;
        }
        answer
    }
}
