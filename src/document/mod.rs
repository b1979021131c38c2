//! What the user is editing: the image, the mask, results waiting to be accepted, and the undo
//! history of every change. No GUI types: the canvas view reads this and sends it input.
//!
//! `stroke` paints, `staging` holds results, `undo` keeps the history in a memory budget,
//! `region` copies rectangles.

pub mod brush;
pub mod file;
pub mod region;
mod staging;
mod stroke;
pub mod stroke_path;
pub mod undo;

use crate::engine::image::RgbImage;
use crate::engine::mask::Mask;
use crate::png_info::ImageRecord;
pub use region::Rect;
pub use staging::StagedResult;
use staging::Staging;
use stroke::ActiveStroke;
use undo::{Edit, LayerDelta, Snapshot, UndoStack};

/// Revisions are numbered across all documents, so a document that replaces another (opened,
/// restored) never shares a revision number with what the canvas holds from the old one.
fn next_revision() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub struct Document {
    width: usize,
    height: usize,
    /// RGBA, row-major; alpha 0 where there is no image.
    rgba: Vec<u8>,
    /// 0 = keep, 255 = regenerate.
    mask: Vec<u8>,
    /// The record of what made the image (an accepted result, an opened PNG's parameters).
    record: Option<ImageRecord>,
    history: UndoStack,
    stroke: Option<ActiveStroke>,
    /// Where the last stroke ended (a Shift+click draws a line from there).
    last_stroke_end: Option<(f32, f32)>,
    staging: Staging,
    /// Bumped on every change of the image or the mask, for the canvas to upload.
    image_revision: u64,
    mask_revision: u64,
    /// What changed since the canvas last asked, so that it uploads only that.
    image_dirty: Option<Rect>,
    mask_dirty: Option<Rect>,
}

