//! The canvas view: zoom to the cursor, pan, fit and 1:1, the brush cursor, and pointer input
//! turned into strokes on the document. Drawing itself is `canvas_gpu`.

use std::sync::Arc;

use eframe::egui::{self, Color32, Pos2, Rect, Sense, Stroke, Vec2};
use eframe::egui_wgpu;

use super::canvas_gpu::{CanvasCallback, CanvasFrame, Content, GpuRevisions, Upload};
use crate::document::brush::{BrushSettings, Tool};
use crate::document::{self, Document};
use crate::engine::image::RgbImage;

/// The upload that brings a texture holding `gpu` to document revision `rev`: nothing, the
/// changed region (when the texture holds the revision last sent), or everything.
fn document_upload(
    gpu: Content,
    sent: Option<u64>,
    rev: u64,
    dirty: Option<document::Rect>,
    region_bytes: impl FnOnce(document::Rect) -> Vec<u8>,
    all: impl FnOnce() -> Vec<u8>,
) -> Upload {
    if gpu == Content::Document(rev) {
        return Upload::None;
    }
    match (dirty, gpu, sent) {
        (Some(region), Content::Document(held), Some(sent)) if held == sent => Upload::Patch {
            from: held,
            to: rev,
            region,
            data: region_bytes(region),
        },
        _ => Upload::Full {
            content: Content::Document(rev),
            data: Arc::new(all()),
        },
    }
}

pub struct CanvasView {
    pub zoom: f32,
    pub offset: Vec2,
    /// Fit the image to the window on the next frame.
    pub fit_pending: bool,
    revisions: Arc<GpuRevisions>,
    /// The revisions last sent to the GPU.
    /// The document revisions last sent (None after something else was shown).
    sent_image: Option<u64>,
    sent_mask: Option<u64>,
}

impl Default for CanvasView {
    fn default() -> Self {
        Self {
            zoom: 1.0,
            offset: Vec2::ZERO,
            fit_pending: true,
            revisions: Arc::default(),
            sent_image: None,
            sent_mask: None,
        }
    }
}

/// The pixels the canvas shows instead of the document's image (a staged result, a preview).
pub enum Shown<'a> {
    /// The document being edited (and painted on).
    Document,
    /// A job's preview, numbered as the app received it.
    Preview { number: u64, image: &'a RgbImage },
    /// A staged result: which one, at which document revision.
    Staged {
        revision: u64,
        index: usize,
        image: &'a RgbImage,
    },
}

impl CanvasView {
    fn image_rect(&self, canvas: Rect, size: (usize, usize)) -> Rect {
        let image_size = Vec2::new(size.0 as f32, size.1 as f32) * self.zoom;
        Rect::from_min_size(canvas.center() + self.offset - image_size / 2.0, image_size)
    }

    fn fit(&mut self, canvas: Rect, size: (usize, usize)) {
        let margin = 24.0;
        let zx = (canvas.width() - margin) / size.0.max(1) as f32;
        let zy = (canvas.height() - margin) / size.1.max(1) as f32;
        self.zoom = zx.min(zy).clamp(0.02, 64.0);
        self.offset = Vec2::ZERO;
    }

    pub fn one_to_one(&mut self) {
        self.zoom = 1.0;
        self.offset = Vec2::ZERO;
    }

