//! What a user does with layers: add one (a paint layer, a kept result, an image from the
//! history), pick the one to paint on, hide it, fade it, move it, merge it down, delete it.
//! Each is one undoable step; picking a layer is not an edit.

use super::layers::{self, Layer, LayerId, LayerKind, LayerProps};
use super::undo::{Edit, LayerDelta, PackedLayer};
use super::Document;
use crate::engine::image::RgbImage;
use crate::png_info::ImageRecord;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayerError {
    #[error("a document holds at most {} layers", layers::MAX_LAYERS)]
    TooMany,
    #[error("another layer would take the document past {} MiB", layers::MAX_LAYER_BYTES >> 20)]
    TooLarge,
    #[error("the last layer cannot be deleted")]
    LastLayer,
    #[error("there is no layer below to merge into")]
    NothingBelow,
    #[error("no such layer")]
    NotFound,
    #[error("the picture is not the document's size")]
    WrongSize,
    #[error("the layer is empty: there is nothing to make a control layer from")]
    Empty,
}

/// Which way a layer moves in the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl Document {
    /// Bottom first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The layer colour strokes paint on.
    pub fn active_layer(&self) -> &Layer {
        let i = self
            .layer_index(self.active)
            .unwrap_or(self.layers.len() - 1);
        &self.layers[i]
    }

    pub(super) fn layer_index(&self, id: LayerId) -> Option<usize> {
        self.layers.iter().position(|l| l.id == id)
    }

    pub(super) fn layer_mut(&mut self, id: LayerId) -> Option<&mut Layer> {
        self.layers.iter_mut().find(|l| l.id == id)
    }

    /// A layer of this document's size with a fresh id.
    pub(super) fn new_layer(
        &mut self,
        kind: LayerKind,
        name: String,
        record: Option<ImageRecord>,
        rgba: Vec<u8>,
    ) -> Layer {
        let id = LayerId(self.next_id);
        self.next_id += 1;
        Layer {
            id,
            kind,
            props: LayerProps::named(name),
            record,
            rgba,
        }
    }

    /// Where a new picture layer (a result) goes: on top of the picture, under the control
    /// layers at the top of the stack, which stay over it where the painter put them.
    fn picture_top(&self) -> usize {
        self.layers
            .iter()
            .rposition(|l| l.kind != LayerKind::Control)
            .map_or(0, |i| i + 1)
    }

    /// Whether one more layer fits within the limits.
    pub(super) fn room_for_one_more(&self) -> Result<(), LayerError> {
        if self.layers.len() >= layers::MAX_LAYERS {
            return Err(LayerError::TooMany);
        }
        let one = self.width * self.height * 4;
        if (self.layers.len() + 1).saturating_mul(one) > layers::MAX_LAYER_BYTES {
            return Err(LayerError::TooLarge);
        }
        Ok(())
    }

    pub fn select_layer(&mut self, id: LayerId) -> Result<(), LayerError> {
        self.layer_index(id).ok_or(LayerError::NotFound)?;
        self.active = id;
        Ok(())
    }

    /// An empty layer above the active one, to sketch on; it becomes the active one.
    pub fn add_paint_layer(&mut self) -> Result<LayerId, LayerError> {
        self.room_for_one_more()?;
        let n = 1 + self
            .layers
            .iter()
            .filter(|l| l.kind == LayerKind::Paint)
            .count();
        let rgba = vec![0; self.width * self.height * 4];
        let layer = self.new_layer(LayerKind::Paint, format!("Paint {n}"), None, rgba);
        let above = self
            .layer_index(self.active)
            .map_or(self.layers.len(), |i| i + 1);
        Ok(self.insert_layer(above, layer))
    }

    /// `image` as a new top layer with the record of what made it (a kept result, a result from
    /// the history); an image of another size sits at the top left, cropped or padded.
    pub fn add_image_layer(
        &mut self,
        image: &RgbImage,
        record: Option<ImageRecord>,
    ) -> Result<LayerId, LayerError> {
        self.room_for_one_more()?;
        let name = layer_name(record.as_ref());
        let rgba = layers::fit_rgba(
            &super::rgb_to_rgba(image),
            (image.width, image.height),
            (self.width, self.height),
        );
        let layer = self.new_layer(LayerKind::Result, name, record, rgba);
        Ok(self.insert_layer(self.picture_top(), layer))
    }

    /// A result already laid out at the document's size (straight alpha: transparent where it
    /// changes nothing, e.g. outside an inpainting mask) as a new top layer.
    pub fn add_result_rgba(
        &mut self,
        rgba: Vec<u8>,
        record: Option<ImageRecord>,
    ) -> Result<LayerId, LayerError> {
        if rgba.len() != self.width * self.height * 4 {
            return Err(LayerError::WrongSize);
        }
        self.room_for_one_more()?;
        let name = layer_name(record.as_ref());
        let layer = self.new_layer(LayerKind::Result, name, record, rgba);
        Ok(self.insert_layer(self.picture_top(), layer))
    }

    pub(super) fn insert_layer(&mut self, index: usize, layer: Layer) -> LayerId {
        let id = layer.id;
        self.history.push(Edit::Insert {
            index,
            layer: PackedLayer::of(&layer),
        });
        self.layers.insert(index, layer);
        self.active = id;
        self.recomposite(None);
        id
    }

    pub fn delete_layer(&mut self, id: LayerId) -> Result<(), LayerError> {
        let index = self.layer_index(id).ok_or(LayerError::NotFound)?;
        if self.layers.len() == 1 {
            return Err(LayerError::LastLayer);
        }
        let packed = PackedLayer::of(&self.layers[index]);
        self.take_layer(index);
        self.history.push(Edit::Remove {
            index,
            layer: packed,
        });
        if self.active == id {
            self.active = self.layers[index.saturating_sub(1)].id;
        }
        Ok(())
    }

    /// Moves a layer one place up or down the stack (nothing at either end).
    pub fn move_layer(&mut self, id: LayerId, direction: Direction) -> Result<(), LayerError> {
        let from = self.layer_index(id).ok_or(LayerError::NotFound)?;
        let to = match direction {
            Direction::Up if from + 1 < self.layers.len() => from + 1,
            Direction::Down if from > 0 => from - 1,
            _ => return Ok(()),
        };
        let layer = self.layers.remove(from);
        self.layers.insert(to, layer);
        self.history.push(Edit::Move { from, to });
        self.recomposite(None);
        Ok(())
    }

    pub fn set_layer_visible(&mut self, id: LayerId, visible: bool) -> Result<(), LayerError> {
        self.change_props(id, |p| p.visible = visible)
    }

    /// Sets a layer's opacity; successive changes of the same layer's opacity (a slider being
    /// dragged) are one undo step.
    pub fn set_layer_opacity(&mut self, id: LayerId, opacity: f32) -> Result<(), LayerError> {
        let opacity = if opacity.is_finite() {
            opacity.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let layer = self.layer_mut(id).ok_or(LayerError::NotFound)?;
        let previous = layer.props.clone();
        layer.props.opacity = opacity;
        let after = layer.props.clone();
        if let Some(Edit::Props {
            layer: last,
            before,
            after: last_after,
        }) = self.history.last_mut()
        {
            let only_opacity = LayerProps {
                opacity: before.opacity,
                ..after.clone()
            } == *before;
            if *last == id && only_opacity && *last_after == previous {
                *last_after = after;
                self.recomposite(None);
                return Ok(());
            }
        }
        self.history.push(Edit::Props {
            layer: id,
            before: previous,
            after,
        });
        self.recomposite(None);
        Ok(())
    }

    pub fn rename_layer(&mut self, id: LayerId, name: &str) -> Result<(), LayerError> {
        let name: String = name.chars().filter(|c| !c.is_control()).take(120).collect();
        self.change_props(id, |p| p.name = name)
    }

    pub(super) fn change_props(
        &mut self,
        id: LayerId,
        change: impl FnOnce(&mut LayerProps),
    ) -> Result<(), LayerError> {
        let layer = self.layer_mut(id).ok_or(LayerError::NotFound)?;
        let before = layer.props.clone();
        change(&mut layer.props);
        let after = layer.props.clone();
        self.history.push(Edit::Props {
            layer: id,
            before,
            after,
        });
        self.recomposite(None);
        Ok(())
    }

    /// Paints a layer into the one below it at its opacity and removes it, as one undo step.
    /// The merged layer keeps the upper layer's record when it has one (its image is on top).
    pub fn merge_down(&mut self, id: LayerId) -> Result<(), LayerError> {
        let index = self.layer_index(id).ok_or(LayerError::NotFound)?;
        if index == 0 {
            return Err(LayerError::NothingBelow);
        }
        let (upper, lower) = (&self.layers[index], &self.layers[index - 1]);
        let mut bottom = lower.clone();
        bottom.props = LayerProps::named("");
        let top = Layer {
            props: LayerProps {
                visible: true,
                ..upper.props.clone()
            },
            ..upper.clone()
        };
        let all = self.whole();
        let mut merged = vec![0; self.width * self.height * 4];
        layers::composite(&[bottom, top], self.width, all, &mut merged);
        let size = (self.width, self.height);
        let lower_id = lower.id;
        let mut edits = vec![];
        if let Some(delta) = LayerDelta::between(&lower.rgba, &merged, size, 4, all) {
            edits.push(Edit::Pixels {
                layer: lower_id,
                delta,
            });
        }
        if upper.record.is_some() && upper.record != lower.record {
            edits.push(Edit::Record {
                layer: lower_id,
                records: Box::new((lower.record.clone(), upper.record.clone())),
            });
        }
        edits.push(Edit::Remove {
            index,
            layer: PackedLayer::of(upper),
        });
        let record = upper.record.clone().or_else(|| lower.record.clone());
        if let Some(l) = self.layer_mut(lower_id) {
            l.rgba = merged;
            l.record = record;
        }
        self.take_layer(index);
        self.active = lower_id;
        self.history.push(Edit::Group(edits));
        Ok(())
    }
}

