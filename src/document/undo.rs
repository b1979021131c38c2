//! Undo and redo within a memory budget. A change of the image or mask is kept as the XOR of
//! its before and after states, tile by tile and channel by channel, deflated where that pays;
//! unchanged tiles and channels are not kept. The same delta turns either state into the other,
//! so one copy serves undo and redo, and a full-canvas change costs less than one copy of the
//! canvas (an unchanged alpha channel or mask is not kept at all). Only opening an image of
//! another size keeps whole (deflated) states.

use std::collections::VecDeque;

use super::region::Rect;
use crate::png_info::ImageRecord;

/// What the undo history may hold, in bytes; the oldest edits go first.
pub const UNDO_BUDGET_BYTES: usize = 256 << 20;
/// Side of the square tiles deltas are kept in.
pub const TILE: usize = 128;

/// Deflate level for deltas: fast; XOR data gains little from more effort.
const DEFLATE_LEVEL: u8 = 1;

/// One channel of a tile's XOR.
#[derive(Debug, Clone)]
enum Plane {
    /// The channel did not change.
    Zero,
    Raw(Vec<u8>),
    Deflated(Vec<u8>),
}

impl Plane {
    fn encode(xor: Vec<u8>) -> Self {
        if xor.iter().all(|&v| v == 0) {
            return Plane::Zero;
        }
        let z = miniz_oxide::deflate::compress_to_vec(&xor, DEFLATE_LEVEL);
        if z.len() < xor.len() {
            Plane::Deflated(z)
        } else {
            Plane::Raw(xor)
        }
    }

    /// The channel's XOR, `len` bytes (zeros for `Zero`); `None` if it does not inflate to that.
    fn decode(&self, len: usize) -> Option<Vec<u8>> {
        let v = match self {
            Plane::Zero => vec![0; len],
            Plane::Raw(v) => v.clone(),
            Plane::Deflated(z) => {
                miniz_oxide::inflate::decompress_to_vec_with_limit(z, len).ok()?
            }
        };
        (v.len() == len).then_some(v)
    }

    fn bytes(&self) -> usize {
        match self {
            Plane::Zero => 0,
            Plane::Raw(v) | Plane::Deflated(v) => v.len(),
        }
    }
}

/// The XOR of a layer's before and after states in the tiles that changed, one plane per
/// channel.
#[derive(Debug, Clone)]
pub struct LayerDelta {
    bpp: usize,
    tiles: Vec<(Rect, Vec<Plane>)>,
}

impl LayerDelta {
    /// The delta between two same-sized layers within `area`; `None` if nothing changed.
    pub fn between(
        before: &[u8],
        after: &[u8],
        (width, height): (usize, usize),
        bpp: usize,
        area: Rect,
    ) -> Option<Self> {
        if before.len() != after.len() || before.len() != width * height * bpp {
            return None;
        }
        let mut tiles = vec![];
        let (x0, y0) = (area.x / TILE * TILE, area.y / TILE * TILE);
        let (x1, y1) = (
            (area.x + area.width).min(width),
            (area.y + area.height).min(height),
        );
        for ty in (y0..y1).step_by(TILE) {
            for tx in (x0..x1).step_by(TILE) {
                let r = Rect {
                    x: tx,
                    y: ty,
                    width: TILE.min(width - tx),
                    height: TILE.min(height - ty),
                };
                let mut planes = vec![Vec::with_capacity(r.width * r.height); bpp];
                for y in r.y..r.y + r.height {
                    let s = (y * width + r.x) * bpp;
                    let e = s + r.width * bpp;
                    for (i, (a, b)) in before[s..e].iter().zip(&after[s..e]).enumerate() {
                        planes[i % bpp].push(a ^ b);
                    }
                }
                let planes: Vec<Plane> = planes.into_iter().map(Plane::encode).collect();
                if planes.iter().any(|p| !matches!(p, Plane::Zero)) {
                    tiles.push((r, planes));
                }
            }
        }
        (!tiles.is_empty()).then_some(Self { bpp, tiles })
    }

    /// Turns one state of the layer into the other. False (layer untouched) if the layer is
    /// not the size the delta was made for.
    pub fn apply(&self, data: &mut [u8], width: usize) -> bool {
        let height = data.len() / (width * self.bpp).max(1);
        let mut decoded = Vec::with_capacity(self.tiles.len());
        for (r, planes) in &self.tiles {
            let n = r.width * r.height;
            if !super::region::fits(*r, width, height) || planes.len() != self.bpp {
                return false;
            }
            match planes
                .iter()
                .map(|p| p.decode(n))
                .collect::<Option<Vec<_>>>()
            {
                Some(planes) => decoded.push((*r, planes)),
                None => return false,
            }
        }
        for (r, planes) in decoded {
            for (row, y) in (r.y..r.y + r.height).enumerate() {
                let s = (y * width + r.x) * self.bpp;
                for col in 0..r.width {
                    for (c, plane) in planes.iter().enumerate() {
                        data[s + col * self.bpp + c] ^= plane[row * r.width + col];
                    }
                }
            }
        }
        true
    }

