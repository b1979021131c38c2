//! The history strip: every result of the session with its parameters; click one to reuse
//! its settings.

use eframe::egui::{self, TextureHandle};

use crate::engine::image::RgbImage;
use crate::engine::params::GenerationParams;

pub struct HistoryItem {
    pub image: RgbImage,
    pub params: GenerationParams,
    thumbnail: Option<TextureHandle>,
}

#[derive(Default)]
pub struct History {
    pub items: Vec<HistoryItem>,
}

impl History {
    pub fn push(&mut self, image: RgbImage, params: GenerationParams) {
        self.items.push(HistoryItem {
            image,
            params,
            thumbnail: None,
        });
    }

    pub fn last_params(&self) -> Option<GenerationParams> {
        self.items.last().map(|i| i.params.clone())
    }

    /// Shows the strip; returns the parameters of a clicked item.
    pub fn show(&mut self, ui: &mut egui::Ui) -> Option<GenerationParams> {
        let mut picked = None;
        egui::ScrollArea::horizontal()
            .id_salt("history")
            .max_height(92.0)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    if self.items.is_empty() {
                        ui.weak("Results appear here.");
                    }
                    for (i, item) in self.items.iter_mut().enumerate().rev() {
                        let tex = item.thumbnail.get_or_insert_with(|| {
                            let img = egui::ColorImage::from_rgb(
                                [item.image.width, item.image.height],
                                &item.image.pixels,
                            );
                            ui.ctx().load_texture(
                                format!("history-{i}"),
                                img,
                                egui::TextureOptions::LINEAR,
                            )
                        });
                        let size = egui::vec2(
                            80.0,
                            80.0 * item.image.height as f32 / item.image.width.max(1) as f32,
                        )
                        .min(egui::vec2(80.0, 80.0));
                        let button = egui::Button::image(egui::Image::new((tex.id(), size)));
                        let hover = format!(
                            "seed {} · {} · {} steps · CFG {}\n{}\nclick to reuse these settings",
                            item.params.seed,
                            item.params.sampler,
                            item.params.steps,
                            item.params.cfg_scale,
                            item.params.prompt
                        );
                        if ui.add(button).on_hover_text(hover).clicked() {
                            picked = Some(item.params.clone());
                        }
                    }
                });
            });
        picked
    }
}
