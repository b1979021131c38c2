//! Preprocessors: what turns a user's picture into the condition a ControlNet was trained on,
//! in Rust — edges (Canny, as OpenCV computes them), a sketch's strokes as white scribbles on
//! black, and the inversions and thresholds hand-drawn line art needs.

use crate::image::RgbImage;

/// AUTOMATIC1111's Canny defaults.
pub const DEFAULT_CANNY: (u8, u8) = (100, 200);
/// AUTOMATIC1111's "threshold" default.
pub const DEFAULT_THRESHOLD: u8 = 127;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preprocessor {
    /// The picture as it is (AUTOMATIC1111's "none").
    #[default]
    None,
    /// Canny edges, white on black, with OpenCV's low and high hysteresis thresholds.
    Canny { low: u8, high: u8 },
    /// Dark strokes on a light ground (or light on dark) → white strokes on black: a painted
    /// sketch for scribble ControlNets.
    Scribble,
    /// 255 − value: black line art on white → white on black (AUTOMATIC1111's
    /// "invert (from white bg & black line)").
    Invert,
    /// Brighter than the threshold → white, else black.
    Threshold(u8),
    /// Depth Anything V2's depth map, near = white (AUTOMATIC1111's `depth_anything_v2`).
    Depth,
    /// The inpaint ControlNet's condition (AUTOMATIC1111's `inpaint_only`): the job's own image
    /// with the masked pixels at −1, made by the engine from the inpainting job.
    InpaintOnly,
}

impl Preprocessor {
    /// The module name written in PNG records (AUTOMATIC1111's where it has one).
    pub fn name(&self) -> &'static str {
        match self {
            Preprocessor::None => "none",
            Preprocessor::Canny { .. } => "canny",
            Preprocessor::Scribble => "scribble",
            Preprocessor::Invert => "invert",
            Preprocessor::Threshold(_) => "threshold",
            Preprocessor::Depth => "depth_anything_v2",
            Preprocessor::InpaintOnly => "inpaint_only",
        }
    }

    /// The CLI's spelling, with its parameters: `canny=LOW,HIGH`, `threshold=T`.
    pub fn spec(&self) -> String {
        match self {
            Preprocessor::Canny { low, high } => format!("canny={low},{high}"),
            Preprocessor::Threshold(t) => format!("threshold={t}"),
            other => other.name().to_string(),
        }
    }

    /// The thresholds AUTOMATIC1111 records as "Threshold A/B".
    pub fn thresholds(&self) -> Option<(u8, Option<u8>)> {
        match self {
            Preprocessor::Canny { low, high } => Some((*low, Some(*high))),
            Preprocessor::Threshold(t) => Some((*t, None)),
            _ => None,
        }
    }

    pub const NAMES: [&'static str; 7] = [
        "none",
        "canny",
        "scribble",
        "invert",
        "threshold",
        "depth",
        "inpaint",
    ];

    /// `none`, `canny`, `canny=LOW,HIGH`, `scribble`, `invert`, `threshold`, `threshold=T`;
    /// AUTOMATIC1111's longer names (`invert (from white bg & black line)`, `scribble_xdog`…)
    /// map to ours where they mean the same.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (name, args) = match s.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (s, None),
        };
        let byte = |v: &str| -> Result<u8, String> {
            v.trim()
                .parse::<u8>()
                .map_err(|_| format!("{v:?} is not a threshold 0–255"))
        };
        let lower = name.to_ascii_lowercase();
        let p = match (lower.as_str(), args) {
            ("none", None) => Preprocessor::None,
            ("canny", None) => Preprocessor::Canny {
                low: DEFAULT_CANNY.0,
                high: DEFAULT_CANNY.1,
            },
            ("canny", Some(a)) => {
                let (l, h) = a
                    .split_once(',')
                    .ok_or_else(|| format!("canny={a}: give canny=LOW,HIGH"))?;
                let (low, high) = (byte(l)?, byte(h)?);
                if low > high {
                    return Err(format!("canny={a}: the low threshold is above the high one"));
                }
                Preprocessor::Canny { low, high }
            }
            ("threshold", None) => Preprocessor::Threshold(DEFAULT_THRESHOLD),
            ("threshold", Some(a)) => Preprocessor::Threshold(byte(a)?),
            ("invert", None) => Preprocessor::Invert,
            ("scribble", None) => Preprocessor::Scribble,
            ("depth" | "depth_anything_v2" | "depth_anything", None) => Preprocessor::Depth,
            ("inpaint" | "inpaint_only", None) => Preprocessor::InpaintOnly,
            (n, None) if n.starts_with("invert") => Preprocessor::Invert,
            (n, None) if n.starts_with("scribble") => Preprocessor::Scribble,
            _ => {
                return Err(format!(
                    "unknown preprocessor {s:?} (known: {}; pose maps and other conditions are given as images with none)",
                    Self::NAMES.join(", ")
                ))
            }
        };
        Ok(p)
    }

    /// Whether it runs a network (which must be loaded first: [`super::depth::DepthEstimator`]).
    pub fn needs_model(&self) -> bool {
        matches!(self, Preprocessor::Depth)
    }

    /// The condition for `image`; `depth` is the loaded depth network, which `Depth` needs.
    pub fn run(
        &self,
        image: &RgbImage,
        depth: Option<&super::depth::DepthEstimator>,
    ) -> crate::error::Result<RgbImage> {
        match (self, depth) {
            (Preprocessor::Depth, Some(d)) => d.depth_map(image),
            (Preprocessor::Depth, None) => Err(crate::error::EngineError::InvalidParams(format!(
                "the depth preprocessor needs Depth Anything V2: run `pentimento models pull {}` (or give its folder)",
                super::depth::DEPTH_REPO
            ))),
            _ => Ok(self.apply(image)),
        }
    }

    /// The condition for `image`, for the preprocessors that need no network (`Depth` gives
    /// the picture back: use [`Self::run`]).
    pub fn apply(&self, image: &RgbImage) -> RgbImage {
        match *self {
            Preprocessor::None | Preprocessor::Depth | Preprocessor::InpaintOnly => image.clone(),
            Preprocessor::Canny { low, high } => canny(image, low, high),
            Preprocessor::Scribble => scribble(image),
            Preprocessor::Invert => map_pixels(image, |v| 255 - v),
            Preprocessor::Threshold(t) => {
                let lum = luminance(image);
                gray_to_rgb(image, lum.iter().map(|&l| if l > t { 255 } else { 0 }))
            }
        }
    }
}