    /// The area the delta covers.
    pub fn area(&self) -> Option<Rect> {
        self.tiles
            .iter()
            .map(|(r, _)| *r)
            .reduce(super::region::union)
    }

    pub fn bytes(&self) -> usize {
        self.tiles
            .iter()
            .map(|(_, planes)| 32 + planes.iter().map(Plane::bytes).sum::<usize>())
            .sum()
    }
}

/// A whole document state, deflated: for changes of size.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub width: usize,
    pub height: usize,
    rgba: Vec<u8>,
    mask: Vec<u8>,
}

impl Snapshot {
    pub fn of(width: usize, height: usize, rgba: &[u8], mask: &[u8]) -> Self {
        Self {
            width,
            height,
            rgba: miniz_oxide::deflate::compress_to_vec(rgba, DEFLATE_LEVEL),
            mask: miniz_oxide::deflate::compress_to_vec(mask, DEFLATE_LEVEL),
        }
    }

    /// The RGBA and mask layers; `None` if they do not inflate to this size.
    pub fn layers(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let n = self.width * self.height;
        let rgba = miniz_oxide::inflate::decompress_to_vec_with_limit(&self.rgba, n * 4).ok()?;
        let mask = miniz_oxide::inflate::decompress_to_vec_with_limit(&self.mask, n).ok()?;
        (rgba.len() == n * 4 && mask.len() == n).then_some((rgba, mask))
    }

    fn bytes(&self) -> usize {
        self.rgba.len() + self.mask.len()
    }
}

/// One undoable change of the document. Image, mask and the record of what made the image
/// change together, so undoing an Accept brings back the old image and its mask as one step.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Same size: the layers that changed, as deltas.
    Change {
        image: Option<LayerDelta>,
        mask: Option<LayerDelta>,
        /// The image's record before and after (an Accept), if it changed.
        records: Option<Box<(Option<ImageRecord>, Option<ImageRecord>)>>,
    },
    /// A new size (opening an image): both whole states.
    Resize {
        before: Snapshot,
        after: Snapshot,
        records: Box<(Option<ImageRecord>, Option<ImageRecord>)>,
    },
}

impl Edit {
    pub fn bytes(&self) -> usize {
        match self {
            Edit::Change { image, mask, .. } => {
                image.as_ref().map_or(0, |d| d.bytes()) + mask.as_ref().map_or(0, |d| d.bytes())
            }
            Edit::Resize { before, after, .. } => before.bytes() + after.bytes(),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(
            self,
            Edit::Change {
                image: None,
                mask: None,
                records: None
            }
        )
    }
}

/// Edits to undo (newest last) and to redo, within `UNDO_BUDGET_BYTES` together.
#[derive(Debug, Default)]
pub struct UndoStack {
    undo: VecDeque<Edit>,
    redo: Vec<Edit>,
    budget: Option<usize>,
}

impl UndoStack {
    /// A stack with a budget other than `UNDO_BUDGET_BYTES` (tests).
    pub fn with_budget(bytes: usize) -> Self {
        Self {
            budget: Some(bytes),
            ..Self::default()
        }
    }

    /// Records a new edit: the redo list is dropped, and the oldest edits beyond the budget.
    pub fn push(&mut self, edit: Edit) {
        if edit.is_empty() {
            return;
        }
        self.redo.clear();
        self.undo.push_back(edit);
        let budget = self.budget.unwrap_or(UNDO_BUDGET_BYTES);
        while self.bytes() > budget && self.undo.len() > 1 {
            self.undo.pop_front();
        }
    }

    pub fn take_undo(&mut self) -> Option<Edit> {
        self.undo.pop_back()
    }

    pub fn take_redo(&mut self) -> Option<Edit> {
        self.redo.pop()
    }

    pub fn done_undo(&mut self, edit: Edit) {
        self.redo.push(edit);
    }

    pub fn done_redo(&mut self, edit: Edit) {
        self.undo.push_back(edit);
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Bytes held by the undo and redo edits.
    pub fn bytes(&self) -> usize {
        self.undo.iter().chain(&self.redo).map(Edit::bytes).sum()
    }
}