    /// Shows the document and handles painting. Returns whether the canvas is hovered.
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        doc: &mut Document,
        shown: Shown,
        tool: Tool,
        brush: BrushSettings,
        paint_enabled: bool,
    ) {
        let (rect, response) = ui.allocate_exact_size(ui.available_size(), Sense::click_and_drag());
        let size = doc.size();
        if self.fit_pending && rect.width() > 1.0 {
            self.fit(rect, size);
            self.fit_pending = false;
        }
        let space_down = ui.input(|i| i.key_down(egui::Key::Space));

        // Zoom to the cursor (wheel or pinch); pan with the middle button or space + drag.
        if response.hovered() {
            let (scroll, pinch) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
            let factor = pinch * (scroll / 400.0).exp();
            if (factor - 1.0).abs() > 1e-4 {
                let pointer = ui.input(|i| i.pointer.hover_pos()).unwrap_or(rect.center());
                let new_zoom = (self.zoom * factor).clamp(0.02, 64.0);
                let anchor = pointer - rect.center() - self.offset;
                self.offset -= anchor * (new_zoom / self.zoom - 1.0);
                self.zoom = new_zoom;
            }
        }
        let panning =
            response.dragged_by(egui::PointerButton::Middle) || (space_down && response.dragged());
        if panning {
            self.offset += response.drag_delta();
        }

        let image_rect = self.image_rect(rect, size);
        let to_image = |p: Pos2| {
            (
                (p.x - image_rect.min.x) / self.zoom,
                (p.y - image_rect.min.y) / self.zoom,
            )
        };
        if paint_enabled && !panning && !space_down {
            if response.drag_started_by(egui::PointerButton::Primary)
                || response.clicked_by(egui::PointerButton::Primary)
            {
                if let Some(p) = response.interact_pointer_pos() {
                    doc.begin_stroke(tool, brush, to_image(p));
                }
            }
            if response.dragged_by(egui::PointerButton::Primary) && doc.stroke_active() {
                if let Some(p) = response.interact_pointer_pos() {
                    doc.continue_stroke(to_image(p));
                }
            }
            if response.drag_stopped() || response.clicked() {
                doc.end_stroke();
            }
        }

        // Only what changed goes to the GPU: a brush stroke on a 4000×3000 image uploads the
        // stroke's rectangle, not 48 MB a frame. Previews and staged results (job-sized) go whole.
        let (shown_size, image) = match shown {
            Shown::Document => {
                let rev = doc.image_revision();
                let dirty = doc.take_image_dirty();
                let upload = document_upload(
                    self.revisions.image(),
                    self.sent_image,
                    rev,
                    dirty,
                    |r| doc.image_region(r),
                    || doc.rgba().to_vec(),
                );
                self.sent_image = Some(rev);
                (size, upload)
            }
            Shown::Preview { image, .. } | Shown::Staged { image, .. } => {
                let content = match shown {
                    Shown::Preview { number, .. } => Content::Preview(number),
                    Shown::Staged {
                        revision, index, ..
                    } => Content::Staged { revision, index },
                    Shown::Document => Content::Empty,
                };
                let upload = if self.revisions.image() == content {
                    Upload::None
                } else {
                    Upload::Full {
                        content,
                        data: Arc::new(
                            image
                                .pixels
                                .chunks_exact(3)
                                .flat_map(|p| [p[0], p[1], p[2], 255])
                                .collect(),
                        ),
                    }
                };
                self.sent_image = None;
                ((image.width, image.height), upload)
            }
        };
        let mask = if shown_size == size {
            let rev = doc.mask_revision();
            let dirty = doc.take_mask_dirty();
            let upload = document_upload(
                self.revisions.mask(),
                self.sent_mask,
                rev,
                dirty,
                |r| doc.mask_region(r),
                || doc.mask_bytes().to_vec(),
            );
            self.sent_mask = Some(rev);
            upload
        } else {
            // Textures of another size (a preview): the mask is sent whole when the document shows again.
            self.sent_mask = None;
            Upload::None
        };
        let frame = CanvasFrame {
            size: shown_size,
            image,
            mask,
            revisions: self.revisions.clone(),
            image_rect,
            show_mask: shown_size == size,
            dark: ui.visuals().dark_mode,
        };
        ui.painter().add(egui_wgpu::Callback::new_paint_callback(
            rect,
            CanvasCallback(Arc::new(frame)),
        ));

        // The brush cursor shows the brush's size.
        if paint_enabled && !space_down {
            if let Some(p) = response.hover_pos() {
                let color = if ui.visuals().dark_mode {
                    Color32::WHITE
                } else {
                    Color32::BLACK
                };
                let radius = brush.size * self.zoom / 2.0;
                ui.painter()
                    .circle_stroke(p, radius.max(1.5), Stroke::new(1.0, color));
                ui.painter().circle_stroke(
                    p,
                    radius.max(1.5) + 1.0,
                    Stroke::new(1.0, color.gamma_multiply(0.3)),
                );
            }
        }
    }
}
