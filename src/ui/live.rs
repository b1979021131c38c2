//! Live mode: while painting (with a few-step model, sampler or LoRA, to be quick), the picture
//! regenerates at a reduced size a moment after each stroke ends, in the background: the brush
//! is never held, a newer stroke cancels the job of an older one, and the latest result shows in
//! the Live window until Shift+Enter keeps it as a layer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui;

use crate::engine::image::RgbImage;
use crate::engine::inpaint::{InpaintArea, InpaintOptions};
use crate::engine::job::Generated;
use crate::engine::mask::Mask;
use crate::engine::params::GenerationParams;
use crate::engine::png_info::ImageRecord;
use crate::engine::worker::JobId;
use crate::engine::{Job, JobKind};

/// How long the document must stay unchanged before a live job starts: long enough that a
/// prompt typed letter by letter starts one job, short against a job's own time.
pub const LIVE_DEBOUNCE: Duration = Duration::from_millis(150);

/// The longest side live results are made at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LiveSize {
    #[default]
    Small,
    Medium,
}

impl LiveSize {
    pub const ALL: [LiveSize; 2] = [LiveSize::Small, LiveSize::Medium];

    pub fn side(self) -> usize {
        match self {
            LiveSize::Small => 256,
            LiveSize::Medium => 512,
        }
    }
}

/// Where a live result goes on the canvas when kept.
#[derive(Debug, Clone)]
pub enum Placement {
    /// The whole picture, scaled to the document.
    Whole,
    /// Only where the mask (at the document's size, as it was for the job) is painted.
    Masked(Arc<Mask>),
}

/// What a live job is made from: when any of it changes, the picture is out of date.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveInput {
    pub image_revision: u64,
    pub mask_revision: u64,
    pub params: GenerationParams,
    pub inpaint: InpaintOptions,
    pub size: LiveSize,
}

/// Whether a live job should start now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Due {
    /// The picture shows the current input (or a job for it runs).
    No,
    /// The input changed at the instant given and has stayed so for the debounce.
    Now(Instant),
    /// The input changed recently: ask again after this long.
    Later(Duration),
}

struct Run {
    id: JobId,
    changed_at: Instant,
    placement: Placement,
}

/// The latest live picture.
pub struct LiveResult {
    pub image: Arc<RgbImage>,
    pub record: ImageRecord,
    pub placement: Placement,
    /// From the end of the change (the stroke's release) to the result's arrival.
    pub latency: Duration,
    texture: Option<egui::TextureHandle>,
}

#[derive(Default)]
pub struct Live {
    pub enabled: bool,
    pub size: LiveSize,
    started_from: Option<LiveInput>,
    pending: Option<(LiveInput, Instant)>,
    running: Option<Run>,
    pub result: Option<LiveResult>,
    /// The last live job's error, shown in the window.
    pub error: Option<String>,
}

impl Live {
    /// Whether to start a job for `input` at `now` (it must have stayed the same for
    /// `LIVE_DEBOUNCE`, and differ from what the last job was made from).
    pub fn due(&mut self, input: &LiveInput, now: Instant) -> Due {
        if self.started_from.as_ref() == Some(input) {
            self.pending = None;
            return Due::No;
        }
        match &self.pending {
            Some((pending, since)) if pending == input => {
                let waited = now.saturating_duration_since(*since);
                if waited >= LIVE_DEBOUNCE {
                    Due::Now(*since)
                } else {
                    Due::Later(LIVE_DEBOUNCE - waited)
                }
            }
            _ => {
                self.pending = Some((input.clone(), now));
                Due::Later(LIVE_DEBOUNCE)
            }
        }
    }

    /// A job for `input` was queued as `id`; returns the older live job to cancel, if any.
    pub fn started(
        &mut self,
        input: LiveInput,
        id: JobId,
        changed_at: Instant,
        placement: Placement,
    ) -> Option<JobId> {
        self.started_from = Some(input);
        self.pending = None;
        self.error = None;
        self.running
            .replace(Run {
                id,
                changed_at,
                placement,
            })
            .map(|r| r.id)
    }

