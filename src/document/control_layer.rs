//! Control layers: a ControlNet's condition image kept as a layer the painter sees and can
//! paint on, with the unit's settings (network, weight, step range, mode). Made from another
//! layer in one step (a sketch run through a preprocessor); the picture the engine reads and
//! the images saved never include them.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::layer_ops::LayerError;
use super::layers::{self, Layer, LayerId, LayerKind, LayerProps};
use super::undo::{Edit, PackedLayer};
use super::Document;
use crate::engine::control::{ControlMode, ControlUnit, Preprocessor};
use crate::engine::RgbImage;

/// How a new control layer shows over the picture: enough to paint on it, not so much that
/// the picture disappears.
pub const CONTROL_LAYER_OPACITY: f32 = 0.5;

/// A control layer's unit settings, as the document file keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlSettings {
    /// The ControlNet file or folder; none chosen yet: the layer is not used.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// What made the layer's image (`scribble`, `canny=100,200`…), recorded with results.
    pub module: String,
    pub weight: f64,
    pub start: f64,
    pub end: f64,
    /// `balanced`, `prompt` or `control`.
    pub mode: String,
    /// Whether Generate uses it (hiding the layer only hides it from view).
    pub enabled: bool,
}

impl ControlSettings {
    pub fn new(module: Preprocessor, model: Option<PathBuf>) -> Self {
        Self {
            model,
            module: module.spec(),
            weight: 1.0,
            start: 0.0,
            end: 1.0,
            mode: ControlMode::Balanced.cli_name().into(),
            enabled: true,
        }
    }

    pub fn mode(&self) -> ControlMode {
        ControlMode::parse(&self.mode).unwrap_or_default()
    }

    pub fn module(&self) -> Preprocessor {
        Preprocessor::parse(&self.module).unwrap_or_default()
    }
}

/// Over white: a sketch layer is strokes on nothing, and every preprocessor expects paper.
fn over_white(rgba: &[u8], width: usize, height: usize) -> RgbImage {
    let pixels = rgba
        .chunks_exact(4)
        .flat_map(|p| {
            let a = p[3] as u32;
            let over = |c: u8| ((c as u32 * a + 255 * (255 - a)) / 255) as u8;
            [over(p[0]), over(p[1]), over(p[2])]
        })
        .collect();
    RgbImage {
        width,
        height,
        pixels,
    }
}

impl Document {
    /// A control layer above `source`: its pixels over white through `module`; it becomes the
    /// active layer (paint on it to correct the condition). A sketch (paint layer) is hidden:
    /// its strokes now steer the picture rather than being part of it. One undo step.
    pub fn add_control_layer(
        &mut self,
        source: LayerId,
        module: Preprocessor,
        model: Option<PathBuf>,
    ) -> Result<LayerId, LayerError> {
        let picture = self.layer_picture(source).ok_or(LayerError::NotFound)?;
        let condition = module.apply(&picture);
        self.add_control_layer_with(source, module, &condition, model)
    }

    /// Whether a layer has no pixel at all (a blank canvas, a fresh paint layer).
    pub fn layer_is_empty(&self, id: LayerId) -> bool {
        self.layer_index(id)
            .is_some_and(|i| self.layers[i].rgba.chunks_exact(4).all(|p| p[3] == 0))
    }

    /// A layer's pixels over white: what a preprocessor reads of it.
    pub fn layer_picture(&self, id: LayerId) -> Option<RgbImage> {
        let (w, h) = self.size();
        let index = self.layer_index(id)?;
        Some(over_white(&self.layers[index].rgba, w, h))
    }

