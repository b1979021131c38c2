//! The bar over the history while results wait: step through them, flip Before, Accept or
//! Discard. A view: it returns commands.

use eframe::egui::{self, RichText};

use super::commands::Command;

/// What the staging bar shows.
pub struct StagingView {
    pub count: usize,
    pub index: usize,
    pub show_original: bool,
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
        if ui.button("Accept").clicked() {
            commands.push(Command::Accept);
        }
        if ui.button("Discard").clicked() {
            commands.push(Command::Discard);
        }
    });
    commands
}
