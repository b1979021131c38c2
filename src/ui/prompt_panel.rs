//! The prompt panel: what to generate and how. It edits a `GenerationParams` and the inpainting
//! options; buttons come back as actions for the app to carry out.

use eframe::egui::{self, RichText};

use crate::engine::inpaint::{InpaintArea, InpaintOptions, MaskedContent};
use crate::engine::params::GenerationParams;
use crate::engine::sampler::{Algorithm, SamplerKind};

use super::running_job::JobProgress;

pub struct PromptPanel {
    pub params: GenerationParams,
    pub inpaint: InpaintOptions,
    /// Keep the seed between generations; otherwise each Generate rolls a new one.
    pub seed_locked: bool,
    /// Jobs run one after another.
    pub batch_count: usize,
    /// Images sampled together in one job.
    pub batch_size: usize,
    loras: super::lora_panel::LoraPanel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanelAction {
    None,
    Generate,
    Cancel,
}

impl Default for PromptPanel {
    fn default() -> Self {
        Self {
            params: GenerationParams {
                steps: 20,
                width: 512,
                height: 512,
                ..Default::default()
            },
            inpaint: InpaintOptions::default(),
            seed_locked: false,
            batch_count: 1,
            batch_size: 1,
            loras: Default::default(),
        }
    }
}

impl PromptPanel {
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        running: Option<JobProgress>,
        can_generate: bool,
        // The image size the job will use instead of W×H (img2img, whole-image inpainting).
        fixed_size: Option<(usize, usize)>,
        // The library's settings file, whose model folders have LoRA folders beside them.
        library: Option<&std::path::Path>,
    ) -> PanelAction {
        let mut action = PanelAction::None;
        let p = &mut self.params;
        ui.add_space(4.0);
        let label = ui.label(RichText::new("Prompt").strong());
        ui.add(
            egui::TextEdit::multiline(&mut p.prompt)
                .desired_rows(4)
                .desired_width(f32::INFINITY)
                .hint_text("a watercolor of a lighthouse"),
        )
        .labelled_by(label.id);
        let label = ui.label(RichText::new("Negative prompt").strong());
        ui.add(
            egui::TextEdit::multiline(&mut p.negative_prompt)
                .desired_rows(2)
                .desired_width(f32::INFINITY)
                .hint_text("what to avoid, e.g. blurry, lowres (empty: nothing)"),
        )
        .labelled_by(label.id);
        let GenerationParams {
            prompt,
            negative_prompt,
            ..
        } = &mut self.params;
        self.loras.show(ui, prompt, negative_prompt, library);
        let p = &mut self.params;
        ui.add_space(6.0);

        egui::Grid::new("settings")
            .num_columns(2)
            .spacing([8.0, 6.0])
            .show(ui, |ui| {
                let label = ui.label("Seed");
                ui.horizontal(|ui| {
                    // Fixed width: a 10-digit seed must not widen the panel.
                    ui.add_sized(
                        [96.0, ui.spacing().interact_size.y],
                        egui::DragValue::new(&mut p.seed).speed(1.0),
                    )
                    .labelled_by(label.id);
                    if ui
                        .button("Random")
                        .on_hover_text("Roll a random seed")
                        .clicked()
                    {
                        p.seed = crate::engine::params::random_seed();
                    }
                    if ui.button("+1").on_hover_text("Next seed").clicked() {
                        p.seed = p.seed.wrapping_add(1);
                    }
                    ui.checkbox(&mut self.seed_locked, "Lock")
                        .on_hover_text("Keep this seed; unlocked, every Generate rolls a new one");
                });
                ui.end_row();

                let label = ui.label("Steps");
                ui.add(egui::Slider::new(&mut p.steps, 1..=150))
                    .labelled_by(label.id);
                ui.end_row();

                let label = ui.label("CFG scale");
                ui.add(egui::Slider::new(&mut p.cfg_scale, 1.0..=20.0).step_by(0.5))
                    .labelled_by(label.id);
                ui.end_row();

                let label = ui.label("Sampler");
                egui::ComboBox::from_id_salt("sampler")
                    .selected_text(p.sampler.clone())
                    .width(160.0)
                    .show_ui(ui, |ui| {
                        for kind in SamplerKind::all() {
                            let name = kind.name();
                            ui.selectable_value(&mut p.sampler, name.clone(), name);
                        }
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
                let algorithm = SamplerKind::from_name(&p.sampler).map(|k| k.algorithm);
                if matches!(algorithm, Some(Algorithm::Ddim | Algorithm::Tcd)) {
                    let label = ui.label("Eta");
                    ui.add(egui::Slider::new(&mut p.eta, 0.0..=1.0))
                        .labelled_by(label.id)
                        .on_hover_text(
                            "DDIM's η, TCD's γ: how much fresh noise each step adds \
                             (0: none; TCD-LoRAs are made for about 0.3)",
                        );
                    ui.end_row();
                }
                // Few-step models (SD-Turbo) want "trailing"; by default the model's config
                // decides.
                let label = ui.label("Timesteps");
                let current = p.timestep_spacing.map_or("the model's", |s| s.name());
                egui::ComboBox::from_id_salt("spacing")
                    .selected_text(current)
                    .width(160.0)
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut p.timestep_spacing, None, "the model's");
                        for s in crate::engine::sampler::schedule::TimestepSpacing::ALL {
                            ui.selectable_value(&mut p.timestep_spacing, Some(s), s.name());
                        }
                    })
                    .response
                    .on_hover_text("timestep spacing: trailing for SD-Turbo at 1–4 steps")
                    .labelled_by(label.id);
                ui.end_row();

                ui.label("Size");
                match fixed_size {
                    Some((w, h)) => {
                        ui.label(format!("{w} × {h} (the image's)")).on_hover_text(
                            "img2img and whole-image inpainting work at the image's size; \
                             W×H apply to text-to-image and to \"Only masked\" inpainting",
                        );
                    }
                    None => {
                        ui.horizontal(|ui| {
                            let w = ui.label("W");
                            ui.add(
                                egui::DragValue::new(&mut p.width)
                                    .range(64..=2048)
                                    .speed(8.0),
                            )
                            .labelled_by(w.id);
                            let h = ui.label("H");
                            ui.add(
                                egui::DragValue::new(&mut p.height)
                                    .range(64..=2048)
                                    .speed(8.0),
                            )
                            .labelled_by(h.id);
                            p.width = p.width / 8 * 8;
                            p.height = p.height / 8 * 8;
                        });
                    }
                }
                ui.end_row();

                let label = ui.label("Strength");
                ui.add(egui::Slider::new(&mut p.strength, 0.0..=1.0))
                    .labelled_by(label.id)
                    .on_hover_text("img2img and inpainting: how much may change");
                ui.end_row();

                let label = ui.label("Batch count");
                ui.add(egui::Slider::new(&mut self.batch_count, 1..=8))
                    .labelled_by(label.id)
                    .on_hover_text("jobs run one after another");
                ui.end_row();

                let label = ui.label("Batch size");
                ui.add(egui::Slider::new(&mut self.batch_size, 1..=8))
                    .labelled_by(label.id)
                    .on_hover_text("images sampled together: faster per image, more memory");
                ui.end_row();
            });

