//! The image as a stack of layers: the background (an opened image or a blank canvas), accepted
//! results (each with the record of what made it), and paint layers for sketches. Each layer
//! is a full-size RGBA buffer (straight alpha) with a visibility and an opacity; what the
//! canvas shows and the engine reads is their composite.

use serde::{Deserialize, Serialize};

use super::region::Rect;
use crate::png_info::ImageRecord;

/// Most layers a document holds: each is a full-size buffer.
pub const MAX_LAYERS: usize = 64;
/// Most bytes all layers of a document hold together (a 4000×3000 canvas fits 22 layers). The
/// composite, the GPU's copy and the undo history come on top: a full document peaks at about
/// twice this.
pub const MAX_LAYER_BYTES: usize = 1 << 30;

/// Identifies a layer for the life of a document, whatever its place in the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayerId(pub u64);

/// What a layer holds, which decides its default name and what a user expects of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// The image the document started from (opened, or a blank canvas).
    Background,
    /// A generated image the user kept.
    Result,
    /// Painted by hand.
    Paint,
    /// A ControlNet's condition (a preprocessed sketch, edges…): shown to the painter, never
    /// part of the picture the engine or a saved image sees.
    Control,
}

/// What a user changes about a layer other than its pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerProps {
    pub name: String,
    pub visible: bool,
    /// 0 (invisible) to 1 (opaque).
    pub opacity: f32,
    /// A control layer's ControlNet settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<super::control_layer::ControlSettings>,
}

impl LayerProps {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            visible: true,
            opacity: 1.0,
            control: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub id: LayerId,
    pub kind: LayerKind,
    pub props: LayerProps,
    /// What made the layer's image (a kept result, an opened PNG's parameters).
    pub record: Option<ImageRecord>,
    /// RGBA, row-major, straight alpha; alpha 0 where the layer is empty.
    pub(super) rgba: Vec<u8>,
}

impl Layer {
    pub fn rgba(&self) -> &[u8] {
        &self.rgba
    }