    /// The input could not make a job (the reason is shown); it is not retried until it
    /// changes.
    pub fn refused(&mut self, input: LiveInput, why: String) {
        self.started_from = Some(input);
        self.pending = None;
        self.error = Some(why);
    }

    pub fn is_mine(&self, id: JobId) -> bool {
        self.running.as_ref().is_some_and(|r| r.id == id)
    }

    pub fn running_id(&self) -> Option<JobId> {
        self.running.as_ref().map(|r| r.id)
    }

    /// The job `id` ended with `results` (its first is the picture).
    pub fn finished(&mut self, id: JobId, results: Vec<Generated>) {
        let Some(run) = self.running.take_if(|r| r.id == id) else {
            return;
        };
        if let Some(first) = results.into_iter().next() {
            self.result = Some(LiveResult {
                image: Arc::new(first.image),
                record: first.record,
                placement: run.placement,
                latency: run.changed_at.elapsed(),
                texture: None,
            });
        }
    }

    /// The job `id` was cancelled or failed (with `error`).
    pub fn ended(&mut self, id: JobId, error: Option<String>) {
        if self.running.take_if(|r| r.id == id).is_some() && error.is_some() {
            self.error = error;
        }
    }

    /// Turned off: nothing runs or waits, and the next start begins afresh. Returns the job to
    /// cancel.
    pub fn stop(&mut self) -> Option<JobId> {
        self.pending = None;
        self.started_from = None;
        self.running.take().map(|r| r.id)
    }

    /// Forget what the last job was made from, so the current input runs again (after a normal
    /// job cancelled the live one, or the model changed).
    pub fn invalidate(&mut self) {
        self.started_from = None;
    }
}

/// `w`×`h` scaled so that its longer side is at most `side`, in multiples of 8.
pub fn fit(w: usize, h: usize, side: usize) -> (usize, usize) {
    let scale = (side as f64 / w.max(h).max(1) as f64).min(1.0);
    let round8 = |v: usize| (((v as f64 * scale) / 8.0).round() as usize * 8).max(8);
    (round8(w), round8(h))
}

/// `job` (the one Generate would run on the document) made at most `side` pixels on its longer
/// side, and where its result goes. Inpainting of the whole image scales the image and mask
/// down; "only masked" inpainting keeps them and makes its crop smaller, its result already
/// at the document's size.
pub fn shrink(mut job: Job, side: usize) -> (Job, Placement) {
    let p = &mut job.params;
    let placement = match &mut job.kind {
        JobKind::Txt2Img | JobKind::Outpaint { .. } => {
            (p.width, p.height) = fit(p.width, p.height, side);
            Placement::Whole
        }
        JobKind::Img2Img { init } => {
            let (w, h) = fit(init.width, init.height, side);
            *init = Arc::new(init.resized(w, h));
            (p.width, p.height) = (w, h);
            Placement::Whole
        }
        JobKind::Inpaint {
            image,
            mask,
            options,
        } => {
            let full = mask.clone();
            match options.area {
                InpaintArea::Whole => {
                    let (w, h) = fit(image.width, image.height, side);
                    *image = Arc::new(image.resized(w, h));
                    *mask = Arc::new(mask.resize_linear(w, h));
                    (p.width, p.height) = (w, h);
                }
                InpaintArea::Masked { .. } => {
                    (p.width, p.height) = fit(p.width, p.height, side);
                }
            }
            Placement::Masked(full)
        }
    };
    (job.with_batch(1), placement)
}

/// The result laid out at `width`×`height` as straight-alpha RGBA: scaled up to the document,
/// transparent outside the mask it was made for.
pub fn result_rgba(
    image: &RgbImage,
    placement: &Placement,
    width: usize,
    height: usize,
) -> Vec<u8> {
    let image = image.resized(width, height);
    let alpha: Box<dyn Fn(usize) -> u8> = match placement {
        Placement::Whole => Box::new(|_| 255),
        Placement::Masked(mask) => {
            let mask = mask.resize_linear(width, height);
            Box::new(move |i| (mask.values[i].clamp(0.0, 1.0) * 255.0).round() as u8)
        }
    };
    image
        .pixels
        .chunks_exact(3)
        .enumerate()
        .flat_map(|(i, px)| [px[0], px[1], px[2], alpha(i)])
        .collect()
}