        ui.add_space(4.0);
        egui::CollapsingHeader::new("Inpainting").default_open(false).show(ui, |ui| {
            egui::Grid::new("inpaint").num_columns(2).spacing([8.0, 6.0]).show(ui, |ui| {
                let o = &mut self.inpaint;
                let label = ui.label("Mask blur");
                ui.add(egui::Slider::new(&mut o.mask_blur, 0..=64).suffix(" px")).labelled_by(label.id);
                ui.end_row();
                ui.label("Area");
                let mut masked = matches!(o.area, InpaintArea::Masked { .. });
                ui.horizontal(|ui| {
                    ui.radio_value(&mut masked, false, "Whole image");
                    ui.radio_value(&mut masked, true, "Only masked");
                });
                o.area = if masked { InpaintArea::Masked { padding: InpaintArea::DEFAULT_PADDING } } else { InpaintArea::Whole };
                ui.end_row();
                let label = ui.label("Masked content");
                egui::ComboBox::from_id_salt("masked content")
                    .selected_text(masked_content_label(o.masked_content))
                    .show_ui(ui, |ui| {
                        for c in [MaskedContent::Original, MaskedContent::Fill, MaskedContent::LatentNoise, MaskedContent::LatentNothing] {
                            ui.selectable_value(&mut o.masked_content, c, masked_content_label(c));
                        }
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("RePaint passes");
                ui.add(egui::Slider::new(&mut o.resampling.resample, 1..=8)).labelled_by(label.id).on_hover_text("More passes harmonise the region better; each costs a full set of steps");
                ui.end_row();
            });
        });

        ui.add_space(10.0);
        ui.horizontal(|ui| {
            let generate = ui.add_enabled(
                running.is_none() && can_generate,
                egui::Button::new(RichText::new("Generate").strong())
                    .min_size(egui::vec2(120.0, 30.0)),
            );
            if generate.clicked() {
                action = PanelAction::Generate;
            }
            let cancel = ui
                .add_enabled(
                    running.as_ref().is_some_and(|r| !r.cancelling),
                    egui::Button::new("Cancel").min_size(egui::vec2(80.0, 30.0)),
                )
                .on_hover_text("Esc");
            // On the press, not only a full click: a press and release that arrive in one
            // slow frame (the machine busy with the job) still stop it.
            let pressed = cancel.hovered() && ui.input(|i| i.pointer.primary_pressed());
            if cancel.enabled() && (cancel.clicked() || pressed) {
                action = PanelAction::Cancel;
            }
        });
        if let Some(progress) = running {
            let fraction = if progress.total > 0 {
                progress.step as f32 / progress.total as f32
            } else {
                0.0
            };
            ui.add(egui::ProgressBar::new(fraction).text(progress.text()));
        }
        action
    }

    /// The parameters of the next job: a new seed unless locked.
    pub fn next_params(&mut self) -> GenerationParams {
        if !self.seed_locked {
            self.params.seed = crate::engine::params::random_seed();
        }
        self.params.clone()
    }
}

/// AUTOMATIC1111's names for what the masked area starts from.
fn masked_content_label(c: MaskedContent) -> &'static str {
    match c {
        MaskedContent::Original => "original",
        MaskedContent::Fill => "fill",
        MaskedContent::LatentNoise => "latent noise",
        MaskedContent::LatentNothing => "latent nothing",
    }
}