    /// The layer's weight in the composite: 0 when hidden.
    fn weight(&self) -> f32 {
        if self.props.visible {
            self.props.opacity.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// Composites `layers` (bottom first) within `area` of a `width`-wide canvas into `out` (the
/// full-size RGBA composite), straight alpha, each layer "over" what is below it.
pub fn composite(layers: &[Layer], width: usize, area: Rect, out: &mut [u8]) {
    composite_where(layers, width, area, out, |_| true)
}

/// `composite` of the layers `include` accepts.
pub fn composite_where(
    layers: &[Layer],
    width: usize,
    area: Rect,
    out: &mut [u8],
    include: impl Fn(&Layer) -> bool,
) {
    let visible = weighted(layers, include);
    for y in area.y..area.y + area.height {
        let row = y * width;
        for x in area.x..area.x + area.width {
            let i = (row + x) * 4;
            let Some(px) = out.get_mut(i..i + 4) else {
                return;
            };
            // The common case, one opaque layer on top: its pixel is the composite.
            if let Some(&(top, w)) = visible.last() {
                if w >= 1.0 && top.get(i + 3) == Some(&255) {
                    px.copy_from_slice(&top[i..i + 4]);
                    continue;
                }
            }
            let (mut r, mut g, mut b, mut a) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
            for &(data, w) in &visible {
                let Some(src) = data.get(i..i + 4) else {
                    continue;
                };
                let sa = src[3] as f32 / 255.0 * w;
                if sa <= 0.0 {
                    continue;
                }
                let keep = a * (1.0 - sa);
                let na = sa + keep;
                r = (src[0] as f32 * sa + r * keep) / na;
                g = (src[1] as f32 * sa + g * keep) / na;
                b = (src[2] as f32 * sa + b * keep) / na;
                a = na;
            }
            px.copy_from_slice(&[
                r.round() as u8,
                g.round() as u8,
                b.round() as u8,
                (a * 255.0).round() as u8,
            ]);
        }
    }
}

/// The pixels and weights of the layers `include` accepts that show at all, bottom first.
fn weighted(layers: &[Layer], include: impl Fn(&Layer) -> bool) -> Vec<(&[u8], f32)> {
    layers
        .iter()
        .filter(|l| include(l))
        .map(|l| (l.rgba.as_slice(), l.weight()))
        .filter(|(_, w)| *w > 0.0)
        .collect()
}

/// Whether the composite of the layers `include` accepts has a pixel that is not fully
/// transparent: `composite_where`'s alpha alone, stopping at the first such pixel, with no
/// buffer made.
pub fn any_opaque_where(layers: &[Layer], pixels: usize, include: impl Fn(&Layer) -> bool) -> bool {
    let visible = weighted(layers, include);
    (0..pixels).any(|i| {
        let mut a = 0.0f32;
        for &(data, w) in &visible {
            let sa = data.get(i * 4 + 3).map_or(0.0, |&v| v as f32 / 255.0 * w);
            if sa > 0.0 {
                a = sa + a * (1.0 - sa);
            }
        }
        (a * 255.0).round() as u8 > 0
    })
}

/// `src` (RGBA of `sw`×`sh`) placed at the top left of a `width`×`height` layer: cropped where
/// it is larger, transparent where it is smaller.
pub fn fit_rgba(src: &[u8], (sw, sh): (usize, usize), (width, height): (usize, usize)) -> Vec<u8> {
    if (sw, sh) == (width, height) && src.len() == width * height * 4 {
        return src.to_vec();
    }
    let mut out = vec![0; width * height * 4];
    let (w, h) = (sw.min(width), sh.min(height));
    for y in 0..h {
        let (s, d) = (y * sw * 4, y * width * 4);
        if let (Some(from), Some(to)) = (src.get(s..s + w * 4), out.get_mut(d..d + w * 4)) {
            to.copy_from_slice(from);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(id: u64, rgba: [u8; 4], opacity: f32) -> Layer {
        Layer {
            id: LayerId(id),
            kind: LayerKind::Paint,
            props: LayerProps {
                opacity,
                ..LayerProps::named("l")
            },
            record: None,
            rgba: rgba.repeat(4),
        }
    }

    #[test]
    fn over_with_opacity_and_visibility() {
        let mut out = vec![0; 16];
        let all = super::super::region::whole(2, 2);
        let stack = [
            layer(1, [0, 0, 255, 255], 1.0),
            layer(2, [255, 0, 0, 255], 0.5),
        ];
        composite(&stack, 2, all, &mut out);
        assert_eq!(&out[..4], &[128, 0, 128, 255]);
        let mut hidden = stack.clone();
        hidden[1].props.visible = false;
        composite(&hidden, 2, all, &mut out);
        assert_eq!(&out[..4], &[0, 0, 255, 255]);
        // Half-transparent over nothing keeps its colour and its alpha.
        composite(&stack[1..], 2, all, &mut out);
        assert_eq!(&out[..4], &[255, 0, 0, 128]);
        composite(&[], 2, all, &mut out);
        assert_eq!(&out[..4], &[0, 0, 0, 0]);
    }

    #[test]
    fn any_opaque_agrees_with_the_composites_alpha() {
        let all = super::super::region::whole(2, 2);
        for (alpha, opacity) in [
            (0, 1.0),
            (1, 0.1),
            (1, 1.0),
            (2, 0.3),
            (255, 0.001),
            (255, 1.0),
        ] {
            let stack = [layer(1, [10, 20, 30, alpha], opacity)];
            let mut out = vec![0; 16];
            composite(&stack, 2, all, &mut out);
            assert_eq!(
                any_opaque_where(&stack, 4, |_| true),
                out[3] > 0,
                "alpha {alpha} at {opacity}"
            );
        }
        assert!(!any_opaque_where(&[layer(1, [9; 4], 1.0)], 4, |_| false));
    }

    #[test]
    fn fitting_crops_and_pads() {
        let src: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8 + 1).collect();
        let out = fit_rgba(&src, (2, 3), (3, 2));
        assert_eq!(out.len(), 3 * 2 * 4);
        assert_eq!(&out[..8], &src[..8]);
        assert_eq!(&out[8..12], &[0, 0, 0, 0]);
        assert_eq!(&out[12..20], &src[8..16]);
    }
}
