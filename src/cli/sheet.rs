//! A grid image: the cells of a sweep side by side, with captions in a white margin (column
//! labels above, row labels to the left), as AUTOMATIC1111 draws its X/Y plots.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};

use pentimento::engine::image::RgbImage;

const BACKGROUND: u8 = 255;
const GAP: usize = 4;

/// What to lay out: `images` row by row, `columns` wide, all of one size.
pub struct Sheet<'a> {
    pub images: &'a [RgbImage],
    pub columns: usize,
    /// Above the first row, one per column.
    pub column_labels: Option<Vec<String>>,
    /// Left of each row.
    pub row_labels: Option<Vec<String>>,
    /// Above every cell, for one axis wrapped over several rows.
    pub cell_labels: Option<Vec<String>>,
}

impl Sheet<'_> {
    pub fn render(&self) -> Result<RgbImage, String> {
        let first = self
            .images
            .first()
            .ok_or("a grid needs at least one image")?;
        let (cw, ch) = (first.width, first.height);
        if self.images.iter().any(|i| (i.width, i.height) != (cw, ch)) {
            return Err("the images of a grid must share one size".into());
        }
        let columns = self.columns.max(1);
        let rows = self.images.len().div_ceil(columns);
        let text = Text::new((cw as f32 / 14.0).clamp(12.0, 40.0))?;
        let pad = (text.px * 0.5) as usize;

        // Column captions wrap to the cell width; row captions to a third of it (at least 96 px).
        let col_lines: Vec<Vec<String>> = self
            .column_labels
            .iter()
            .flatten()
            .map(|l| text.wrap(l, cw.saturating_sub(2 * pad)))
            .collect();
        let row_width = (cw / 3).max(96);
        let row_lines: Vec<Vec<String>> = self
            .row_labels
            .iter()
            .flatten()
            .map(|l| text.wrap(l, row_width))
            .collect();
        let top = match col_lines.iter().map(Vec::len).max() {
            Some(n) if n > 0 => n * text.line_height() + 2 * pad,
            _ => 0,
        };
        let cell_lines: Vec<Vec<String>> = self
            .cell_labels
            .iter()
            .flatten()
            .map(|l| text.wrap(l, cw.saturating_sub(2 * pad)))
            .collect();
        // Every row gets a caption band of the same height.
        let band = match cell_lines.iter().map(Vec::len).max() {
            Some(n) if n > 0 => n * text.line_height() + pad,
            _ => 0,
        };
        let row_step = band + ch + GAP;
        let left = match row_lines.iter().flatten().map(|l| text.width(l)).max() {
            Some(w) => w + 2 * pad,
            None => 0,
        };
        let width = left + columns * cw + (columns - 1) * GAP;
        let height = top + rows * row_step - GAP;
        let mut out = Canvas::new(width, height);

        for (i, image) in self.images.iter().enumerate() {
            let (r, c) = (i / columns, i % columns);
            out.blit(image, left + c * (cw + GAP), top + r * row_step + band);
        }
        for (i, lines) in cell_lines.iter().enumerate() {
            let (r, c) = (i / columns, i % columns);
            let mut y = top + r * row_step + pad / 2;
            for line in lines {
                let x = left + c * (cw + GAP) + cw.saturating_sub(text.width(line)) / 2;
                text.draw(&mut out, line, x, y);
                y += text.line_height();
            }
        }
        for (c, lines) in col_lines.iter().enumerate() {
            let x0 = left + c * (cw + GAP);
            let block = lines.len() * text.line_height();
            let mut y = (top - block) / 2;
            for line in lines {
                let x = x0 + cw.saturating_sub(text.width(line)) / 2;
                text.draw(&mut out, line, x, y);
                y += text.line_height();
            }
        }
        for (r, lines) in row_lines.iter().enumerate() {
            let block = lines.len() * text.line_height();
            let mut y = top + r * row_step + band + ch.saturating_sub(block) / 2;
            for line in lines {
                let x = left.saturating_sub(text.width(line) + pad);
                text.draw(&mut out, line, x, y);
                y += text.line_height();
            }
        }
        RgbImage::new(width, height, out.pixels).map_err(|e| e.to_string())
    }
}

struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: vec![BACKGROUND; width * height * 3],
        }
    }

    fn blit(&mut self, image: &RgbImage, x: usize, y: usize) {
        for row in 0..image.height {
            let src = &image.pixels[row * image.width * 3..(row + 1) * image.width * 3];
            let at = ((y + row) * self.width + x) * 3;
            self.pixels[at..at + src.len()].copy_from_slice(src);
        }
    }

    /// Darkens a pixel toward black by `coverage`.
    fn ink(&mut self, x: i64, y: i64, coverage: f32) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let at = (y as usize * self.width + x as usize) * 3;
        for v in &mut self.pixels[at..at + 3] {
            *v = (*v as f32 * (1.0 - coverage.clamp(0.0, 1.0))).round() as u8;
        }
    }
}

/// Captions in the app's own UI font (Ubuntu Light, shipped with egui).
struct Text {
    font: FontRef<'static>,
    px: f32,
}

impl Text {
    fn new(px: f32) -> Result<Self, String> {
        let font = FontRef::try_from_slice(epaint_default_fonts::UBUNTU_LIGHT)
            .map_err(|e| format!("caption font: {e}"))?;
        Ok(Self { font, px })
    }

