//! The status bar: the model (its file, family, memory, VAE), a load's progress, and the last
//! message.

use eframe::egui;

use super::ModelStatus;

pub fn show(ui: &mut egui::Ui, model: &ModelStatus, message: &str, zoom: f32) {
    ui.horizontal(|ui| {
        // Fixed width, so the rest of the bar does not jump as the zoom changes.
        ui.add_sized(
            [52.0, ui.spacing().interact_size.y],
            egui::Label::new(format!("{:.0} %", zoom * 100.0)),
        )
        .on_hover_text("canvas zoom");
        ui.separator();
        let text = match model {
            ModelStatus::None => "no model".to_string(),
            ModelStatus::Loading { path, .. } => format!("loading {}…", path.display()),
            ModelStatus::Loaded(info) => format!(
                "{} · {} · {} · VAE: {}{}",
                info.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                info.family,
                crate::engine::model::inspect::human_size(info.memory_bytes),
                info.vae
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "model's own".into()),
                if info.ema { " · EMA" } else { "" }
            ),
            ModelStatus::Server(s) => match (&s.kind, &s.choosing, &s.model) {
                (None, ..) => format!("connecting to {}…", s.url),
                (_, Some(title), _) => format!("{} · loading {title}…", s.url),
                (_, None, Some(title)) => format!("{} · {title}", s.url),
                (_, None, None) => format!("{} · no model chosen", s.url),
            },
        };
        ui.label(text);
        if let ModelStatus::Loading {
            progress: Some(f), ..
        } = model
        {
            ui.add(
                egui::ProgressBar::new(*f)
                    .desired_width(140.0)
                    .text(format!("{:.0} %", f * 100.0)),
            );
        }
        ui.separator();
        ui.label(message);
    });
}
