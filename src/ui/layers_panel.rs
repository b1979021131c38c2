//! The layers panel: the stack top first, each layer's visibility and name (the active one
//! selected), the active layer's opacity, and buttons to add, move, merge and delete. A view:
//! it reads the document and returns what the user asked for as commands.

use eframe::egui;

use super::commands::Command;
use super::icons::{Icon, Icons};
use crate::document::layer_ops::Direction;
use crate::document::{Document, LayerKind};

/// Shows the panel; `locked` says why edits are off right now (a staged result is shown in
/// place of the layers), if they are.
pub fn show(
    ui: &mut egui::Ui,
    icons: &Icons,
    doc: &Document,
    locked: Option<&str>,
    control_from: &mut Option<crate::engine::control::Preprocessor>,
) -> Vec<Command> {
    let mut commands = vec![];
    let active = doc.active_layer();
    let layers = doc.layers();
    let index = layers.iter().position(|l| l.id == active.id).unwrap_or(0);
    let enabled = locked.is_none();
    ui.heading("Layers");
    ui.horizontal_wrapped(|ui| {
        let hint = |h: &str| locked.map_or(h.to_string(), |why| format!("{h} ({why})"));
        if icons
            .button(
                ui,
                Icon::LayerAdd,
                "New paint layer",
                &hint("A new empty layer above this one, to sketch on"),
                false,
                enabled,
            )
            .clicked()
        {
            commands.push(Command::AddPaintLayer);
        }
        let up = index + 1 < layers.len();
        if icons
            .button(
                ui,
                Icon::LayerUp,
                "Move layer up",
                &hint("Move layer up"),
                false,
                enabled && up,
            )
            .clicked()
        {
            commands.push(Command::MoveLayer(active.id, Direction::Up));
        }
        if icons
            .button(
                ui,
                Icon::LayerDown,
                "Move layer down",
                &hint("Move layer down"),
                false,
                enabled && index > 0,
            )
            .clicked()
        {
            commands.push(Command::MoveLayer(active.id, Direction::Down));
        }
        if icons
            .button(
                ui,
                Icon::MergeDown,
                "Merge down",
                &hint("Paint this layer into the one below"),
                false,
                enabled && index > 0,
            )
            .clicked()
        {
            commands.push(Command::MergeDown(active.id));
        }
        let control = ui
            .add_enabled(
                enabled && active.kind != LayerKind::Control,
                egui::Button::new("Control layer"),
            )
            .on_hover_text(hint(
                "A ControlNet condition made from this layer: a sketch becomes white scribbles on black, a picture its edges",
            ))
            .on_disabled_hover_text(
                "Select the layer to make it from (a sketch or a picture, not a control layer)",
            );
        if control.clicked() {
            commands.push(Command::AddControlLayer(active.id, *control_from));
        }
        if icons
            .button(
                ui,
                Icon::Delete,
                "Delete layer",
                &hint("Delete this layer (Ctrl+Z brings it back)"),
                false,
                enabled && layers.len() > 1,
            )
            .clicked()
        {
            commands.push(Command::DeleteLayer(active.id));
        }
        control_from_choice(ui, control_from);
    });
    let mut opacity = active.props.opacity * 100.0;
    let slider = egui::Slider::new(&mut opacity, 0.0..=100.0)
        .fixed_decimals(0)
        .suffix(" %")
        .text("Opacity");
    if ui.add_enabled(enabled, slider).changed() {
        commands.push(Command::SetLayerOpacity(active.id, opacity / 100.0));
    }
    ui.separator();
    egui::ScrollArea::vertical()
        .id_salt("layers")
        .show(ui, |ui| {
            for layer in layers.iter().rev() {
                ui.horizontal(|ui| {
                    let (icon, verb) = if layer.props.visible {
                        (Icon::Eye, "Hide")
                    } else {
                        (Icon::EyeOff, "Show")
                    };
                    let label = format!("{verb} {}", layer.props.name);
                    if icons
                        .button(ui, icon, &label, &label, false, enabled)
                        .clicked()
                    {
                        commands.push(Command::SetLayerVisible(layer.id, !layer.props.visible));
                    }
                    let mut text = egui::RichText::new(&layer.props.name);
                    if !layer.props.visible {
                        text = text.weak();
                    }
                    let hover = match (layer.kind, &layer.record) {
                        (_, Some(r)) => format!(
                            "{} · {} steps · CFG {}\n{}",
                            r.params.sampler, r.params.steps, r.params.cfg_scale, r.params.prompt
                        ),
                        (LayerKind::Paint, None) => "painted by hand".into(),
                        (LayerKind::Control, None) => {
                            "a ControlNet's condition: steers Generate, never part of the picture"
                                .into()
                        }
                        (_, None) => "the image the document started from".into(),
                    };
                    let row = ui
                        .selectable_label(layer.id == active.id, text)
                        .on_hover_text(hover);
                    if row.clicked() {
                        commands.push(Command::SelectLayer(layer.id));
                    }
                    if layer.props.opacity < 1.0 {
                        ui.weak(format!("{:.0} %", layer.props.opacity * 100.0));
                    }
                });
            }
        });
    commands
}

/// The preprocessor a new control layer is made with ("automatic": scribble for a sketch,
/// Canny edges for a picture).
fn control_from_choice(
    ui: &mut egui::Ui,
    chosen: &mut Option<crate::engine::control::Preprocessor>,
) {
    use crate::engine::control::preprocess::{Preprocessor, DEFAULT_CANNY, DEFAULT_THRESHOLD};
    let options = [
        (None, "automatic"),
        (Some(Preprocessor::Scribble), "scribble"),
        (
            Some(Preprocessor::Canny {
                low: DEFAULT_CANNY.0,
                high: DEFAULT_CANNY.1,
            }),
            "canny",
        ),
        (Some(Preprocessor::Depth), "depth"),
        (Some(Preprocessor::Invert), "invert"),
        (
            Some(Preprocessor::Threshold(DEFAULT_THRESHOLD)),
            "threshold",
        ),
        (Some(Preprocessor::None), "as it is"),
    ];
    let shown = options
        .iter()
        .find(|(m, _)| m == chosen)
        .map_or("automatic", |(_, n)| n);
    let label = ui.label("made with");
    egui::ComboBox::from_id_salt("control-from")
        .selected_text(shown)
        .width(90.0)
        .show_ui(ui, |ui| {
            for (m, name) in options {
                ui.selectable_value(chosen, m, name);
            }
        })
        .response
        .on_hover_text("What the next control layer is made with")
        .labelled_by(label.id);
}
