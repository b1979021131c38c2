//! The path a stroke follows: the pointer's positions joined by a centripetal Catmull-Rom
//! spline (round where the hand moved round, however few positions the system reported), with
//! dabs placed at even distances along it, their size following the pen's pressure.

/// A position the pointer reported, with its pressure (1 where the device has none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathPoint {
    pub x: f32,
    pub y: f32,
    pub pressure: f32,
}

/// Where to stamp the brush, and how large relative to the brush size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dab {
    pub x: f32,
    pub y: f32,
    pub scale: f32,
}

/// Dabs are this fraction of the brush's diameter apart: close enough that the edge of a
/// stroke is smooth, not scalloped.
pub const DAB_SPACING: f32 = 0.15;
/// The smallest dab a light touch of the pen makes, relative to the brush.
pub const MIN_PRESSURE_SCALE: f32 = 0.1;
/// Positions closer than this (image pixels) to the previous one add nothing to the path.
const MIN_STEP: f32 = 0.05;
/// Pixels of path per spline sample: the dabs walk a polyline this fine.
const SAMPLE_STEP: f32 = 0.5;

pub struct StrokePath {
    /// Distance between dabs, in image pixels.
    spacing: f32,
    /// The last (up to) four positions: the spline between the middle two is drawn once the
    /// fourth is known.
    window: Vec<PathPoint>,
    /// Path length walked since the last dab.
    since_dab: f32,
}

impl StrokePath {
    /// A path starting at `start` for a brush of `size` pixels; the first dab is `start`.
    pub fn new(start: PathPoint, size: f32) -> (Self, Dab) {
        let path = Self {
            spacing: (size * DAB_SPACING).max(0.5),
            window: vec![start],
            since_dab: 0.0,
        };
        (path, dab_at(start))
    }

    /// Adds a reported position; returns the dabs of the part of the path it settled.
    pub fn push(&mut self, p: PathPoint) -> Vec<Dab> {
        let last = *self.window.last().expect("a path has a start");
        if distance(last, p) < MIN_STEP {
            return vec![];
        }
        self.window.push(p);
        if self.window.len() > 4 {
            self.window.remove(0);
        }
        match self.window.len() {
            // The first segment: its start has no predecessor and stands in for one (a
            // mirrored stand-in bends the open ends further off a circle).
            3 => {
                let [a, b, c] = [self.window[0], self.window[1], self.window[2]];
                self.segment(a, a, b, c)
            }
            4 => {
                let [a, b, c, d] = [
                    self.window[0],
                    self.window[1],
                    self.window[2],
                    self.window[3],
                ];
                self.segment(a, b, c, d)
            }
            _ => vec![],
        }
    }

    /// A straight line to `p` (Shift+click), with no smoothing into what follows.
    pub fn line_to(&mut self, p: PathPoint) -> Vec<Dab> {
        let mut dabs = self.finish();
        let last = *self.window.last().expect("a path has a start");
        dabs.extend(self.segment(last, last, p, p));
        self.window = vec![p];
        dabs
    }

    /// The dabs of the last segment, up to the last position (the stroke ends there).
    pub fn finish(&mut self) -> Vec<Dab> {
        let n = self.window.len();
        let dabs = match n {
            2 => {
                let [a, b] = [self.window[0], self.window[1]];
                self.segment(a, a, b, b)
            }
            3 | 4 => {
                let [a, b, c] = [self.window[n - 3], self.window[n - 2], self.window[n - 1]];
                self.segment(a, b, c, c)
            }
            _ => vec![],
        };
        if let Some(&last) = self.window.last() {
            self.window = vec![last];
        }
        dabs
    }

    /// The spline from `p1` to `p2` (with neighbours `p0`, `p3`), sampled finely and walked to
    /// place a dab every `spacing` pixels; the segment's end always gets one, so a stroke ends
    /// exactly where the pointer did.
    fn segment(&mut self, p0: PathPoint, p1: PathPoint, p2: PathPoint, p3: PathPoint) -> Vec<Dab> {
        let chord = distance(p1, p2);
        let samples = ((chord / SAMPLE_STEP).ceil() as usize).clamp(1, 100_000);
        let mut dabs = vec![];
        let mut prev = p1;
        for i in 1..=samples {
            let t = i as f32 / samples as f32;
            let mut q = centripetal(p0, p1, p2, p3, t);
            q.pressure = p1.pressure + (p2.pressure - p1.pressure) * t;
            let mut step = distance(prev, q);
            let mut from = prev;
            // Dabs that fall inside this small step, at their exact distances.
            while self.since_dab + step >= self.spacing {
                let need = self.spacing - self.since_dab;
                let f = need / step;
                let at = lerp(from, q, f);
                dabs.push(dab_at(at));
                from = at;
                step -= need;
                self.since_dab = 0.0;
            }
            self.since_dab += step;
            prev = q;
        }
        if self.since_dab > 0.0 {
            dabs.push(dab_at(p2));
            self.since_dab = 0.0;
        }
        dabs
    }
}

fn dab_at(p: PathPoint) -> Dab {
    // A device reporting nonsense pressure paints at full size.
    let pressure = if p.pressure.is_finite() {
        p.pressure
    } else {
        1.0
    };
    Dab {
        x: p.x,
        y: p.y,
        scale: pressure.clamp(MIN_PRESSURE_SCALE, 1.0),
    }
}

fn distance(a: PathPoint, b: PathPoint) -> f32 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
}