/// What an image layer is called: by the seed that made it, when a record says.
pub(super) fn layer_name(record: Option<&ImageRecord>) -> String {
    match record {
        Some(r) => format!("Result · seed {}", r.params.seed),
        None => "Image".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::brush::{BrushSettings, Tool};

    fn solid(w: usize, h: usize, c: u8) -> RgbImage {
        RgbImage::new(w, h, vec![c; w * h * 3]).unwrap()
    }

    fn paint_dot(doc: &mut Document, at: (f32, f32), color: [u8; 3]) {
        doc.begin_stroke(
            Tool::ColorBrush(color),
            BrushSettings {
                size: 4.0,
                hardness: 1.0,
            },
            at,
            1.0,
        );
        doc.end_stroke();
    }

    #[test]
    fn paint_layers_keep_the_background_and_undo_as_steps() {
        let mut doc = Document::from_rgb(&solid(16, 16, 10));
        let background = doc.layers()[0].rgba().to_vec();
        let paint = doc.add_paint_layer().unwrap();
        paint_dot(&mut doc, (8.0, 8.0), [200, 0, 0]);
        let at = (8 * 16 + 8) * 4;
        assert_eq!(doc.rgba()[at], 200, "the composite shows the stroke");
        assert_eq!(
            doc.layers()[0].rgba(),
            &background[..],
            "the background is untouched"
        );
        doc.set_layer_opacity(paint, 0.9).unwrap();
        doc.set_layer_opacity(paint, 0.5).unwrap();
        assert_eq!(doc.rgba()[at], 105);
        doc.set_layer_visible(paint, false).unwrap();
        assert_eq!(doc.rgba()[at], 10);
        assert!(doc.undo());
        assert_eq!(doc.rgba()[at], 105);
        assert!(doc.undo(), "both opacity changes are one step");
        assert_eq!(doc.rgba()[at], 200);
        assert!(doc.undo());
        assert_eq!(doc.rgba()[at], 10, "the stroke is undone");
        assert!(doc.undo());
        assert_eq!(doc.layers().len(), 1);
        assert!(doc.redo() && doc.redo());
        assert_eq!(doc.layers().len(), 2);
        assert_eq!(doc.rgba()[at], 200);
    }

    #[test]
    fn move_merge_and_delete() {
        let mut doc = Document::from_rgb(&solid(8, 8, 10));
        let a = doc.add_image_layer(&solid(8, 8, 100), None).unwrap();
        let b = doc.add_paint_layer().unwrap();
        paint_dot(&mut doc, (4.0, 4.0), [250, 250, 250]);
        doc.set_layer_opacity(b, 0.5).unwrap();
        let before: Vec<u8> = doc.rgba().to_vec();
        doc.move_layer(b, Direction::Down).unwrap();
        assert_eq!(doc.layers()[1].id, b);
        assert_eq!(doc.rgba()[0], 100, "the image layer covers the moved one");
        assert!(doc.undo());
        assert_eq!(doc.rgba(), &before[..]);
        doc.merge_down(b).unwrap();
        assert_eq!(doc.layers().len(), 2);
        assert_eq!(doc.rgba(), &before[..], "merging keeps the picture");
        assert_eq!(doc.active_layer().id, a);
        assert!(doc.undo());
        assert_eq!(doc.layers().len(), 3);
        assert_eq!(doc.layers()[1].rgba()[0], 100);
        assert_eq!(doc.rgba(), &before[..]);
        doc.delete_layer(a).unwrap();
        doc.delete_layer(b).unwrap();
        assert_eq!(
            doc.delete_layer(doc.layers()[0].id),
            Err(LayerError::LastLayer)
        );
        assert_eq!(
            doc.merge_down(doc.layers()[0].id),
            Err(LayerError::NothingBelow)
        );
        assert_eq!(doc.rgba()[0], 10);
        assert!(doc.undo() && doc.undo());
        assert_eq!(doc.rgba(), &before[..]);
    }

    #[test]
    fn layers_stop_at_the_limits() {
        let mut doc = Document::blank(4, 4);
        for _ in 1..layers::MAX_LAYERS {
            doc.add_paint_layer().unwrap();
        }
        assert_eq!(doc.add_paint_layer(), Err(LayerError::TooMany));
        // A canvas whose layers would pass the byte limit refuses the next one.
        let side = 16384;
        let big = (layers::MAX_LAYER_BYTES / (side * side * 4)).max(1);
        let mut doc = Document::blank(1, 1);
        doc.width = side;
        doc.height = side;
        doc.layers = (0..big).map(|_| doc.layers[0].clone()).collect();
        assert_eq!(doc.add_paint_layer(), Err(LayerError::TooLarge));
        // Non-finite opacity is taken as opaque, never NaN in the composite.
        let mut doc = Document::from_rgb(&solid(2, 2, 50));
        let id = doc.layers()[0].id;
        doc.set_layer_opacity(id, f32::NAN).unwrap();
        assert_eq!(doc.rgba()[0], 50);
    }

    #[test]
    fn a_history_image_of_another_size_fits_the_canvas() {
        let mut doc = Document::from_rgb(&solid(8, 8, 10));
        doc.add_image_layer(&solid(4, 12, 90), None).unwrap();
        assert_eq!(doc.layers()[1].rgba().len(), 8 * 8 * 4);
        assert_eq!(doc.rgba()[0], 90);
        assert_eq!(doc.rgba()[6 * 4], 10, "padding shows what is below");
    }
}
