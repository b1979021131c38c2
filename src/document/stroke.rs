//! The stroke being painted: dabs stamped along the drag into a per-stroke coverage, and the
//! undoable edit it becomes when it ends.

use super::brush::{dab_alpha, BrushSettings, Tool};
use super::layers::LayerId;
use super::region::{union, Rect};
use super::stroke_path::{Dab, PathPoint, StrokePath};
use super::undo::{Edit, LayerDelta};
use super::Document;

pub(super) struct ActiveStroke {
    tool: Tool,
    /// The layer a colour stroke or the layer eraser changes.
    layer: LayerId,
    brush: BrushSettings,
    path: StrokePath,
    /// The last position reported: where a Shift+click line of the next stroke starts.
    last: PathPoint,
    /// Per-pixel coverage of this stroke (full document size, allocated for the stroke only).
    coverage: Vec<f32>,
    /// The target's pixels when the stroke began.
    before: Vec<u8>,
    dirty: Option<Rect>,
}

impl Document {
    /// Starts a stroke at `at` (image pixels) with the pen's `pressure` (1 without one).
    pub fn begin_stroke(
        &mut self,
        tool: Tool,
        brush: BrushSettings,
        at: (f32, f32),
        pressure: f32,
    ) {
        let layer = self.active_layer().id;
        let before = if tool.paints_layer() {
            self.active_layer().rgba.clone()
        } else {
            self.mask.clone()
        };
        let start = point(at, pressure);
        let (path, first) = StrokePath::new(start, brush.size);
        self.stroke = Some(ActiveStroke {
            tool,
            layer,
            brush,
            path,
            last: start,
            coverage: vec![0.0; self.width * self.height],
            before,
            dirty: None,
        });
        self.stamp(first);
    }

    /// Follows the pointer to `to`; the path through the positions so far is smoothed.
    pub fn continue_stroke(&mut self, to: (f32, f32), pressure: f32) {
        self.extend_stroke(point(to, pressure), StrokePath::push);
    }

    /// A straight line from the stroke's last position to `to` (Shift+click).
    pub fn line_to(&mut self, to: (f32, f32), pressure: f32) {
        self.extend_stroke(point(to, pressure), StrokePath::line_to);
    }

    /// Takes the stroke to `p` along the path `step` lays, stamping its dabs.
    fn extend_stroke(&mut self, p: PathPoint, step: fn(&mut StrokePath, PathPoint) -> Vec<Dab>) {
        let Some(stroke) = &mut self.stroke else {
            return;
        };
        stroke.last = p;
        for dab in step(&mut stroke.path, p) {
            self.stamp(dab);
        }
    }

    /// Where the last stroke ended, for a Shift+click line from there.
    pub fn last_stroke_end(&self) -> Option<(f32, f32)> {
        self.last_stroke_end
    }

    /// Ends the stroke as one undoable edit of the tiles it touched.
    pub fn end_stroke(&mut self) {
        let rest = match &mut self.stroke {
            Some(stroke) => stroke.path.finish(),
            None => return,
        };
        for dab in rest {
            self.stamp(dab);
        }
        let Some(stroke) = self.stroke.take() else {
            return;
        };
        self.last_stroke_end = Some((stroke.last.x, stroke.last.y));
        let Some(area) = stroke.dirty else { return };
        let size = (self.width, self.height);
        let edit = if stroke.tool.paints_layer() {
            self.layer_index(stroke.layer).and_then(|i| {
                let after = &self.layers[i].rgba;
                LayerDelta::between(&stroke.before, after, size, 4, area).map(|delta| {
                    Edit::Pixels {
                        layer: stroke.layer,
                        delta,
                    }
                })
            })
        } else {
            LayerDelta::between(&stroke.before, &self.mask, size, 1, area).map(Edit::Mask)
        };
        if let Some(edit) = edit {
            self.history.push(edit);
        }
    }

    pub fn stroke_active(&self) -> bool {
        self.stroke.is_some()
    }

    fn stamp(&mut self, dab: Dab) {
        let (w, h) = (self.width, self.height);
        let Some(stroke) = &mut self.stroke else {
            return;
        };
        let layer = match self.layers.iter_mut().find(|l| l.id == stroke.layer) {
            Some(l) => &mut l.rgba,
            None if stroke.tool.paints_layer() => return,
            None => &mut self.rgba, // Not written: the mask tools change the mask.
        };
        let (cx, cy) = (dab.x, dab.y);
        if !(cx.is_finite() && cy.is_finite()) {
            return;
        }
        let r = (stroke.brush.size * dab.scale / 2.0).max(0.5);
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
                        let before = &stroke.before[i * 4..i * 4 + 4];
                        let old_a = before[3] as f32 / 255.0;
                        // Straight alpha: the new colour's share of what is opaque afterwards.
                        let new_a = old_a + (1.0 - old_a) * a;
                        let share = if new_a > 0.0 { a / new_a } else { 1.0 };
                        for k in 0..3 {
                            let orig = before[k] as f32;
                            layer[i * 4 + k] = (orig + (c[k] as f32 - orig) * share).round() as u8;
                        }
                        layer[i * 4 + 3] = (new_a * 255.0).round() as u8;
                    }
                    Tool::LayerEraser => {
                        let orig = stroke.before[i * 4 + 3] as f32;
                        layer[i * 4 + 3] = (orig * (1.0 - a)).round() as u8;
                    }
                }
            }
        }
        let region = Rect {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
        };
        stroke.dirty = Some(match stroke.dirty {
            None => region,
            Some(d) => union(d, region),
        });
        if stroke.tool.paints_layer() {
            self.recomposite(Some(region));
        } else {
            self.touch_mask(Some(region));
        }
    }
}

fn point((x, y): (f32, f32), pressure: f32) -> PathPoint {
    PathPoint { x, y, pressure }
}