fn lerp(a: PathPoint, b: PathPoint, t: f32) -> PathPoint {
    PathPoint {
        x: a.x + (b.x - a.x) * t,
        y: a.y + (b.y - a.y) * t,
        pressure: a.pressure + (b.pressure - a.pressure) * t,
    }
}

/// The centripetal Catmull-Rom point at `t` ∈ [0, 1] between `p1` and `p2` (Barry and
/// Goldman's pyramid, knots spaced by the square root of the distances): it never overshoots
/// into loops or cusps where positions bunch up, as the uniform spline does.
fn centripetal(p0: PathPoint, p1: PathPoint, p2: PathPoint, p3: PathPoint, t: f32) -> PathPoint {
    let knot = |a: PathPoint, b: PathPoint| distance(a, b).sqrt().max(1e-4);
    let t0 = 0.0;
    let t1 = t0 + knot(p0, p1);
    let t2 = t1 + knot(p1, p2);
    let t3 = t2 + knot(p2, p3);
    let u = t1 + (t2 - t1) * t;
    let mix = |a: PathPoint, b: PathPoint, ta: f32, tb: f32| {
        let span = tb - ta;
        if span.abs() < 1e-6 {
            return a;
        }
        lerp(a, b, (u - ta) / span)
    };
    let a1 = mix(p0, p1, t0, t1);
    let a2 = mix(p1, p2, t1, t2);
    let a3 = mix(p2, p3, t2, t3);
    let b1 = mix(a1, a2, t0, t2);
    let b2 = mix(a2, a3, t1, t3);
    mix(b1, b2, t1, t2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(x: f32, y: f32) -> PathPoint {
        PathPoint {
            x,
            y,
            pressure: 1.0,
        }
    }

    /// Every dab of a path through `points`.
    fn dabs(points: &[PathPoint], size: f32) -> Vec<Dab> {
        let (mut path, first) = StrokePath::new(points[0], size);
        let mut all = vec![first];
        for &p in &points[1..] {
            all.extend(path.push(p));
        }
        all.extend(path.finish());
        all
    }

    #[test]
    fn nine_positions_of_a_circle_give_a_round_path_with_even_dabs() {
        let (r, n) = (100.0f32, 9);
        let points: Vec<PathPoint> = (0..=n)
            .map(|i| {
                let a = i as f32 / n as f32 * std::f32::consts::TAU;
                pt(r * a.cos(), r * a.sin())
            })
            .collect();
        let all = dabs(&points, 20.0);
        // A 9-gon's edges come 6 px inside this circle. The spline between inner positions
        // stays within 1 px of it; the open ends, whose curvature is not known yet, within 3.5.
        let chord = 2.0 * r * (std::f32::consts::PI / n as f32).sin();
        for d in &all {
            let radius = (d.x * d.x + d.y * d.y).sqrt();
            let from_start = (d.x - r).hypot(d.y);
            // The circle closes where it began: both open segments touch (r, 0).
            let near_an_end = from_start < chord * 1.01;
            let tolerance = if near_an_end { 3.5 } else { 1.0 };
            assert!(
                (radius - r).abs() < tolerance,
                "a dab {} px off the circle at ({}, {})",
                radius - r,
                d.x,
                d.y
            );
        }
        let spacing = 20.0 * DAB_SPACING;
        for w in all.windows(2) {
            let gap = ((w[1].x - w[0].x).powi(2) + (w[1].y - w[0].y).powi(2)).sqrt();
            assert!(gap <= spacing + 0.01, "gap {gap}");
        }
        let last = all.last().unwrap();
        assert!(
            (last.x - r).abs() < 1e-3 && last.y.abs() < 1e-3,
            "ends where the pointer did"
        );
    }

    #[test]
    fn a_click_is_one_dab_and_a_two_point_drag_is_a_line() {
        assert_eq!(dabs(&[pt(5.0, 5.0)], 10.0).len(), 1);
        let line = dabs(&[pt(0.0, 0.0), pt(40.0, 0.0)], 10.0);
        assert!(line.iter().all(|d| d.y.abs() < 1e-4));
        assert_eq!(
            line.len(),
            1 + (40.0 / (10.0 * DAB_SPACING)).ceil() as usize
        );
        // Repeated positions and straight lines add no stray dabs.
        let still = dabs(&[pt(1.0, 1.0), pt(1.0, 1.0), pt(1.0, 1.0)], 10.0);
        assert_eq!(still.len(), 1);
        let (mut path, _) = StrokePath::new(pt(0.0, 0.0), 10.0);
        let straight = path.line_to(pt(0.0, 30.0));
        assert!(straight.iter().all(|d| d.x.abs() < 1e-4));
        assert_eq!(straight.last().map(|d| d.y), Some(30.0));
    }

    #[test]
    fn pressure_scales_the_dabs_within_bounds() {
        let p = |x, pressure| PathPoint {
            x,
            y: 0.0,
            pressure,
        };
        let all = dabs(&[p(0.0, 0.0), p(50.0, 1.0)], 10.0);
        assert_eq!(all[0].scale, MIN_PRESSURE_SCALE);
        assert!(all.windows(2).all(|w| w[1].scale >= w[0].scale));
        assert_eq!(all.last().unwrap().scale, 1.0);
        let wild = dabs(&[p(0.0, f32::NAN), p(10.0, 7.0)], 10.0);
        assert!(wild
            .iter()
            .all(|d| (MIN_PRESSURE_SCALE..=1.0).contains(&d.scale)));
    }
}