    /// `add_control_layer` with the condition already made (a depth map computed off the UI
    /// thread); it must have the document's size.
    pub fn add_control_layer_with(
        &mut self,
        source: LayerId,
        module: Preprocessor,
        condition: &RgbImage,
        model: Option<PathBuf>,
    ) -> Result<LayerId, LayerError> {
        self.room_for_one_more()?;
        let index = self.layer_index(source).ok_or(LayerError::NotFound)?;
        if (condition.width, condition.height) != self.size() {
            return Err(LayerError::WrongSize);
        }
        if self.layers[index].rgba.chunks_exact(4).all(|p| p[3] == 0) {
            return Err(LayerError::Empty);
        }
        let condition = condition.clone();
        let n = 1 + self
            .layers
            .iter()
            .filter(|l| l.kind == LayerKind::Control)
            .count();
        let name = format!("Control {n} ({})", module.name());
        let mut layer = self.new_layer(
            LayerKind::Control,
            name,
            None,
            super::rgb_to_rgba(&condition),
        );
        layer.props = LayerProps {
            opacity: CONTROL_LAYER_OPACITY,
            control: Some(ControlSettings::new(module, model)),
            ..layer.props
        };
        let mut edits = vec![];
        let sketch = &mut self.layers[index];
        if sketch.kind == LayerKind::Paint && sketch.props.visible {
            let before = sketch.props.clone();
            sketch.props.visible = false;
            edits.push(Edit::Props {
                layer: source,
                before,
                after: sketch.props.clone(),
            });
        }
        let id = layer.id;
        edits.push(Edit::Insert {
            index: index + 1,
            layer: PackedLayer::of(&layer),
        });
        self.layers.insert(index + 1, layer);
        self.active = id;
        self.history.push(Edit::Group(edits));
        self.recomposite(None);
        Ok(id)
    }

    /// Changes a control layer's settings; successive changes of one layer's settings (a
    /// slider dragged) are one undo step.
    pub fn set_control(
        &mut self,
        id: LayerId,
        settings: ControlSettings,
    ) -> Result<(), LayerError> {
        let layer = self
            .layers
            .iter()
            .find(|l| l.id == id)
            .ok_or(LayerError::NotFound)?;
        if layer.kind != LayerKind::Control {
            return Err(LayerError::NotFound);
        }
        let current = layer.props.clone();
        if let Some(Edit::Props {
            layer: last,
            before,
            after,
        }) = self.history.last_mut()
        {
            let only_control = LayerProps {
                control: before.control.clone(),
                ..current.clone()
            } == *before;
            if *last == id && *after == current && only_control {
                after.control = Some(settings.clone());
                if let Some(l) = self.layer_mut(id) {
                    l.props.control = Some(settings);
                }
                return Ok(());
            }
        }
        self.change_props(id, |p| p.control = Some(settings))
    }

    /// The ControlNet units Generate sends: each enabled control layer with a network, bottom
    /// first, its pixels as the condition image.
    pub fn control_units(&self) -> Vec<ControlUnit> {
        let (w, h) = self.size();
        self.layers
            .iter()
            .filter(|l| l.kind == LayerKind::Control)
            .filter_map(|l| {
                let c = l.props.control.as_ref()?;
                let model = c.model.clone()?;
                // Transparent is black: no condition, as the extension treats an empty canvas.
                c.enabled.then(|| ControlUnit {
                    model,
                    image: Arc::new(super::rgba_over_black(&l.rgba, w, h)),
                    module: c.module(),
                    weight: c.weight,
                    start: c.start,
                    end: c.end,
                    mode: c.mode(),
                })
            })
            .collect()
    }

    /// Whether any control layer is visible (the shown composite then differs from the
    /// picture).
    pub(super) fn shows_control_layers(&self) -> bool {
        self.layers
            .iter()
            .any(|l| l.kind == LayerKind::Control && l.props.visible && l.props.opacity > 0.0)
    }

    /// The picture without control layers, RGBA: what the engine reads and images save.
    pub fn picture_rgba(&self) -> Cow<'_, [u8]> {
        if !self.shows_control_layers() {
            return Cow::Borrowed(&self.rgba);
        }
        let (w, h) = self.size();
        let mut out = vec![0; w * h * 4];
        layers::composite_where(&self.layers, w, super::region::whole(w, h), &mut out, |l| {
            l.kind != LayerKind::Control
        });
        Cow::Owned(out)
    }
}

