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
    /// The pen's last reported pressure (1 for a mouse).
    pressure: f32,
    /// The view is as Fit left it (no zoom or pan since): it follows the canvas's size, as
    /// bars appear and go.
    fitted: bool,
    last_size: Vec2,
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
            pressure: 1.0,
            fitted: false,
            last_size: Vec2::ZERO,
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

/// What the canvas did with this frame's input that the app should know of.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CanvasOutcome {
    /// A press on the canvas that could not paint (a result is staged or a preview shown).
    pub refused_paint: bool,
}

impl CanvasView {
    /// Every pointer event of the frame, in order, into the stroke: a fast drag reports many
    /// positions per frame and the stroke follows them all, from the press on (not from where
    /// egui decides a drag began). Shift+press draws a straight line from the last stroke's
    /// end, as in Krita. Pen pressure comes with touch events where the platform reports it.
    #[allow(clippy::too_many_arguments)]
    fn paint_input(
        &mut self,
        ui: &egui::Ui,
        doc: &mut Document,
        on_canvas: impl Fn(Pos2) -> bool,
        to_image: impl Fn(Pos2) -> (f32, f32),
        tool: Tool,
        brush: BrushSettings,
        paint_enabled: bool,
    ) -> bool {
        let mut refused = false;
        let events = ui.input(|i| i.events.clone());
        for event in events {
            match event {
                egui::Event::Touch {
                    force: Some(force), ..
                } => self.pressure = force,
                egui::Event::PointerButton {
                    pos,
                    button: egui::PointerButton::Primary,
                    pressed: true,
                    modifiers,
                } if on_canvas(pos) => {
                    if !paint_enabled {
                        refused = true;
                        continue;
                    }
                    match doc.last_stroke_end().filter(|_| modifiers.shift) {
                        Some(from) => {
                            doc.begin_stroke(tool, brush, from, self.pressure);
                            doc.line_to(to_image(pos), self.pressure);
                        }
                        None => doc.begin_stroke(tool, brush, to_image(pos), self.pressure),
                    }
                }
                egui::Event::PointerMoved(pos) if doc.stroke_active() => {
                    doc.continue_stroke(to_image(pos), self.pressure);
                }
                egui::Event::PointerButton {
                    pos,
                    button: egui::PointerButton::Primary,
                    pressed: false,
                    ..
                } if doc.stroke_active() => {
                    doc.continue_stroke(to_image(pos), self.pressure);
                    doc.end_stroke();
                    self.pressure = 1.0;
                }
                egui::Event::PointerGone if doc.stroke_active() => doc.end_stroke(),
                _ => {}
            }
        }
        refused
    }

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
        self.fitted = true;
    }

    pub fn one_to_one(&mut self) {
        self.zoom = 1.0;
        self.offset = Vec2::ZERO;
        self.fitted = false;
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
    ) -> CanvasOutcome {
        let (rect, response) = ui.allocate_exact_size(ui.available_size(), Sense::click_and_drag());
        let size = doc.size();
        let resized = (rect.size() - self.last_size).length() > 0.5;
        self.last_size = rect.size();
        if (self.fit_pending || (self.fitted && resized)) && rect.width() > 1.0 {
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
                self.fitted = false;
            }
        }
        let panning =
            response.dragged_by(egui::PointerButton::Middle) || (space_down && response.dragged());
        if panning {
            self.offset += response.drag_delta();
            self.fitted = false;
        }

        let image_rect = self.image_rect(rect, size);
        let zoom = self.zoom;
        let to_image = move |p: Pos2| {
            (
                (p.x - image_rect.min.x) / zoom,
                (p.y - image_rect.min.y) / zoom,
            )
        };
        let mut refused_paint = false;
        if !panning && !space_down {
            let on_canvas = |p: Pos2| {
                rect.contains(p) && ui.ctx().layer_id_at(p).is_none_or(|l| l == ui.layer_id())
            };
            refused_paint =
                self.paint_input(ui, doc, on_canvas, to_image, tool, brush, paint_enabled);
        } else if doc.stroke_active() {
            doc.end_stroke();
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
        CanvasOutcome { refused_paint }
    }
}
