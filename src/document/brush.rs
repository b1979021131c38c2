//! Brushes: round dabs with a soft edge (placed along a smoothed path by `stroke_path`),
//! accumulated as per-stroke coverage (a stroke never builds up over itself).

/// What a stroke paints on: the mask, or the active layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tool {
    /// Adds to the mask (white = regenerate).
    MaskBrush,
    /// Removes from the mask.
    MaskEraser,
    /// Paints a colour on the active layer (sketch, then regenerate).
    ColorBrush([u8; 3]),
    /// Erases the active layer to transparency (what is below shows through).
    LayerEraser,
}

impl Tool {
    /// Whether the tool changes the active layer's pixels (else the mask).
    pub fn paints_layer(self) -> bool {
        matches!(self, Tool::ColorBrush(_) | Tool::LayerEraser)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrushSettings {
    /// Diameter in image pixels.
    pub size: f32,
    /// 1 = hard edge, 0 = soft all the way from the centre.
    pub hardness: f32,
}

impl Default for BrushSettings {
    fn default() -> Self {
        Self {
            size: 32.0,
            hardness: 0.7,
        }
    }
}

/// Coverage of one dab at distance `d` from its centre.
pub fn dab_alpha(d: f32, radius: f32, hardness: f32) -> f32 {
    if d >= radius {
        return 0.0;
    }
    let inner = radius * hardness.clamp(0.0, 1.0);
    if d <= inner {
        return 1.0;
    }
    let t = (d - inner) / (radius - inner).max(1e-3);
    let s = 1.0 - t;
    s * s * (3.0 - 2.0 * s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_edge() {
        assert_eq!(dab_alpha(0.0, 10.0, 0.5), 1.0);
        assert!(dab_alpha(7.5, 10.0, 0.5) > 0.0 && dab_alpha(7.5, 10.0, 0.5) < 1.0);
        assert_eq!(dab_alpha(10.0, 10.0, 0.5), 0.0);
    }
}
