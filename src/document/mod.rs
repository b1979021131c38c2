//! What the user is editing: the image, the mask, results waiting to be accepted, and the undo
//! history of every change. No GUI types: the canvas view reads this and sends it input.

pub mod brush;

use crate::engine::image::RgbImage;
use crate::engine::mask::Mask;
use crate::engine::params::GenerationParams;
use brush::{dab_alpha, dab_centres, BrushSettings, Tool};

/// A pixel rectangle (x, y, width, height), clipped to the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

/// One undoable change: the pixels of a region of the image (RGBA) or the mask, before and after.
#[derive(Debug, Clone)]
enum Edit {
    Mask {
        region: Region,
        before: Vec<u8>,
        after: Vec<u8>,
    },
    Image {
        region: Region,
        before: Vec<u8>,
        after: Vec<u8>,
    },
    /// A whole new image (accepting a result, opening a file).
    Replace {
        before: (usize, usize, Vec<u8>, Vec<u8>),
        after: (usize, usize, Vec<u8>, Vec<u8>),
    },
}

/// A generated image waiting in the staging area: shown over the original until accepted.
#[derive(Debug, Clone)]
pub struct StagedResult {
    pub image: RgbImage,
    pub params: GenerationParams,
}

struct ActiveStroke {
    tool: Tool,
    brush: BrushSettings,
    last: (f32, f32),
    /// Per-pixel coverage of this stroke (full document size, allocated for the stroke only).
    coverage: Vec<f32>,
    /// The target's pixels when the stroke began.
    before: Vec<u8>,
    dirty: Option<Region>,
}

pub struct Document {
    width: usize,
    height: usize,
    /// RGBA, row-major; alpha 0 where there is no image.
    rgba: Vec<u8>,
    /// 0 = keep, 255 = regenerate.
    mask: Vec<u8>,
    undo: Vec<Edit>,
    redo: Vec<Edit>,
    stroke: Option<ActiveStroke>,
    pub staged: Vec<StagedResult>,
    /// Which staged result is shown.
    pub staged_index: usize,
    /// Show the original instead of the staged result (before/after flip).
    pub show_original: bool,
    /// Bumped on every change of the image or the mask, for the canvas to upload.
    pub image_revision: u64,
    pub mask_revision: u64,
    /// What changed since the canvas last asked, so that it uploads only that.
    image_dirty: Option<Region>,
    mask_dirty: Option<Region>,
}

