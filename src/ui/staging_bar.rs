//! The bar over the history while results wait: step through them, flip Before, Accept or
//! Discard. A view: it returns commands.

use eframe::egui::{self, RichText};

use super::commands::Command;

/// What the staging bar shows.
pub struct StagingView {
    pub count: usize,
    pub index: usize,
    pub show_original: bool,
    /// The shown result's seed.
    pub seed: Option<u64>,
}

pub fn show(ui: &mut egui::Ui, view: &StagingView) -> Vec<Command> {
    let mut commands = vec![];
    if view.count == 0 {
        return commands;
    }
    ui.horizontal(|ui| {
        ui.label(RichText::new(format!("Result {} of {}", view.index + 1, view.count)).strong());
        if ui
            .add_enabled(view.index > 0, egui::Button::new("Previous"))
            .clicked()
        {
            commands.push(Command::SelectStaged(view.index - 1));
        }
        if ui
            .add_enabled(view.index + 1 < view.count, egui::Button::new("Next"))
            .clicked()
        {
            commands.push(Command::SelectStaged(view.index + 1));
        }
        let mut before = view.show_original;
        if ui.toggle_value(&mut before, "Before").changed() {
            commands.push(Command::ShowOriginal(before));
        }
        if let Some(seed) = view.seed {
            ui.label(format!("seed {seed}"));
            if ui
                .small_button("Copy")
                .on_hover_text("Copy the seed")
                .clicked()
            {
                ui.ctx().copy_text(seed.to_string());
            }
            if ui
                .small_button("Reuse")
                .on_hover_text("Put this seed in the panel, locked")
                .clicked()
            {
                commands.push(Command::ReuseSeed(seed));
            }
        }
        if ui.button("Accept").on_hover_text("Enter").clicked() {
            commands.push(Command::Accept);
        }
        if ui.button("Discard").on_hover_text("Esc").clicked() {
            commands.push(Command::Discard);
        }
    });
    commands
}
