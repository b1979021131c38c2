//! The two rows above the canvas: files, models, device, VAE, undo and view on the first;
//! painting tools on the second. A view: it edits the tool settings it is given and returns
//! what else the user asked for as commands.

use eframe::egui;

use super::commands::Command;
use super::dialogs::Dialog;
use super::icons::{Icon, Icons};
use crate::document::brush::{BrushSettings, Tool};
use crate::engine::device::DeviceKind;

/// What the top bar shows of the app's state.
pub struct TopBarView {
    pub can_undo: bool,
    pub can_redo: bool,
    pub device: DeviceKind,
    pub ema: bool,
    /// The VAE choice the next load uses, and the VAE file the loaded model decodes with.
    pub vae_choice: crate::engine::model::VaeChoice,
    pub vae_loaded: Option<std::path::PathBuf>,
}

/// The tool settings the second row edits in place.
pub struct Tools<'a> {
    pub tool: &'a mut Tool,
    pub brush: &'a mut BrushSettings,
    pub color: &'a mut [u8; 3],
}

/// Two rows: files, models, undo and view on the first; painting tools on the second. Each
/// wraps rather than clips in a narrow window.
pub fn show(ui: &mut egui::Ui, view: &TopBarView, tools: Tools, icons: &Icons) -> Vec<Command> {
    let mut commands = vec![];
    let Tools { tool, brush, color } = tools;
    ui.horizontal_wrapped(|ui| {
        ui.menu_button("File", |ui| {
            ui.menu_button("New canvas", |ui| {
                for (w, h) in [
                    (512, 512),
                    (768, 768),
                    (1024, 1024),
                    (512, 768),
                    (768, 512),
                    (832, 1216),
                    (1216, 832),
                ] {
                    if ui.button(format!("{w} × {h}")).clicked() {
                        ui.close();
                        commands.push(Command::NewCanvas(w, h));
                    }
                }
            });
            if ui.button("Open image…").clicked() {
                ui.close();
                commands.push(Command::Open(Dialog::OpenImage));
            }
            if ui
                .button("Save image…")
                .on_hover_text("PNG with the full record; JPEG or WebP with the parameters in EXIF, as AUTOMATIC1111 writes them")
                .clicked()
            {
                ui.close();
                commands.push(Command::Open(Dialog::SavePng));
            }
            if ui
                .button("Save document…")
                .on_hover_text("Image, mask and what made it, as a .pentimento file")
                .clicked()
            {
                ui.close();
                commands.push(Command::Open(Dialog::SaveDocument));
            }
            ui.separator();
            if ui
                .button("Open model folder…")
                .on_hover_text("A diffusers folder (model_index.json, unet/, vae/, …)")
                .clicked()
            {
                ui.close();
                commands.push(Command::Open(Dialog::OpenModelFolder));
            }
            ui.separator();
            if ui.button("Quit").on_hover_text("Ctrl+Q").clicked() {
                ui.close();
                commands.push(Command::Quit);
            }
        });
        if ui
            .button("Models…")
            .on_hover_text("your model library and downloads from the Hugging Face hub")
            .clicked()
        {
            commands.push(Command::ShowModels);
        }
        if ui.button("Open model…").clicked() {
            commands.push(Command::Open(Dialog::OpenModelFile));
        }
        ui.menu_button("Settings", |ui| {
            if ui
                .button("Backend…")
                .on_hover_text("compute here, or on a server (pentimento serve, AUTOMATIC1111, Forge)")
                .clicked()
            {
                ui.close();
                commands.push(Command::ShowBackend);
            }
        });
        ui.menu_button("Device", |ui| {
            use crate::engine::device::DeviceKind;
            let current = view.device;
            for kind in DeviceKind::ALL {
                let label = if kind == DeviceKind::Cpu {
                    "CPU (f32)".to_string()
                } else {
                    format!("{} (f16)", kind.name())
                };
                let button = ui
                    .add_enabled(
                        kind.compiled(),
                        egui::Button::selectable(kind == current, label),
                    )
                    .on_disabled_hover_text(format!(
                        "this build has no {} support (cargo feature `{}`)",
                        kind.name(),
                        kind.name().to_lowercase()
                    ));
                if button.clicked() {
                    commands.push(Command::SetDevice(kind));
                    ui.close();
                }
            }
        });
        ui.menu_button("VAE", |ui| {
            use crate::engine::model::VaeChoice;
            // What decodes now, then the choices with the current one selected.
            ui.label(match &view.vae_loaded {
                Some(p) => format!(
                    "in use: {}",
                    p.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                ),
                None => "in use: the model's own".into(),
            });
            ui.separator();
            if ui
                .selectable_label(
                    view.vae_choice == VaeChoice::Automatic,
                    "Automatic (NAME.vae.* beside the model)",
                )
                .clicked()
            {
                commands.push(Command::SetVae(VaeChoice::Automatic));
                ui.close();
            }
            if ui
                .selectable_label(view.vae_choice == VaeChoice::Builtin, "The model's own")
                .clicked()
            {
                commands.push(Command::SetVae(VaeChoice::Builtin));
                ui.close();
            }
            let file_label = match &view.vae_choice {
                VaeChoice::File(p) => format!(
                    "File: {}…",
                    p.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                ),
                _ => "File…".into(),
            };
            if ui
                .selectable_label(matches!(view.vae_choice, VaeChoice::File(_)), file_label)
                .clicked()
            {
                commands.push(Command::Open(Dialog::VaeFile));
                ui.close();
            }
            if ui
                .button("Preview decoder (TAESD folder)…")
                .on_hover_text(
                    "madebyollin/taesd in diffusers layout: full-quality previews every step",
                )
                .clicked()
            {
                commands.push(Command::Open(Dialog::PreviewDecoderFolder));
                ui.close();
            }
            let mut ema = view.ema;
            if ui
                .checkbox(&mut ema, "EMA weights (training checkpoints)")
                .changed()
            {
                commands.push(Command::SetEma(ema));
            }
        });
        ui.separator();
        if icons
            .button(
                ui,
                Icon::Undo,
                "Undo",
                "Undo (Ctrl+Z)",
                false,
                view.can_undo,
            )
            .clicked()
        {
            commands.push(Command::Undo);
        }
        if icons
            .button(
                ui,
                Icon::Redo,
                "Redo",
                "Redo (Ctrl+Shift+Z)",
                false,
                view.can_redo,
            )
            .clicked()
        {
            commands.push(Command::Redo);
        }
        ui.separator();
        if icons
            .button(
                ui,
                Icon::Fit,
                "Fit",
                "Fit the image to the window",
                false,
                true,
            )
            .clicked()
        {
            commands.push(Command::FitView);
        }
        if icons
            .button(
                ui,
                Icon::OneToOne,
                "1:1",
                "One image pixel per screen pixel",
                false,
                true,
            )
            .clicked()
        {
            commands.push(Command::OneToOne);
        }
    });
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().slider_width = 90.0;
        // Wide enough for "400 px": the value's width never moves what follows it.
        ui.spacing_mut().interact_size.x = 56.0;
        let tool_buttons = [
            (
                Tool::MaskBrush,
                Icon::MaskBrush,
                "Mask brush",
                "Mask brush: paint where to regenerate (B)",
            ),
            (
                Tool::MaskEraser,
                Icon::MaskEraser,
                "Eraser",
                "Mask eraser: take away from the mask (E)",
            ),
            (
                Tool::ColorBrush(*color),
                Icon::ColourBrush,
                "Colour",
                "Colour brush: paint on the active layer (P)",
            ),
            (
                Tool::LayerEraser,
                Icon::LayerEraser,
                "Layer eraser",
                "Layer eraser: erase the active layer to transparency (Shift+E)",
            ),
        ];
        for (t, icon, label, hint) in tool_buttons {
            let selected = std::mem::discriminant(&t) == std::mem::discriminant(tool);
            if icons
                .button(ui, icon, label, hint, selected, true)
                .clicked()
            {
                *tool = t;
            }
        }
        if ui.color_edit_button_srgb(color).changed() {
            *tool = Tool::ColorBrush(*color);
        }
        ui.add(
            egui::Slider::new(&mut brush.size, 1.0..=400.0)
                .logarithmic(true)
                // Whole pixels, so the label keeps its width and the bar does not jump.
                .fixed_decimals(0)
                .suffix(" px")
                .text("Size"),
        );
        ui.add(
            egui::Slider::new(&mut brush.hardness, 0.0..=1.0)
                .fixed_decimals(2)
                .text("Hardness"),
        );
        ui.separator();
        let mask_buttons = [
            (
                Icon::FillMask,
                "Fill mask",
                "Mask everything: regenerate the whole image",
                Command::FillMask,
            ),
            (
                Icon::ClearMask,
                "Clear mask",
                "Clear the mask",
                Command::ClearMask,
            ),
            (
                Icon::InvertMask,
                "Invert mask",
                "Swap what is masked and what is not",
                Command::InvertMask,
            ),
        ];
        for (icon, label, hint, command) in mask_buttons {
            if icons.button(ui, icon, label, hint, false, true).clicked() {
                commands.push(command);
            }
        }
    });
    commands
}