/// What the Live window asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveAction {
    None,
    Keep,
    TurnOff,
}

/// The Live section (atop the right panel, so that it never covers the canvas): the latest
/// picture, how long it took, the size, Keep, Off.
pub fn show(ui: &mut egui::Ui, live: &mut Live, working: bool) -> LiveAction {
    let mut action = LiveAction::None;
    ui.horizontal(|ui| {
        ui.label(egui::RichText::new("Live preview").strong());
        if working {
            ui.spinner();
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui
                .small_button("Turn off")
                .on_hover_text("stop regenerating after each stroke")
                .clicked()
            {
                action = LiveAction::TurnOff;
            }
        });
    });
    ui.horizontal(|ui| {
        ui.label("Size");
        for size in LiveSize::ALL {
            let side = size.side();
            ui.radio_value(&mut live.size, size, format!("{side}"))
                .on_hover_text(format!("make live pictures at most {side} px a side"));
        }
    });
    match &mut live.result {
        Some(result) => {
            let image = &result.image;
            let texture = result.texture.get_or_insert_with(|| {
                let img = egui::ColorImage::from_rgb([image.width, image.height], &image.pixels);
                ui.ctx()
                    .load_texture("live", img, egui::TextureOptions::LINEAR)
            });
            let side = ui.available_width().clamp(64.0, 256.0);
            let scale = side / image.width.max(image.height).max(1) as f32;
            let size = egui::vec2(image.width as f32, image.height as f32) * scale;
            ui.add(egui::Image::new((texture.id(), size)))
                .on_hover_text("the latest live picture");
            ui.label(format!(
                "seed {} · {}×{} · {:.2} s after the change",
                result.record.params.seed,
                image.width,
                image.height,
                result.latency.as_secs_f64()
            ));
            if ui
                .button("Keep as layer")
                .on_hover_text("Shift+Enter: add this picture to the canvas as a layer")
                .clicked()
            {
                action = LiveAction::Keep;
            }
        }
        None if working => {
            ui.label("generating…");
        }
        None => {
            ui.label("paint a stroke or change the prompt: the picture follows");
        }
    }
    if let Some(e) = &live.error {
        ui.colored_label(ui.visuals().warn_fg_color, e);
    }
    ui.separator();
    action
}

impl super::PentimentoApp {
    /// Shows the Live window and starts a live job once the document or the settings have
    /// changed and settled. Nothing starts during a stroke, a normal job or a staged result.
    pub(super) fn tick_live(&mut self, ctx: &egui::Context) {
        if !self.live.enabled {
            return;
        }
        let idle = self.model.is_ready()
            && self.job.is_none()
            && !self.doc.stroke_active()
            && self.doc.staged().is_empty();
        if !idle {
            return;
        }
        let input = LiveInput {
            image_revision: self.doc.image_revision(),
            mask_revision: self.doc.mask_revision(),
            params: self.panel.params.clone(),
            inpaint: self.panel.inpaint,
            size: self.live.size,
        };
        match self.live.due(&input, Instant::now()) {
            Due::No => {}
            Due::Later(wait) => ctx.request_repaint_after(wait),
            Due::Now(changed_at) => {
                let job = self.job_for(&input.params).and_then(|job| {
                    let (job, placement) = shrink(job, input.size.side());
                    job.validate().map_err(|e| e.to_string())?;
                    Ok((job, placement))
                });
                match job {
                    Ok((job, placement)) => {
                        let id = self.backend.generate_without_previews(job);
                        // Cancelling the older job (ids up to it) leaves the newer one queued.
                        if let Some(old) = self.live.started(input, id, changed_at, placement) {
                            self.backend.cancel(old);
                        }
                    }
                    Err(e) => self.live.refused(input, e),
                }
            }
        }
    }