impl Document {
    /// An empty, transparent canvas.
    pub fn blank(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            rgba: vec![0; width * height * 4],
            mask: vec![0; width * height],
            undo: vec![],
            redo: vec![],
            stroke: None,
            staged: vec![],
            staged_index: 0,
            show_original: false,
            image_revision: 1,
            mask_revision: 1,
            image_dirty: None,
            mask_dirty: None,
        }
    }

    pub fn from_rgb(image: &RgbImage) -> Self {
        let mut doc = Self::blank(image.width, image.height);
        doc.rgba = rgb_to_rgba(image);
        doc
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

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    // --- strokes -------------------------------------------------------------------------

    pub fn begin_stroke(&mut self, tool: Tool, brush: BrushSettings, at: (f32, f32)) {
        let before = match tool {
            Tool::ColorBrush(_) => self.rgba.clone(),
            _ => self.mask.clone(),
        };
        self.stroke = Some(ActiveStroke {
            tool,
            brush,
            last: at,
            coverage: vec![0.0; self.width * self.height],
            before,
            dirty: None,
        });
        self.stamp(at);
    }

    pub fn continue_stroke(&mut self, to: (f32, f32)) {
        let Some(stroke) = &self.stroke else { return };
        for centre in dab_centres(stroke.last, to, stroke.brush.size) {
            self.stamp(centre);
        }
        if let Some(s) = &mut self.stroke {
            s.last = to;
        }
    }

    pub fn end_stroke(&mut self) {
        let Some(stroke) = self.stroke.take() else {
            return;
        };
        let Some(region) = stroke.dirty else { return };
        let edit = match stroke.tool {
            Tool::ColorBrush(_) => Edit::Image {
                region,
                before: copy_region(&stroke.before, self.width, 4, region),
                after: copy_region(&self.rgba, self.width, 4, region),
            },
            _ => Edit::Mask {
                region,
                before: copy_region(&stroke.before, self.width, 1, region),
                after: copy_region(&self.mask, self.width, 1, region),
            },
        };
        self.push(edit);
    }

    pub fn stroke_active(&self) -> bool {
        self.stroke.is_some()
    }

    fn stamp(&mut self, (cx, cy): (f32, f32)) {
        let (w, h) = (self.width, self.height);
        let Some(stroke) = &mut self.stroke else {
            return;
        };
        let r = (stroke.brush.size / 2.0).max(0.5);
        let x0 = (cx - r).floor().max(0.0) as usize;
        let y0 = (cy - r).floor().max(0.0) as usize;
        let x1 = ((cx + r).ceil() as isize).clamp(0, w as isize) as usize;
        let y1 = ((cy + r).ceil() as isize).clamp(0, h as isize) as usize;
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        for y in y0..y1 {
            for x in x0..x1 {
                let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
                let a = dab_alpha(d, r, stroke.brush.hardness);
                let i = y * w + x;
                if a <= stroke.coverage[i] {
                    continue;
                }
                stroke.coverage[i] = a;
                match stroke.tool {
                    Tool::MaskBrush => {
                        let orig = stroke.before[i] as f32;
                        self.mask[i] = (orig + (255.0 - orig) * a).round() as u8;
                    }
                    Tool::MaskEraser => {
                        let orig = stroke.before[i] as f32;
                        self.mask[i] = (orig * (1.0 - a)).round() as u8;
                    }
                    Tool::ColorBrush(c) => {
                        for k in 0..3 {
                            let orig = stroke.before[i * 4 + k] as f32;
                            self.rgba[i * 4 + k] = (orig + (c[k] as f32 - orig) * a).round() as u8;
                        }
                        let alpha = stroke.before[i * 4 + 3] as f32;
                        self.rgba[i * 4 + 3] = (alpha + (255.0 - alpha) * a).round() as u8;
                    }
                }
            }
        }
        let region = Region {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        };
        stroke.dirty = Some(match stroke.dirty {
            None => region,
            Some(d) => union(d, region),
        });
        let color = matches!(stroke.tool, Tool::ColorBrush(_));
        if color {
            self.touch_image(Some(region));
        } else {
            self.touch_mask(Some(region));
        }
    }

    // --- whole-mask operations -------------------------------------------------------------

    fn set_mask(&mut self, f: impl Fn(u8) -> u8) {
        let before = self.mask.clone();
        for v in &mut self.mask {
            *v = f(*v);
        }
        if before != self.mask {
            let region = Region {
                x: 0,
                y: 0,
                w: self.width,
                h: self.height,
            };
            let after = self.mask.clone();
            self.push(Edit::Mask {
                region,
                before,
                after,
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

    // --- undo ----------------------------------------------------------------------------

    fn push(&mut self, edit: Edit) {
        self.undo.push(edit);
        self.redo.clear();
        // Bound the memory of the history.
        if self.undo.len() > 200 {
            self.undo.remove(0);
        }
    }

    pub fn undo(&mut self) -> bool {
        let Some(edit) = self.undo.pop() else {
            return false;
        };
        self.apply(&edit, true);
        self.redo.push(edit);
        true
    }

    pub fn redo(&mut self) -> bool {
        let Some(edit) = self.redo.pop() else {
            return false;
        };
        self.apply(&edit, false);
        self.undo.push(edit);
        true
    }

    fn apply(&mut self, edit: &Edit, backwards: bool) {
        match edit {
            Edit::Mask {
                region,
                before,
                after,
            } => {
                paste_region(
                    &mut self.mask,
                    self.width,
                    1,
                    *region,
                    if backwards { before } else { after },
                );
                self.touch_mask(Some(*region));
            }
            Edit::Image {
                region,
                before,
                after,
            } => {
                paste_region(
                    &mut self.rgba,
                    self.width,
                    4,
                    *region,
                    if backwards { before } else { after },
                );
                self.touch_image(Some(*region));
            }
            Edit::Replace { before, after } => {
                let (w, h, rgba, mask) = if backwards { before } else { after };
                self.width = *w;
                self.height = *h;
                self.rgba = rgba.clone();
                self.mask = mask.clone();
                self.touch_image(None);
                self.touch_mask(None);
            }
        }
    }

    /// Replaces the whole image (and clears the mask), undoably.
    pub fn replace_image(&mut self, image: &RgbImage) {
        let before = (
            self.width,
            self.height,
            self.rgba.clone(),
            self.mask.clone(),
        );
        let after = (
            image.width,
            image.height,
            rgb_to_rgba(image),
            vec![0; image.width * image.height],
        );
        self.apply(
            &Edit::Replace {
                before: before.clone(),
                after: after.clone(),
            },
            false,
        );
        self.push(Edit::Replace { before, after });
    }

    // --- staging -------------------------------------------------------------------------

    pub fn stage(&mut self, result: StagedResult) {
        self.staged.push(result);
        self.staged_index = self.staged.len() - 1;
        self.show_original = false;
        self.touch_image(None);
    }

    /// The staged result being shown, if any (and not flipped to the original).
    pub fn shown_result(&self) -> Option<&StagedResult> {
        if self.show_original {
            return None;
        }
        self.staged.get(self.staged_index)
    }

    pub fn select_staged(&mut self, index: usize) {
        if index < self.staged.len() {
            self.staged_index = index;
            self.touch_image(None);
        }
    }

    /// Makes the shown result the image (undoable) and empties the staging area.
    pub fn accept(&mut self) -> bool {
        let Some(result) = self.staged.get(self.staged_index).cloned() else {
            return false;
        };
        let mask = self.mask.clone();
        self.replace_image(&result.image);
        // Keep the mask: a painter often refines the same region again.
        if mask.len() == self.mask.len() {
            self.mask = mask;
            self.touch_mask(None);
        }
        self.staged.clear();
        self.show_original = false;
        true
    }

    pub fn discard(&mut self) {
        self.staged.clear();
        self.show_original = false;
        self.touch_image(None);
    }

    /// Flips between the staged result and the original.
    pub fn set_show_original(&mut self, show: bool) {
        self.show_original = show;
        self.touch_image(None);
    }

    fn whole(&self) -> Region {
        Region {
            x: 0,
            y: 0,
            w: self.width,
            h: self.height,
        }
    }

    /// Records a change of the image (`None`: all of it).
    fn touch_image(&mut self, region: Option<Region>) {
        let r = region.unwrap_or_else(|| self.whole());
        self.image_revision += 1;
        self.image_dirty = Some(self.image_dirty.map_or(r, |d| union(d, r)));
    }

    fn touch_mask(&mut self, region: Option<Region>) {
        let r = region.unwrap_or_else(|| self.whole());
        self.mask_revision += 1;
        self.mask_dirty = Some(self.mask_dirty.map_or(r, |d| union(d, r)));
    }

    /// The part of the image changed since the last call.
    pub fn take_image_dirty(&mut self) -> Option<Region> {
        self.image_dirty.take()
    }

    pub fn take_mask_dirty(&mut self) -> Option<Region> {
        self.mask_dirty.take()
    }

    /// The bytes of a region of the image (RGBA) or the mask.
    pub fn image_region(&self, r: Region) -> Vec<u8> {
        copy_region(&self.rgba, self.width, 4, r)
    }

    pub fn mask_region(&self, r: Region) -> Vec<u8> {
        copy_region(&self.mask, self.width, 1, r)
    }
}

fn rgb_to_rgba(image: &RgbImage) -> Vec<u8> {
    image
        .pixels
        .chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect()
}

fn union(a: Region, b: Region) -> Region {
    let x = a.x.min(b.x);
    let y = a.y.min(b.y);
    let x1 = (a.x + a.w).max(b.x + b.w);
    let y1 = (a.y + a.h).max(b.y + b.h);
    Region {
        x,
        y,
        w: x1 - x,
        h: y1 - y,
    }
}

fn copy_region(data: &[u8], width: usize, bpp: usize, r: Region) -> Vec<u8> {
    let mut out = Vec::with_capacity(r.w * r.h * bpp);
    for y in r.y..r.y + r.h {
        let start = (y * width + r.x) * bpp;
        out.extend_from_slice(&data[start..start + r.w * bpp]);
    }
    out
}

fn paste_region(data: &mut [u8], width: usize, bpp: usize, r: Region, src: &[u8]) {
    for (row, y) in (r.y..r.y + r.h).enumerate() {
        let start = (y * width + r.x) * bpp;
        data[start..start + r.w * bpp]
            .copy_from_slice(&src[row * r.w * bpp..(row + 1) * r.w * bpp]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        );
        doc.continue_stroke((50.0, 10.0));
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
        );
        doc.end_stroke();
        assert_eq!(doc.rgba()[(8 * 16 + 8) * 4], 200);
        doc.stage(StagedResult {
            image: RgbImage::new(16, 16, vec![99; 16 * 16 * 3]).unwrap(),
            params: Default::default(),
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
}
