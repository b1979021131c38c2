//! Undo and redo within a memory budget. A change of the image or mask is kept as the XOR of
//! its before and after states, tile by tile and channel by channel, deflated where that pays;
//! unchanged tiles and channels are not kept. The same delta turns either state into the other,
//! so one copy serves undo and redo, and a full-canvas change costs less than one copy of the
//! canvas (an unchanged alpha channel or mask is not kept at all). Layers added or removed are
//! kept whole (deflated); only opening an image or a new canvas keeps whole documents.

use std::collections::VecDeque;

use super::layers::{Layer, LayerId, LayerKind, LayerProps};
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

/// Bytes deflated at `DEFLATE_LEVEL`.
fn pack(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(data, DEFLATE_LEVEL)
}

/// Bytes that `pack` made, if they inflate to exactly `len`.
fn unpack(packed: &[u8], len: usize) -> Option<Vec<u8>> {
    let v = miniz_oxide::inflate::decompress_to_vec_with_limit(packed, len).ok()?;
    (v.len() == len).then_some(v)
}

/// A whole layer, its pixels deflated: for layers added, removed or replaced.
#[derive(Debug, Clone)]
pub struct PackedLayer {
    id: LayerId,
    kind: LayerKind,
    props: LayerProps,
    record: Option<ImageRecord>,
    pixels: Vec<u8>,
}

impl PackedLayer {
    pub fn of(layer: &Layer) -> Self {
        Self {
            id: layer.id,
            kind: layer.kind,
            props: layer.props.clone(),
            record: layer.record.clone(),
            pixels: pack(&layer.rgba),
        }
    }

    /// The layer at `width`×`height`; `None` if its pixels do not inflate to that size.
    pub fn unpack(&self, width: usize, height: usize) -> Option<Layer> {
        Some(Layer {
            id: self.id,
            kind: self.kind,
            props: self.props.clone(),
            record: self.record.clone(),
            rgba: unpack(&self.pixels, width * height * 4)?,
        })
    }

    fn bytes(&self) -> usize {
        self.pixels.len()
    }
}

/// A whole document state (layers, mask, the active layer), deflated: for opening an image or
/// a new canvas, which change everything at once.
#[derive(Debug, Clone)]
pub struct PackedDocument {
    pub width: usize,
    pub height: usize,
    layers: Vec<PackedLayer>,
    mask: Vec<u8>,
    pub active: LayerId,
}

impl PackedDocument {
    pub fn of(width: usize, height: usize, layers: &[Layer], mask: &[u8], active: LayerId) -> Self {
        Self {
            width,
            height,
            layers: layers.iter().map(PackedLayer::of).collect(),
            mask: pack(mask),
            active,
        }
    }

    /// The layers and mask; `None` if they do not inflate to this size.
    pub fn unpack(&self) -> Option<(Vec<Layer>, Vec<u8>)> {
        let layers = self
            .layers
            .iter()
            .map(|l| l.unpack(self.width, self.height))
            .collect::<Option<Vec<_>>>()?;
        let mask = unpack(&self.mask, self.width * self.height)?;
        Some((layers, mask))
    }

    fn bytes(&self) -> usize {
        self.mask.len() + self.layers.iter().map(PackedLayer::bytes).sum::<usize>()
    }
}

/// One undoable change of the document. Changes made together (merging a layer down: its
/// pixels into the one below, the record, the upper layer gone) are one `Group`, undone as one.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Pixels of one layer, as a delta.
    Pixels {
        layer: LayerId,
        delta: LayerDelta,
    },
    Mask(LayerDelta),
    /// A layer put at `index` of the stack (bottom first).
    Insert {
        index: usize,
        layer: PackedLayer,
    },
    /// The layer at `index` taken out.
    Remove {
        index: usize,
        layer: PackedLayer,
    },
    /// A layer moved from one place in the stack to another.
    Move {
        from: usize,
        to: usize,
    },
    Props {
        layer: LayerId,
        before: LayerProps,
        after: LayerProps,
    },
    /// What made a layer's image.
    Record {
        layer: LayerId,
        records: Box<(Option<ImageRecord>, Option<ImageRecord>)>,
    },
    /// Everything replaced (an image opened, a new canvas).
    Replace {
        before: Box<PackedDocument>,
        after: Box<PackedDocument>,
    },
    Group(Vec<Edit>),
}

impl Edit {
    pub fn bytes(&self) -> usize {
        match self {
            Edit::Pixels { delta, .. } | Edit::Mask(delta) => delta.bytes(),
            Edit::Insert { layer, .. } | Edit::Remove { layer, .. } => layer.bytes(),
            Edit::Move { .. } | Edit::Props { .. } | Edit::Record { .. } => 64,
            Edit::Replace { before, after } => before.bytes() + after.bytes(),
            Edit::Group(edits) => edits.iter().map(Edit::bytes).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Edit::Group(edits) => edits.iter().all(Edit::is_empty),
            Edit::Move { from, to } => from == to,
            Edit::Props { before, after, .. } => before == after,
            _ => false,
        }
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

    /// The newest edit, for one that continues it (an opacity slider's drag) to fold into.
    pub fn last_mut(&mut self) -> Option<&mut Edit> {
        if !self.redo.is_empty() {
            return None;
        }
        self.undo.back_mut()
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