    /// The live picture as a new layer at the document's size (undoable).
    pub(super) fn keep_live(&mut self) {
        let Some(result) = &self.live.result else {
            self.status = "no live picture to keep yet".into();
            return;
        };
        if !self.doc.staged().is_empty() {
            self.status = "accept or discard the result first (Enter / Esc)".into();
            return;
        }
        let (w, h) = self.doc.size();
        let rgba = result_rgba(&result.image, &result.placement, w, h);
        let record = Some(result.record.clone());
        let outcome = self.doc.add_result_rgba(rgba, record).map(|_| ());
        self.layer_outcome(outcome, "live picture kept as a layer (Ctrl+Z removes it)");
    }

    /// Live mode on or off (off cancels its job).
    pub(super) fn set_live(&mut self, on: bool) {
        self.live.enabled = on;
        if let Some(id) = self.live.stop() {
            self.backend.cancel(id);
        }
        self.status = if on {
            "live: the picture follows each stroke (Shift+Enter keeps it)".into()
        } else {
            "live mode off".into()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(mask_revision: u64) -> LiveInput {
        LiveInput {
            image_revision: 1,
            mask_revision,
            params: GenerationParams::default(),
            inpaint: InpaintOptions::default(),
            size: LiveSize::Small,
        }
    }

    #[test]
    fn a_change_waits_for_the_debounce_then_runs_once() {
        let mut live = Live::default();
        let t0 = Instant::now();
        assert_eq!(live.due(&input(1), t0), Due::Later(LIVE_DEBOUNCE));
        assert!(matches!(
            live.due(&input(1), t0 + LIVE_DEBOUNCE / 2),
            Due::Later(_)
        ));
        // Another change restarts the wait.
        let t1 = t0 + LIVE_DEBOUNCE / 2;
        assert_eq!(live.due(&input(2), t1), Due::Later(LIVE_DEBOUNCE));
        assert_eq!(live.due(&input(2), t1 + LIVE_DEBOUNCE), Due::Now(t1));
        assert_eq!(live.started(input(2), 7, t1, Placement::Whole), None);
        assert_eq!(live.due(&input(2), t1 + LIVE_DEBOUNCE * 3), Due::No);
        // A newer change replaces the running job.
        let t2 = t1 + LIVE_DEBOUNCE * 4;
        live.due(&input(3), t2);
        assert!(matches!(
            live.due(&input(3), t2 + LIVE_DEBOUNCE),
            Due::Now(_)
        ));
        assert_eq!(live.started(input(3), 8, t2, Placement::Whole), Some(7));
        assert!(live.is_mine(8) && !live.is_mine(7));
    }

    #[test]
    fn sizes_fit_the_longer_side_in_multiples_of_8() {
        assert_eq!(fit(512, 512, 256), (256, 256));
        assert_eq!(fit(1024, 768, 256), (256, 192));
        assert_eq!(fit(640, 480, 512), (512, 384));
        // Never larger than the document.
        assert_eq!(fit(200, 120, 512), (200, 120));
        assert_eq!(fit(4000, 10, 256), (256, 8));
    }

    #[test]
    fn a_masked_result_is_transparent_outside_the_mask() {
        let mut values = vec![0.0; 16];
        values[5] = 1.0;
        let mask = Mask::new(4, 4, values).unwrap();
        let image = RgbImage {
            width: 2,
            height: 2,
            pixels: vec![200; 12],
        };
        let rgba = result_rgba(&image, &Placement::Masked(Arc::new(mask)), 4, 4);
        assert_eq!(rgba.len(), 64);
        assert_eq!(rgba[5 * 4 + 3], 255);
        assert_eq!(rgba[3], 0);
        assert_eq!(rgba[5 * 4], 200);
        // The whole picture is opaque.
        let whole = result_rgba(&image, &Placement::Whole, 4, 4);
        assert!(whole.chunks_exact(4).all(|px| px[3] == 255));
    }
}
