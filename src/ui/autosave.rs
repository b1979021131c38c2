//! Autosave: a few seconds after the canvas changes, the document is written (on a thread of
//! its own, atomically) to `autosave.pentimento` in the data folder. A clean quit removes it; a
//! crash or a kill leaves it, and the next start offers to restore it. A write cut short leaves
//! the previous autosave whole (see `atomic_file`).

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::document::file::DocumentSnapshot;
use crate::document::Document;
use crate::engine::params::GenerationParams;

/// How long the canvas must rest after a change before it is written: strokes in a row are
/// saved once, and no more than a few seconds of work is ever at risk.
pub const AUTOSAVE_DELAY: Duration = Duration::from_secs(3);

pub struct Autosave {
    path: PathBuf,
    /// Held while this window runs: a second window neither writes the autosave nor offers
    /// to restore the first one's.
    _lock: std::fs::File,
    /// The document revisions last written (or restored, or loaded).
    saved: (u64, u64),
    /// When the first change not yet written was seen.
    dirty_since: Option<Instant>,
    writing: Option<JoinHandle<std::io::Result<()>>>,
}

impl Autosave {
    /// The autosave at `path`, unless another window holds it.
    pub fn open(path: PathBuf) -> Option<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ok()?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.with_extension("pentimento.lock"))
            .ok()?;
        lock.try_lock().ok()?;
        Some(Self {
            path,
            _lock: lock,
            saved: (0, 0),
            dirty_since: None,
            writing: None,
        })
    }

    /// Writes `doc` now (a quit with unsaved work: the next start offers it back).
    pub fn write_now(
        &mut self,
        doc: &Document,
        settings: &GenerationParams,
    ) -> std::io::Result<()> {
        if let Some(w) = self.writing.take() {
            let _ = w.join();
        }
        DocumentSnapshot::of(doc)
            .with_settings(settings.clone())
            .write(&self.path)
    }

    /// The autosave a previous session left, if it did.
    pub fn leftover(&self) -> Option<PathBuf> {
        self.path.is_file().then(|| self.path.clone())
    }

    /// Takes `doc` as saved (a restored or newly opened document is not a change).
    pub fn mark_saved(&mut self, doc: &Document) {
        self.saved = (doc.image_revision(), doc.mask_revision());
        self.dirty_since = None;
    }

    /// Called every frame: starts a write when the document changed and has rested; returns an
    /// error message from a finished write.
    pub fn tick(&mut self, doc: &Document, settings: &GenerationParams) -> Option<String> {
        let mut message = None;
        if self.writing.as_ref().is_some_and(|w| w.is_finished()) {
            if let Some(Ok(Err(e))) = self.writing.take().map(JoinHandle::join) {
                message = Some(format!("{}: autosave failed: {e}", self.path.display()));
            }
        }
        let now = (doc.image_revision(), doc.mask_revision());
        if now == self.saved || doc.stroke_active() {
            return message;
        }
        let since = *self.dirty_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= AUTOSAVE_DELAY && self.writing.is_none() {
            let snapshot = DocumentSnapshot::of(doc).with_settings(settings.clone());
            let path = self.path.clone();
            self.writing = Some(std::thread::spawn(move || {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                snapshot.write(&path)
            }));
            self.saved = now;
            self.dirty_since = None;
        }
        message
    }

    /// Whether a change waits to be written (for the frame loop to wake up for it).
    pub fn pending(&self) -> bool {
        self.dirty_since.is_some() || self.writing.is_some()
    }

    /// A clean quit: nothing to restore next time.
    pub fn discard(&mut self) {
        if let Some(w) = self.writing.take() {
            let _ = w.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
