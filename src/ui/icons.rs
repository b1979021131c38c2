//! The toolbar's icons (`assets/icons`, drawn for this project by `make_icons.py`): white on
//! transparent PNGs built into the binary, tinted to the theme's text colour when shown.

use std::collections::HashMap;

use eframe::egui;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icon {
    MaskBrush,
    MaskEraser,
    ColourBrush,
    LayerEraser,
    FillMask,
    ClearMask,
    InvertMask,
    Undo,
    Redo,
    Fit,
    OneToOne,
    Eye,
    EyeOff,
    LayerAdd,
    LayerUp,
    LayerDown,
    MergeDown,
    Delete,
}

impl Icon {
    const ALL: [Icon; 18] = [
        Icon::MaskBrush,
        Icon::MaskEraser,
        Icon::ColourBrush,
        Icon::LayerEraser,
        Icon::FillMask,
        Icon::ClearMask,
        Icon::InvertMask,
        Icon::Undo,
        Icon::Redo,
        Icon::Fit,
        Icon::OneToOne,
        Icon::Eye,
        Icon::EyeOff,
        Icon::LayerAdd,
        Icon::LayerUp,
        Icon::LayerDown,
        Icon::MergeDown,
        Icon::Delete,
    ];

    fn png(self) -> &'static [u8] {
        macro_rules! icon {
            ($name:literal) => {
                include_bytes!(concat!("../../assets/icons/", $name, ".png"))
            };
        }
        match self {
            Icon::MaskBrush => icon!("mask_brush"),
            Icon::MaskEraser => icon!("mask_eraser"),
            Icon::ColourBrush => icon!("colour_brush"),
            Icon::LayerEraser => icon!("layer_eraser"),
            Icon::FillMask => icon!("fill_mask"),
            Icon::ClearMask => icon!("clear_mask"),
            Icon::InvertMask => icon!("invert_mask"),
            Icon::Undo => icon!("undo"),
            Icon::Redo => icon!("redo"),
            Icon::Fit => icon!("fit"),
            Icon::OneToOne => icon!("one_to_one"),
            Icon::Eye => icon!("eye"),
            Icon::EyeOff => icon!("eye_off"),
            Icon::LayerAdd => icon!("layer_add"),
            Icon::LayerUp => icon!("layer_up"),
            Icon::LayerDown => icon!("layer_down"),
            Icon::MergeDown => icon!("merge_down"),
            Icon::Delete => icon!("delete"),
        }
    }
}

/// The icons as textures, made once per window.
pub struct Icons {
    textures: HashMap<Icon, egui::TextureHandle>,
}

/// Side of an icon in a button, in points.
const SIDE: f32 = 18.0;

impl Icons {
    pub fn load(ctx: &egui::Context) -> Self {
        let textures = Icon::ALL
            .iter()
            .filter_map(|&icon| {
                // Built in and checked by a test: a failure here is a broken build, shown as
                // a text-only button rather than a crash.
                let rgba = image::load_from_memory_with_format(icon.png(), image::ImageFormat::Png)
                    .ok()?
                    .to_rgba8();
                let size = [rgba.width() as usize, rgba.height() as usize];
                let image = egui::ColorImage::from_rgba_unmultiplied(size, rgba.as_raw());
                let name = format!("icon-{icon:?}");
                Some((
                    icon,
                    ctx.load_texture(name, image, egui::TextureOptions::LINEAR),
                ))
            })
            .collect();
        Self { textures }
    }

    /// A button showing `icon` (or `label` where the icon is missing); `label` is its name for
    /// screen readers and tests, `hint` its tooltip.
    pub fn button(
        &self,
        ui: &mut egui::Ui,
        icon: Icon,
        label: &str,
        hint: &str,
        selected: bool,
        enabled: bool,
    ) -> egui::Response {
        let button = match self.textures.get(&icon) {
            Some(tex) => egui::Button::image(
                egui::Image::new((tex.id(), egui::vec2(SIDE, SIDE)))
                    .tint(ui.visuals().widgets.inactive.fg_stroke.color),
            ),
            None => egui::Button::new(label),
        };
        let response = ui
            .add_enabled(enabled, button.selected(selected))
            .on_hover_text(hint)
            .on_disabled_hover_text(hint);
        let label = label.to_string();
        response.widget_info(|| {
            egui::WidgetInfo::selected(
                egui::accesskit::Role::Button,
                enabled,
                selected,
                label.clone(),
            )
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_icon_decodes() {
        for icon in Icon::ALL {
            let img = image::load_from_memory(icon.png()).unwrap();
            assert_eq!((img.width(), img.height()), (48, 48), "{icon:?}");
        }
    }
}
