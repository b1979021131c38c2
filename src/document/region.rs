//! Pixel rectangles of the document: the engine's `Rect`, and copying them in and out of
//! row-major layers.

pub use crate::engine::mask::Rect;

/// The whole of a `width` × `height` layer.
pub fn whole(width: usize, height: usize) -> Rect {
    Rect {
        x: 0,
        y: 0,
        width,
        height,
    }
}

pub fn union(a: Rect, b: Rect) -> Rect {
    let x = a.x.min(b.x);
    let y = a.y.min(b.y);
    let x1 = (a.x + a.width).max(b.x + b.width);
    let y1 = (a.y + a.height).max(b.y + b.height);
    Rect {
        x,
        y,
        width: x1 - x,
        height: y1 - y,
    }
}

/// Whether `r` lies inside a `width` × `height` layer.
pub fn fits(r: Rect, width: usize, height: usize) -> bool {
    r.x + r.width <= width && r.y + r.height <= height
}

/// The bytes of `r` in a layer of `bpp` bytes per pixel; empty if `r` does not fit.
pub fn copy_region(data: &[u8], width: usize, bpp: usize, r: Rect) -> Vec<u8> {
    let height = data.len() / (width * bpp).max(1);
    if !fits(r, width, height) {
        return vec![];
    }
    let mut out = Vec::with_capacity(r.width * r.height * bpp);
    for y in r.y..r.y + r.height {
        let start = (y * width + r.x) * bpp;
        out.extend_from_slice(&data[start..start + r.width * bpp]);
    }
    out
}