/// A control layer is never the layer that says what made the picture.
pub(super) fn is_picture(layer: &Layer) -> bool {
    layer.kind != LayerKind::Control
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sketch_becomes_white_strokes_on_black_outside_the_picture() {
        let mut doc = Document::from_rgb(&RgbImage {
            width: 8,
            height: 8,
            pixels: vec![90; 8 * 8 * 3],
        });
        let sketch = doc.add_paint_layer().unwrap();
        // A dark stroke on the (transparent) sketch layer.
        let i = (3 * 8 + 4) * 4;
        doc.layer_mut(sketch).unwrap().rgba[i..i + 4].copy_from_slice(&[10, 10, 10, 255]);
        doc.recomposite(None);
        let picture_before = doc.picture_rgba().into_owned();
        let control = doc
            .add_control_layer(sketch, Preprocessor::Scribble, Some("cn".into()))
            .unwrap();
        assert_eq!(doc.active_layer().id, control);
        let layer = doc.active_layer();
        assert_eq!(layer.kind, LayerKind::Control);
        assert_eq!(&layer.rgba[i..i + 4], &[255, 255, 255, 255], "the stroke");
        assert_eq!(&layer.rgba[..4], &[0, 0, 0, 255], "the paper");
        // The sketch is hidden; the canvas shows the control layer, the picture the engine
        // reads does not.
        assert!(!doc.layers()[1].props.visible, "the sketch is hidden");
        assert_ne!(doc.rgba(), &picture_before[..]);
        let background = [90, 90, 90, 255].repeat(64);
        assert_eq!(&doc.picture_rgba()[..], &background[..]);
        assert!(doc.has_image());
        let units = doc.control_units();
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].module, Preprocessor::Scribble);
        assert_eq!(units[0].image.pixels[(3 * 8 + 4) * 3], 255);
        // Disabled or without a network, it is not sent.
        let mut off = doc.active_layer().props.control.clone().unwrap();
        off.enabled = false;
        doc.set_control(control, off.clone()).unwrap();
        assert!(doc.control_units().is_empty());
        // A dragged slider: many changes, one undo step.
        for w in [0.2, 0.4, 0.6] {
            off.weight = w;
            doc.set_control(control, off.clone()).unwrap();
        }
        assert!(doc.undo());
        assert_eq!(doc.control_units().len(), 1, "undo brings the setting back");
        assert!(doc.undo());
        assert!(doc.layers().iter().all(|l| l.kind != LayerKind::Control));
        assert!(
            doc.layers()[1].props.visible,
            "one step brings the sketch back"
        );
        assert_eq!(&doc.picture_rgba()[..], &picture_before[..]);
    }

    #[test]
    fn results_go_under_the_control_layers_and_empty_layers_make_none() {
        let mut doc = Document::from_rgb(&RgbImage {
            width: 8,
            height: 8,
            pixels: vec![90; 8 * 8 * 3],
        });
        let empty = doc.add_paint_layer().unwrap();
        assert_eq!(
            doc.add_control_layer(empty, Preprocessor::Scribble, None),
            Err(LayerError::Empty)
        );
        doc.layer_mut(empty).unwrap().rgba[..4].copy_from_slice(&[0, 0, 0, 255]);
        let control = doc
            .add_control_layer(empty, Preprocessor::Scribble, None)
            .unwrap();
        let result = RgbImage {
            width: 8,
            height: 8,
            pixels: vec![200; 8 * 8 * 3],
        };
        doc.add_image_layer(&result, None).unwrap();
        let kinds: Vec<LayerKind> = doc.layers().iter().map(|l| l.kind).collect();
        assert_eq!(kinds.last(), Some(&LayerKind::Control), "{kinds:?}");
        assert_eq!(doc.layers().last().unwrap().id, control);
    }
}