impl Document {
    /// An empty, transparent canvas.
    pub fn blank(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            rgba: vec![0; width * height * 4],
            mask: vec![0; width * height],
            record: None,
            history: UndoStack::default(),
            stroke: None,
            last_stroke_end: None,
            staging: Staging::default(),
            image_revision: next_revision(),
            mask_revision: next_revision(),
            image_dirty: None,
            mask_dirty: None,
        }
    }

    pub fn from_rgb(image: &RgbImage) -> Self {
        let mut doc = Self::blank(image.width, image.height);
        doc.rgba = rgb_to_rgba(image);
        doc
    }

    /// The same document with an undo budget other than `undo::UNDO_BUDGET_BYTES`.
    pub fn with_undo_budget(mut self, bytes: usize) -> Self {
        self.history = UndoStack::with_budget(bytes);
        self
    }

    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    pub fn rgba(&self) -> &[u8] {
        &self.rgba
    }

    pub fn mask_bytes(&self) -> &[u8] {
        &self.mask
    }

    /// What made the image, when known: Save writes it into the PNG.
    pub fn record(&self) -> Option<&ImageRecord> {
        self.record.as_ref()
    }

    pub fn image_revision(&self) -> u64 {
        self.image_revision
    }

    pub fn mask_revision(&self) -> u64 {
        self.mask_revision
    }

    /// Whether any pixel has image content (a blank canvas has none).
    pub fn has_image(&self) -> bool {
        self.rgba.chunks_exact(4).any(|p| p[3] > 0)
    }

    /// The image composited over black, as the engine takes it.
    pub fn rgb(&self) -> RgbImage {
        let pixels = self
            .rgba
            .chunks_exact(4)
            .flat_map(|p| {
                let a = p[3] as u32;
                [
                    (p[0] as u32 * a / 255) as u8,
                    (p[1] as u32 * a / 255) as u8,
                    (p[2] as u32 * a / 255) as u8,
                ]
            })
            .collect();
        RgbImage {
            width: self.width,
            height: self.height,
            pixels,
        }
    }

    pub fn mask(&self) -> Mask {
        Mask {
            width: self.width,
            height: self.height,
            values: self.mask.iter().map(|&v| v as f32 / 255.0).collect(),
        }
    }

    pub fn mask_is_empty(&self) -> bool {
        self.mask.iter().all(|&v| v == 0)
    }

    // --- whole-mask operations -------------------------------------------------------------

    fn set_mask(&mut self, f: impl Fn(u8) -> u8) {
        let before = self.mask.clone();
        for v in &mut self.mask {
            *v = f(*v);
        }
        let size = (self.width, self.height);
        let delta = LayerDelta::between(&before, &self.mask, size, 1, self.whole());
        if delta.is_some() {
            self.history.push(Edit::Change {
                image: None,
                mask: delta,
                records: None,
            });
            self.touch_mask(None);
        }
    }

    pub fn fill_mask(&mut self) {
        self.set_mask(|_| 255);
    }

    pub fn clear_mask(&mut self) {
        self.set_mask(|_| 0);
    }

    pub fn invert_mask(&mut self) {
        self.set_mask(|v| 255 - v);
    }

    // --- whole-image changes ---------------------------------------------------------------

    /// Replaces the whole image (and clears the mask), undoably; `record` says what made it
    /// (an opened PNG's parameters), if anything.
    pub fn replace_image(&mut self, image: &RgbImage, record: Option<ImageRecord>) {
        let mask = vec![0; image.width * image.height];
        self.set_state(image, mask, record);
    }

    /// Sets image, mask and record as one undoable step.
    fn set_state(&mut self, image: &RgbImage, mask: Vec<u8>, record: Option<ImageRecord>) {
        let rgba = rgb_to_rgba(image);
        let records = Box::new((self.record.clone(), record.clone()));
        if (image.width, image.height) == self.size() {
            let size = self.size();
            let all = self.whole();
            let edit = Edit::Change {
                image: LayerDelta::between(&self.rgba, &rgba, size, 4, all),
                mask: LayerDelta::between(&self.mask, &mask, size, 1, all),
                records: Some(records),
            };
            self.rgba = rgba;
            self.mask = mask;
            self.record = record;
            self.touch_image(None);
            self.touch_mask(None);
            self.history.push(edit);
        } else {
            let before = Snapshot::of(self.width, self.height, &self.rgba, &self.mask);
            let after = Snapshot::of(image.width, image.height, &rgba, &mask);
            self.resize_to(image.width, image.height, rgba, mask);
            self.record = record;
            self.history.push(Edit::Resize {
                before,
                after,
                records,
            });
        }
    }

    /// An empty, transparent canvas of `width`×`height` in place of this one, undoably (the old
    /// image, mask and record come back with Ctrl+Z).
    pub fn new_canvas(&mut self, width: usize, height: usize) {
        self.discard();
        let records = Box::new((self.record.take(), None));
        let before = Snapshot::of(self.width, self.height, &self.rgba, &self.mask);
        let (rgba, mask) = (vec![0; width * height * 4], vec![0; width * height]);
        let after = Snapshot::of(width, height, &rgba, &mask);
        self.resize_to(width, height, rgba, mask);
        self.history.push(Edit::Resize {
            before,
            after,
            records,
        });
    }

    /// New layers of another size: everything is new to the canvas (nothing of the old size
    /// stays marked dirty).
    fn resize_to(&mut self, width: usize, height: usize, rgba: Vec<u8>, mask: Vec<u8>) {
        self.width = width;
        self.height = height;
        self.rgba = rgba;
        self.mask = mask;
        self.stroke = None;
        self.last_stroke_end = None;
        self.image_dirty = None;
        self.mask_dirty = None;
        self.touch_image(None);
        self.touch_mask(None);
    }

    // --- undo ----------------------------------------------------------------------------

    pub fn can_undo(&self) -> bool {
        self.history.can_undo()
    }

    pub fn can_redo(&self) -> bool {
        self.history.can_redo()
    }

    /// Bytes the undo history holds.
    pub fn undo_bytes(&self) -> usize {
        self.history.bytes()
    }

    pub fn undo(&mut self) -> bool {
        let Some(edit) = self.history.take_undo() else {
            return false;
        };
        self.apply(&edit, true);
        self.history.done_undo(edit);
        true
    }

    pub fn redo(&mut self) -> bool {
        let Some(edit) = self.history.take_redo() else {
            return false;
        };
        self.apply(&edit, false);
        self.history.done_redo(edit);
        true
    }

    fn apply(&mut self, edit: &Edit, backwards: bool) {
        let pick = |r: &(Option<ImageRecord>, Option<ImageRecord>)| {
            if backwards {
                r.0.clone()
            } else {
                r.1.clone()
            }
        };
        match edit {
            Edit::Change {
                image,
                mask,
                records,
            } => {
                if let Some(d) = image {
                    if d.apply(&mut self.rgba, self.width) {
                        self.touch_image(d.area());
                    }
                }
                if let Some(d) = mask {
                    if d.apply(&mut self.mask, self.width) {
                        self.touch_mask(d.area());
                    }
                }
                if let Some(r) = records {
                    self.record = pick(r);
                }
            }
            Edit::Resize {
                before,
                after,
                records,
            } => {
                let state = if backwards { before } else { after };
                if let Some((rgba, mask)) = state.layers() {
                    self.resize_to(state.width, state.height, rgba, mask);
                    self.record = pick(records);
                }
            }
        }
    }

    fn whole(&self) -> Rect {
        region::whole(self.width, self.height)
    }

    /// Records a change of the image (`None`: all of it).
    fn touch_image(&mut self, region: Option<Rect>) {
        let r = region.unwrap_or_else(|| self.whole());
        self.image_revision = next_revision();
        self.image_dirty = Some(self.image_dirty.map_or(r, |d| region::union(d, r)));
    }

    fn touch_mask(&mut self, region: Option<Rect>) {
        let r = region.unwrap_or_else(|| self.whole());
        self.mask_revision = next_revision();
        self.mask_dirty = Some(self.mask_dirty.map_or(r, |d| region::union(d, r)));
    }

    /// The part of the image changed since the last call.
    pub fn take_image_dirty(&mut self) -> Option<Rect> {
        self.image_dirty.take()
    }

    pub fn take_mask_dirty(&mut self) -> Option<Rect> {
        self.mask_dirty.take()
    }

    /// The bytes of a region of the image (RGBA) or the mask; empty if it does not fit.
    pub fn image_region(&self, r: Rect) -> Vec<u8> {
        region::copy_region(&self.rgba, self.width, 4, r)
    }

    pub fn mask_region(&self, r: Rect) -> Vec<u8> {
        region::copy_region(&self.mask, self.width, 1, r)
    }
}