fn map_pixels(image: &RgbImage, f: impl Fn(u8) -> u8) -> RgbImage {
    RgbImage {
        width: image.width,
        height: image.height,
        pixels: image.pixels.iter().map(|&v| f(v)).collect(),
    }
}

/// OpenCV's RGB → gray in fixed point: (4899 R + 9617 G + 1868 B + 8192) >> 14.
fn luminance(image: &RgbImage) -> Vec<u8> {
    image
        .pixels
        .chunks_exact(3)
        .map(|p| {
            let v = 4899 * p[0] as u32 + 9617 * p[1] as u32 + 1868 * p[2] as u32 + 8192;
            (v >> 14).min(255) as u8
        })
        .collect()
}

fn gray_to_rgb(image: &RgbImage, values: impl Iterator<Item = u8>) -> RgbImage {
    let mut pixels = Vec::with_capacity(image.pixels.len());
    for v in values {
        pixels.extend_from_slice(&[v, v, v]);
    }
    RgbImage {
        width: image.width,
        height: image.height,
        pixels,
    }
}

/// Strokes are the pixels far from the ground's brightness; the ground is whichever of light
/// and dark covers more of the picture (a sketch is mostly paper).
fn scribble(image: &RgbImage) -> RgbImage {
    let lum = luminance(image);
    let light = lum.iter().filter(|&&l| l >= 128).count();
    let light_ground = light * 2 >= lum.len();
    gray_to_rgb(
        image,
        lum.iter().map(|&l| {
            let stroke = if light_ground { l < 128 } else { l >= 128 };
            if stroke {
                255
            } else {
                0
            }
        }),
    )
}

