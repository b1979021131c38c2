//! What the user is editing: the image as a stack of layers, the mask, results waiting to be
//! kept, and the undo history of every change. No GUI types: the canvas view reads this and
//! sends it input.
//!
//! `layers` composites, `layer_ops` adds, removes, orders and merges layers, `stroke` paints,
//! `staging` holds results, `undo` keeps the history in a memory budget, `region` copies
//! rectangles, `file` reads and writes `.pentimento` documents.

pub mod brush;
pub mod control_layer;
pub mod file;
pub mod layer_ops;
pub mod layers;
pub mod region;
mod staging;
mod stroke;
pub mod stroke_path;
pub mod undo;

use crate::engine::image::RgbImage;
use crate::engine::mask::Mask;
use crate::png_info::ImageRecord;
pub use layers::{Layer, LayerId, LayerKind, LayerProps};
pub use region::Rect;
pub use staging::StagedResult;
use staging::Staging;
use stroke::ActiveStroke;
use undo::{Edit, LayerDelta, PackedDocument, UndoStack};

/// Revisions are numbered across all documents, so a document that replaces another (opened,
/// restored) never shares a revision number with what the canvas holds from the old one.
fn next_revision() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub struct Document {
    width: usize,
    height: usize,
    /// Bottom first; never empty.
    layers: Vec<Layer>,
    /// The layer colour strokes paint on.
    active: LayerId,
    /// The next layer's id.
    next_id: u64,
    /// The visible layers composited (RGBA, straight alpha): what the canvas shows and the
    /// engine reads. Kept up to date with every change.
    rgba: Vec<u8>,
    /// 0 = keep, 255 = regenerate.
    mask: Vec<u8>,
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
    /// An empty, transparent canvas: one empty background layer.
    pub fn blank(width: usize, height: usize) -> Self {
        Self::with_background(width, height, vec![0; width * height * 4], None)
    }

    pub fn from_rgb(image: &RgbImage) -> Self {
        Self::with_background(image.width, image.height, rgb_to_rgba(image), None)
    }

    fn with_background(
        width: usize,
        height: usize,
        rgba: Vec<u8>,
        record: Option<ImageRecord>,
    ) -> Self {
        let background = Layer {
            id: LayerId(1),
            kind: LayerKind::Background,
            props: LayerProps::named("Background"),
            record,
            rgba: rgba.clone(),
        };
        Self {
            width,
            height,
            layers: vec![background],
            active: LayerId(1),
            next_id: 2,
            rgba,
            mask: vec![0; width * height],
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

    /// A document of these layers (bottom first, at least one, each `width`×`height`) and mask,
    /// as a file holds them; `None` if they do not fit together.
    pub fn from_layers(
        width: usize,
        height: usize,
        layers: Vec<Layer>,
        mask: Vec<u8>,
        active: usize,
    ) -> Option<Self> {
        if layers.is_empty()
            || layers.len() > layers::MAX_LAYERS
            || mask.len() != width * height
            || layers.iter().any(|l| l.rgba.len() != width * height * 4)
        {
            return None;
        }
        let mut doc = Self::blank(width, height);
        doc.active = layers.get(active).unwrap_or(&layers[layers.len() - 1]).id;
        doc.next_id = layers.iter().map(|l| l.id.0).max().unwrap_or(0) + 1;
        doc.layers = layers;
        doc.mask = mask;
        doc.recomposite(None);
        Some(doc)
    }

    /// The same document with an undo budget other than `undo::UNDO_BUDGET_BYTES`.
    pub fn with_undo_budget(mut self, bytes: usize) -> Self {
        self.history = UndoStack::with_budget(bytes);
        self
    }

    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The visible layers composited.
    pub fn rgba(&self) -> &[u8] {
        &self.rgba
    }

    pub fn mask_bytes(&self) -> &[u8] {
        &self.mask
    }

    /// What made the image, when known: the record of the topmost visible layer that has one
    /// (Save writes it into the PNG).
    pub fn record(&self) -> Option<&ImageRecord> {
        self.layers
            .iter()
            .rev()
            .filter(|l| l.props.visible && control_layer::is_picture(l))
            .find_map(|l| l.record.as_ref())
    }

    pub fn image_revision(&self) -> u64 {
        self.image_revision
    }

    pub fn mask_revision(&self) -> u64 {
        self.mask_revision
    }

    /// Whether any pixel has image content (a blank canvas has none).
    pub fn has_image(&self) -> bool {
        if !self.shows_control_layers() {
            return self.rgba.chunks_exact(4).any(|p| p[3] > 0);
        }
        // Asked every frame: the picture is not composited for it.
        layers::any_opaque_where(&self.layers, self.width * self.height, |l| {
            control_layer::is_picture(l)
        })
    }

    /// The picture (control layers left out) composited over black, as the engine takes it.
    pub fn rgb(&self) -> RgbImage {
        rgba_over_black(&self.picture_rgba(), self.width, self.height)
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
        if let Some(delta) = LayerDelta::between(&before, &self.mask, size, 1, self.whole()) {
            self.history.push(Edit::Mask(delta));
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

    // --- whole-document changes ------------------------------------------------------------

    /// Replaces everything with one background layer holding `image` (and an empty mask),
    /// undoably; `record` says what made it (an opened PNG's parameters), if anything.
    pub fn replace_image(&mut self, image: &RgbImage, record: Option<ImageRecord>) {
        let layer = self.new_layer(
            LayerKind::Background,
            "Background".into(),
            record,
            rgb_to_rgba(image),
        );
        self.replace_all(image.width, image.height, vec![layer]);
    }

    /// An empty, transparent canvas of `width`×`height` in place of this one, undoably (the old
    /// layers, mask and records come back with Ctrl+Z).
    pub fn new_canvas(&mut self, width: usize, height: usize) {
        self.discard();
        let layer = self.new_layer(
            LayerKind::Background,
            "Background".into(),
            None,
            vec![0; width * height * 4],
        );
        self.replace_all(width, height, vec![layer]);
    }

    /// `layers` (at least one) and an empty mask in place of everything, as one undoable step.
    fn replace_all(&mut self, width: usize, height: usize, layers: Vec<Layer>) {
        let before = self.packed();
        let active = layers[layers.len() - 1].id;
        self.set_everything(width, height, layers, vec![0; width * height], active);
        let after = self.packed();
        self.history.push(Edit::Replace {
            before: Box::new(before),
            after: Box::new(after),
        });
    }

    fn packed(&self) -> PackedDocument {
        PackedDocument::of(
            self.width,
            self.height,
            &self.layers,
            &self.mask,
            self.active,
        )
    }

    /// New layers and mask, possibly of another size: everything is new to the canvas
    /// (nothing of the old size stays marked dirty).
    fn set_everything(
        &mut self,
        width: usize,
        height: usize,
        layers: Vec<Layer>,
        mask: Vec<u8>,
        active: LayerId,
    ) {
        self.width = width;
        self.height = height;
        self.layers = layers;
        self.active = active;
        self.mask = mask;
        self.rgba = vec![0; width * height * 4];
        self.stroke = None;
        self.last_stroke_end = None;
        self.image_dirty = None;
        self.mask_dirty = None;
        self.recomposite(None);
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

    /// Turns the state after `edit` into the state before it (`backwards`) or the reverse.
    fn apply(&mut self, edit: &Edit, backwards: bool) {
        match edit {
            Edit::Pixels { layer, delta } => {
                let width = self.width;
                if let Some(l) = self.layer_mut(*layer) {
                    if delta.apply(&mut l.rgba, width) {
                        self.recomposite(delta.area());
                    }
                }
            }
            Edit::Mask(delta) => {
                if delta.apply(&mut self.mask, self.width) {
                    self.touch_mask(delta.area());
                }
            }
            Edit::Insert { index, layer } => {
                if backwards {
                    self.take_layer(*index);
                } else {
                    self.put_layer(*index, layer);
                }
            }
            Edit::Remove { index, layer } => {
                if backwards {
                    self.put_layer(*index, layer);
                } else {
                    self.take_layer(*index);
                }
            }
            Edit::Move { from, to } => {
                let (a, b) = if backwards {
                    (*to, *from)
                } else {
                    (*from, *to)
                };
                if a < self.layers.len() && b < self.layers.len() {
                    let l = self.layers.remove(a);
                    self.layers.insert(b, l);
                    self.recomposite(None);
                }
            }
            Edit::Props {
                layer,
                before,
                after,
            } => {
                let props = if backwards { before } else { after };
                if let Some(l) = self.layer_mut(*layer) {
                    l.props = props.clone();
                    self.recomposite(None);
                }
            }
            Edit::Record { layer, records } => {
                let record = if backwards { &records.0 } else { &records.1 };
                if let Some(l) = self.layer_mut(*layer) {
                    l.record = record.clone();
                }
            }
            Edit::Replace { before, after } => {
                let state = if backwards { before } else { after };
                if let Some((layers, mask)) = state.unpack() {
                    self.set_everything(state.width, state.height, layers, mask, state.active);
                }
            }
            Edit::Group(edits) => {
                if backwards {
                    edits.iter().rev().for_each(|e| self.apply(e, true));
                } else {
                    edits.iter().for_each(|e| self.apply(e, false));
                }
            }
        }
        // The active layer may be gone (an undone insert): the top one takes over.
        if self.layer_index(self.active).is_none() {
            self.active = self.layers[self.layers.len() - 1].id;
        }
    }

    /// Puts a packed layer back at `index` and makes it the active one.
    fn put_layer(&mut self, index: usize, packed: &undo::PackedLayer) {
        if let Some(layer) = packed.unpack(self.width, self.height) {
            self.active = layer.id;
            self.layers.insert(index.min(self.layers.len()), layer);
            self.recomposite(None);
        }
    }

    /// Takes out the layer at `index`, unless it is the last one.
    fn take_layer(&mut self, index: usize) -> Option<Layer> {
        if index >= self.layers.len() || self.layers.len() == 1 {
            return None;
        }
        let layer = self.layers.remove(index);
        self.recomposite(None);
        Some(layer)
    }

    fn whole(&self) -> Rect {
        region::whole(self.width, self.height)
    }

    /// Composites the layers again within `region` (`None`: all of it) and records the change.
    fn recomposite(&mut self, region: Option<Rect>) {
        let r = region.unwrap_or_else(|| self.whole());
        if region::fits(r, self.width, self.height) {
            layers::composite(&self.layers, self.width, r, &mut self.rgba);
        }
        self.touch_image(Some(r));
    }

    /// Records a change of what is shown (`None`: all of it).
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

/// Straight-alpha RGBA composited over black.
pub(crate) fn rgba_over_black(rgba: &[u8], width: usize, height: usize) -> RgbImage {
    let pixels = rgba
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
        width,
        height,
        pixels,
    }
}

pub(crate) fn rgb_to_rgba(image: &RgbImage) -> Vec<u8> {
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
            loras: vec![],
            embeddings: vec![],
            controls: vec![],
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
        assert_eq!(doc.accept(), Ok(true));
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
        assert_eq!(doc.accept(), Ok(true));
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
        assert_eq!(doc.accept(), Ok(true));
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