    fn scaled(&self) -> ab_glyph::PxScaleFont<&FontRef<'static>> {
        self.font.as_scaled(PxScale::from(self.px))
    }

    fn line_height(&self) -> usize {
        let f = self.scaled();
        (f.height() + f.line_gap()).ceil() as usize
    }

    fn width(&self, line: &str) -> usize {
        let f = self.scaled();
        let mut w = 0.0;
        let mut prev = None;
        for c in line.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                w += f.kern(p, id);
            }
            w += f.h_advance(id);
            prev = Some(id);
        }
        w.ceil() as usize
    }

    /// Greedy word wrap; a word longer than the width gets a line of its own.
    fn wrap(&self, text: &str, width: usize) -> Vec<String> {
        let mut lines: Vec<String> = vec![];
        let mut line = String::new();
        for word in text.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if self.width(&candidate) <= width || line.is_empty() {
                line = candidate;
            } else {
                lines.push(std::mem::replace(&mut line, word.to_string()));
            }
        }
        if !line.is_empty() {
            lines.push(line);
        }
        lines
    }

    /// Draws `line` with its top-left corner at (`x`, `y`).
    fn draw(&self, canvas: &mut Canvas, line: &str, x: usize, y: usize) {
        let f = self.scaled();
        let baseline = y as f32 + f.ascent();
        let mut pen = x as f32;
        let mut prev = None;
        for c in line.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                pen += f.kern(p, id);
            }
            let glyph = id.with_scale_and_position(self.px, ab_glyph::point(pen, baseline));
            pen += f.h_advance(id);
            prev = Some(id);
            if let Some(outline) = self.font.outline_glyph(glyph) {
                let b = outline.px_bounds();
                outline.draw(|gx, gy, coverage| {
                    canvas.ink(
                        b.min.x as i64 + gx as i64,
                        b.min.y as i64 + gy as i64,
                        coverage,
                    );
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: u8) -> RgbImage {
        RgbImage::new(64, 48, vec![v; 64 * 48 * 3]).unwrap()
    }

    #[test]
    fn lays_out_cells_with_margins_for_labels() {
        let images = [flat(0), flat(50), flat(100), flat(150)];
        let sheet = Sheet {
            images: &images,
            columns: 2,
            column_labels: Some(vec!["CFG Scale: 3".into(), "CFG Scale: 7".into()]),
            row_labels: Some(vec!["Sampler: Euler a".into(), "Sampler: DDIM".into()]),
            cell_labels: None,
        };
        let out = sheet.render().unwrap();
        assert!(out.width > 2 * 64 + GAP && out.height > 2 * 48 + GAP);
        let left = out.width - (2 * 64 + GAP);
        let top = out.height - (2 * 48 + GAP);
        let px = |x: usize, y: usize| out.pixels[(y * out.width + x) * 3];
        // Each cell where the layout puts it.
        assert_eq!(px(left + 10, top + 10), 0);
        assert_eq!(px(left + 64 + GAP + 10, top + 10), 50);
        assert_eq!(px(left + 10, top + 48 + GAP + 10), 100);
        // Captions leave ink in the margins, and only there is the background white.
        let inked = |x0: usize, x1: usize, y0: usize, y1: usize| {
            (y0..y1).any(|y| (x0..x1).any(|x| px(x, y) < 128))
        };
        assert!(inked(left, out.width, 0, top), "column labels drawn");
        assert!(inked(0, left, top, out.height), "row labels drawn");
        assert_eq!(px(0, 0), BACKGROUND);
    }

    #[test]
    fn without_labels_the_grid_is_just_the_cells() {
        let images = [flat(10), flat(20), flat(30)];
        let out = Sheet {
            images: &images,
            columns: 2,
            column_labels: None,
            row_labels: None,
            cell_labels: None,
        }
        .render()
        .unwrap();
        assert_eq!((out.width, out.height), (2 * 64 + GAP, 2 * 48 + GAP));
        // The missing fourth cell stays background.
        assert_eq!(
            out.pixels[((48 + GAP + 5) * out.width + 64 + GAP + 5) * 3],
            BACKGROUND
        );
    }

    #[test]
    fn cell_captions_get_a_band_above_every_row() {
        let images = [flat(0), flat(0), flat(0)];
        let out = Sheet {
            images: &images,
            columns: 2,
            column_labels: None,
            row_labels: None,
            cell_labels: Some(vec!["Seed: 1".into(), "Seed: 2".into(), "Seed: 3".into()]),
        }
        .render()
        .unwrap();
        assert_eq!(out.width, 2 * 64 + GAP);
        let band = (out.height + GAP) / 2 - 48 - GAP;
        assert!(band > 0);
        let px = |x: usize, y: usize| out.pixels[(y * out.width + x) * 3];
        let row2 = band + 48 + GAP;
        assert!(
            (row2..row2 + band).any(|y| (0..64).any(|x| px(x, y) < 128)),
            "second row captioned"
        );
        assert_eq!(
            px(5, row2 + band + 5),
            0,
            "second row's cell below its band"
        );
    }

    #[test]
    fn mixed_sizes_are_refused() {
        let images = [flat(0), RgbImage::new(8, 8, vec![0; 192]).unwrap()];
        assert!(Sheet {
            images: &images,
            columns: 2,
            column_labels: None,
            row_labels: None,
            cell_labels: None,
        }
        .render()
        .is_err());
    }
}