/// OpenCV's `Canny(image, low, high)` with its defaults (3×3 Sobel, L1 gradient magnitude,
/// replicated borders): per pixel the channel with the strongest gradient, non-maximum
/// suppression along the gradient's direction, hysteresis between the thresholds.
fn canny(image: &RgbImage, low: u8, high: u8) -> RgbImage {
    let (w, h) = (image.width, image.height);
    if w == 0 || h == 0 {
        return image.clone();
    }
    let at = |x: isize, y: isize, c: usize| -> i32 {
        let x = x.clamp(0, w as isize - 1) as usize;
        let y = y.clamp(0, h as isize - 1) as usize;
        image.pixels[(y * w + x) * 3 + c] as i32
    };
    let mut dx = vec![0i32; w * h];
    let mut dy = vec![0i32; w * h];
    let mut mag = vec![0i32; w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let i = y as usize * w + x as usize;
            for c in 0..3 {
                let gx = (at(x + 1, y - 1, c) + 2 * at(x + 1, y, c) + at(x + 1, y + 1, c))
                    - (at(x - 1, y - 1, c) + 2 * at(x - 1, y, c) + at(x - 1, y + 1, c));
                let gy = (at(x - 1, y + 1, c) + 2 * at(x, y + 1, c) + at(x + 1, y + 1, c))
                    - (at(x - 1, y - 1, c) + 2 * at(x, y - 1, c) + at(x + 1, y - 1, c));
                let m = gx.abs() + gy.abs();
                if m > mag[i] {
                    mag[i] = m;
                    dx[i] = gx;
                    dy[i] = gy;
                }
            }
        }
    }
    let (low, high) = (low as i32, high as i32);
    let m = |x: isize, y: isize| -> i32 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0
        } else {
            mag[y as usize * w + x as usize]
        }
    };
    // 0: not an edge, 1: a weak candidate, 2: an edge.
    let mut state = vec![0u8; w * h];
    let mut stack = vec![];
    // tan(22.5°) and tan(67.5°) in OpenCV's 15-bit fixed point.
    const TG22: i64 = 13573;
    for y in 0..h as isize {
        for x in 0..w as isize {
            let i = y as usize * w + x as usize;
            let v = mag[i];
            if v <= low {
                continue;
            }
            let (ax, ay) = (dx[i].abs() as i64, dy[i].abs() as i64);
            let tg22x = ax * TG22;
            let yy = ay << 15;
            let local_max = if yy < tg22x {
                v > m(x - 1, y) && v >= m(x + 1, y)
            } else {
                let tg67x = tg22x + (ax << 16);
                if yy > tg67x {
                    v > m(x, y - 1) && v >= m(x, y + 1)
                } else {
                    let s = if (dx[i] ^ dy[i]) < 0 { -1 } else { 1 };
                    v > m(x - s, y - 1) && v > m(x + s, y + 1)
                }
            };
            if local_max {
                if v > high {
                    state[i] = 2;
                    stack.push(i);
                } else {
                    state[i] = 1;
                }
            }
        }
    }
    while let Some(i) = stack.pop() {
        let (x, y) = ((i % w) as isize, (i / w) as isize);
        for (ox, oy) in [
            (-1, -1),
            (0, -1),
            (1, -1),
            (-1, 0),
            (1, 0),
            (-1, 1),
            (0, 1),
            (1, 1),
        ] {
            let (nx, ny) = (x + ox, y + oy);
            if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                continue;
            }
            let j = ny as usize * w + nx as usize;
            if state[j] == 1 {
                state[j] = 2;
                stack.push(j);
            }
        }
    }
    gray_to_rgb(image, state.iter().map(|&s| if s == 2 { 255 } else { 0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 3]) -> RgbImage {
        let mut pixels = vec![];
        for y in 0..h {
            for x in 0..w {
                pixels.extend_from_slice(&f(x, y));
            }
        }
        RgbImage::new(w, h, pixels).unwrap()
    }

    fn white(img: &RgbImage, x: usize, y: usize) -> bool {
        img.pixels[(y * img.width + x) * 3] == 255
    }

    #[test]
    fn canny_finds_a_step_edge_as_one_line() {
        let img = image(16, 8, |x, _| if x < 8 { [0; 3] } else { [200; 3] });
        let edges = canny(&img, 100, 200);
        for y in 0..8 {
            let cols: Vec<usize> = (0..16).filter(|&x| white(&edges, x, y)).collect();
            // One column marks the step (OpenCV's asymmetric comparison picks the left one).
            assert_eq!(cols, vec![7], "row {y}");
        }
        // Flat pictures have no edges; a step under the low threshold neither.
        assert!(canny(&image(9, 9, |_, _| [90; 3]), 100, 200)
            .pixels
            .iter()
            .all(|&v| v == 0));
        let faint = image(16, 8, |x, _| if x < 8 { [0; 3] } else { [20; 3] });
        assert!(canny(&faint, 100, 200).pixels.iter().all(|&v| v == 0));
    }

    #[test]
    fn hysteresis_keeps_weak_edges_joined_to_strong_ones() {
        // A vertical step whose contrast fades along it: strong at the top, weak below.
        let img = image(16, 16, |x, y| {
            let v = if x < 8 {
                0
            } else {
                (200 - 14 * y as i32).max(0) as u8
            };
            [v; 3]
        });
        let edges = canny(&img, 60, 255);
        let marked = (0..16)
            .filter(|&y| white(&edges, 7, y) || white(&edges, 8, y))
            .count();
        let strong = (0..16)
            .filter(|&y: &i32| 4 * (200 - 14 * y).max(0) > 255)
            .count();
        assert!(marked > strong, "weak continuation dropped: {marked} rows");
    }

    #[test]
    fn scribble_turns_dark_strokes_on_paper_white_on_black() {
        let sketch = image(8, 8, |x, _| if x == 3 { [20, 30, 200] } else { [250; 3] });
        let s = scribble(&sketch);
        assert!(white(&s, 3, 4) && !white(&s, 0, 0));
        // Light strokes on a dark ground stay light.
        let chalk = image(8, 8, |x, _| if x == 3 { [250; 3] } else { [10; 3] });
        assert_eq!(scribble(&chalk).pixels, s.pixels);
    }

    #[test]
    fn names_parse_and_bad_ones_are_refused() {
        assert_eq!(
            Preprocessor::parse("canny=50,150"),
            Ok(Preprocessor::Canny { low: 50, high: 150 })
        );
        assert_eq!(
            Preprocessor::parse("threshold"),
            Ok(Preprocessor::Threshold(127))
        );
        assert_eq!(
            Preprocessor::parse("invert (from white bg & black line)"),
            Ok(Preprocessor::Invert)
        );
        for p in [
            Preprocessor::None,
            Preprocessor::Scribble,
            Preprocessor::Canny { low: 1, high: 2 },
        ] {
            assert_eq!(Preprocessor::parse(&p.spec()), Ok(p));
        }
        for bad in [
            "canny=300,1",
            "canny=200,100",
            "canny=5",
            "threshold=-1",
            "depth=x",
            "../x",
            "",
            "none=1",
        ] {
            assert!(Preprocessor::parse(bad).is_err(), "{bad}");
        }
    }
}