fn rgb_to_rgba(image: &RgbImage) -> Vec<u8> {
    image
        .pixels
        .chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_never_share_revisions() {
        let (a, b) = (Document::blank(8, 8), Document::blank(8, 8));
        assert_ne!(a.image_revision(), b.image_revision());
        assert_ne!(a.mask_revision(), b.mask_revision());
    }
    use brush::{BrushSettings, Tool};

    fn test_record() -> ImageRecord {
        ImageRecord {
            version: "test".into(),
            kind: "inpaint".into(),
            params: Default::default(),
            model: None,
            model_hash: None,
            vae: None,
            inpaint: None,
            prediction: None,
            source_image_sha256: None,
            sweep: None,
        }
    }

    #[test]
    fn a_stroke_undoes_and_redoes() {
        let mut doc = Document::blank(64, 64);
        doc.begin_stroke(
            Tool::MaskBrush,
            BrushSettings {
                size: 8.0,
                hardness: 1.0,
            },
            (10.0, 10.0),
            1.0,
        );
        doc.continue_stroke((50.0, 10.0), 1.0);
        doc.end_stroke();
        let painted = doc.mask_bytes().to_vec();
        // No gaps along a fast drag.
        assert!((10..50).all(|x| painted[10 * 64 + x] == 255));
        assert!(doc.undo());
        assert!(doc.mask_is_empty());
        assert!(doc.redo());
        assert_eq!(doc.mask_bytes(), &painted[..]);
    }

    #[test]
    fn colour_strokes_and_accepting_are_undoable() {
        let img = RgbImage::new(16, 16, vec![10; 16 * 16 * 3]).unwrap();
        let mut doc = Document::from_rgb(&img);
        doc.begin_stroke(
            Tool::ColorBrush([200, 0, 0]),
            BrushSettings {
                size: 4.0,
                hardness: 1.0,
            },
            (8.0, 8.0),
            1.0,
        );
        doc.end_stroke();
        assert_eq!(doc.rgba()[(8 * 16 + 8) * 4], 200);
        doc.stage(StagedResult {
            image: RgbImage::new(16, 16, vec![99; 16 * 16 * 3]).unwrap().into(),
            record: test_record(),
        });
        assert_eq!(
            doc.rgba()[0],
            10,
            "a staged result does not touch the image"
        );
        assert!(doc.accept());
        assert_eq!(doc.rgba()[0], 99);
        assert!(doc.undo());
        assert_eq!(doc.rgba()[0], 10);
        assert_eq!(doc.rgba()[(8 * 16 + 8) * 4], 200);
    }

    #[test]
    fn mask_operations() {
        let mut doc = Document::blank(4, 4);
        doc.fill_mask();
        assert!(doc.mask_bytes().iter().all(|&v| v == 255));
        doc.invert_mask();
        assert!(doc.mask_is_empty());
        doc.undo();
        doc.clear_mask();
        assert!(doc.mask_is_empty());
    }

    /// Accept, undo, redo: image, mask and record come back together.
    #[test]
    fn accept_undo_redo_restore_image_mask_and_record_together() {
        let img = RgbImage::new(32, 32, vec![10; 32 * 32 * 3]).unwrap();
        let mut doc = Document::from_rgb(&img);
        doc.fill_mask();
        doc.stage(StagedResult {
            image: RgbImage::new(32, 32, vec![99; 32 * 32 * 3]).unwrap().into(),
            record: test_record(),
        });
        assert!(doc.accept());
        let after = (doc.rgba().to_vec(), doc.mask_bytes().to_vec());
        assert!(after.1.iter().all(|&v| v == 255), "the mask is kept");
        assert!(doc.record().is_some());
        assert!(doc.undo());
        assert_eq!(doc.rgba()[0], 10);
        assert!(doc.mask_bytes().iter().all(|&v| v == 255));
        assert!(doc.record().is_none());
        assert!(doc.redo());
        assert_eq!((doc.rgba().to_vec(), doc.mask_bytes().to_vec()), after);
        assert!(doc.record().is_some());
        // Undo past the mask fill too, and forward again.
        assert!(doc.undo() && doc.undo());
        assert!(doc.mask_is_empty());
        assert!(doc.redo() && doc.redo());
        assert_eq!((doc.rgba().to_vec(), doc.mask_bytes().to_vec()), after);
    }

    /// A full-canvas change of a 4000×3000 photo-like image costs less than one copy of it.
    #[test]
    fn a_full_canvas_edit_costs_less_than_one_image_copy() {
        let (w, h) = (4000, 3000);
        let photo = |shift: usize| {
            let pixels = (0..w * h * 3)
                .map(|i| {
                    let (p, c) = (i / 3, i % 3);
                    let (x, y) = (p % w, p / w);
                    ((x * (c + 1) + y * 2 + shift + (x * y) % 7) % 256) as u8
                })
                .collect();
            RgbImage::new(w, h, pixels).unwrap()
        };
        let mut doc = Document::from_rgb(&photo(0));
        doc.stage(StagedResult {
            image: photo(37).into(),
            record: test_record(),
        });
        assert!(doc.accept());
        let copy = w * h * 4;
        assert!(
            doc.undo_bytes() < copy,
            "undo holds {} bytes, one copy is {copy}",
            doc.undo_bytes()
        );
        assert!(doc.undo());
        assert_eq!(doc.rgba()[..12], rgb_to_rgba(&photo(0))[..12]);
    }

    #[test]
    fn the_undo_budget_drops_the_oldest_edits() {
        let mut doc = Document::blank(256, 256).with_undo_budget(4096);
        for i in 0..50 {
            doc.begin_stroke(
                Tool::MaskBrush,
                BrushSettings {
                    size: 3.0,
                    hardness: 1.0,
                },
                ((i * 5) as f32, (i * 5) as f32),
                1.0,
            );
            doc.end_stroke();
        }
        assert!(doc.undo_bytes() <= 4096);
        let mut undone = 0;
        while doc.undo() {
            undone += 1;
        }
        assert!(undone > 1 && undone < 50, "{undone}");
    }

    /// Opening a smaller image never reaches outside its layers (issue: a crash when the old
    /// image's dirty area was merged with the new one).
    #[test]
    fn a_smaller_image_replaces_a_larger_one_cleanly() {
        let mut doc = Document::blank(512, 512);
        doc.discard();
        doc.replace_image(
            &RgbImage::new(128, 96, vec![5; 128 * 96 * 3]).unwrap(),
            None,
        );
        let dirty = doc.take_image_dirty().unwrap();
        assert_eq!((dirty.width, dirty.height), (128, 96));
        assert_eq!(doc.image_region(dirty).len(), 128 * 96 * 4);
        assert!(doc.undo());
        assert_eq!(doc.size(), (512, 512));
    }
}
