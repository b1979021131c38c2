//! The job the app is running: its worker ids, its progress with rate and time left, its
//! preview, and whether a cancel was asked for.

use std::sync::Arc;
use std::time::Instant;

use crate::engine::worker::JobId;
use crate::engine::RgbImage;

pub(crate) struct RunningJob {
    pub ids: Vec<JobId>,
    /// Model calls done and planned for the current image; 0 of 0 until the first report (an
    /// img2img job runs fewer calls than its steps, so the steps asked for are not the total).
    pub step: usize,
    pub total: usize,
    pub preview: Option<(u64, Arc<RgbImage>)>,
    pub cancelling: bool,
    /// When the current image's first model call was reported, and at which step.
    first_report: Option<(Instant, usize)>,
    /// When the current image was started (a first step at a large size takes a while).
    started: Instant,
}

/// What the panel shows of a running job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobProgress {
    pub step: usize,
    pub total: usize,
    pub steps_per_second: Option<f64>,
    pub seconds_left: Option<f64>,
    pub cancelling: bool,
    /// Seconds since the current image started.
    pub elapsed: f64,
}

impl RunningJob {
    pub fn new(ids: Vec<JobId>) -> Self {
        Self {
            ids,
            step: 0,
            total: 0,
            preview: None,
            cancelling: false,
            first_report: None,
            started: Instant::now(),
        }
    }

    pub fn report(&mut self, step: usize, total: usize) {
        if step < self.step || self.first_report.is_none() {
            self.first_report = Some((Instant::now(), step));
        }
        self.step = step;
        self.total = total;
    }

    /// The next image of a batch run starts from zero.
    pub fn next_image(&mut self) {
        self.step = 0;
        self.total = 0;
        self.preview = None;
        self.first_report = None;
        self.started = Instant::now();
    }

    pub fn progress(&self) -> JobProgress {
        let rate = self.first_report.and_then(|(at, from)| {
            let secs = at.elapsed().as_secs_f64();
            (self.step > from && secs > 0.0).then(|| (self.step - from) as f64 / secs)
        });
        JobProgress {
            step: self.step,
            total: self.total,
            steps_per_second: rate,
            seconds_left: rate.map(|r| self.total.saturating_sub(self.step) as f64 / r),
            cancelling: self.cancelling,
            elapsed: self.started.elapsed().as_secs_f64(),
        }
    }
}

impl JobProgress {
    /// `step 3/20 · 1.25 it/s · 14 s left`, or what is happening before the first step.
    pub fn text(&self) -> String {
        if self.cancelling {
            return "cancelling…".into();
        }
        if self.total == 0 {
            // The prompt is encoded and the first step runs before the first report.
            return if self.elapsed < 2.0 {
                "starting…".into()
            } else {
                format!("first step… {}", short_duration(self.elapsed))
            };
        }
        let mut text = format!("step {}/{}", self.step, self.total);
        if let Some(r) = self.steps_per_second {
            if r >= 1.0 {
                text.push_str(&format!(" · {r:.2} it/s"));
            } else {
                text.push_str(&format!(" · {:.1} s/it", 1.0 / r));
            }
        }
        if let Some(left) = self.seconds_left {
            text.push_str(&format!(" · {} left", short_duration(left)));
        }
        text
    }
}

fn short_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s < 60 {
        format!("{s} s")
    } else {
        format!("{}:{:02} min", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_a_person_expects() {
        let mut job = RunningJob::new(vec![1]);
        assert_eq!(job.progress().text(), "starting…");
        job.report(1, 30);
        assert_eq!(job.progress().text(), "step 1/30");
        std::thread::sleep(std::time::Duration::from_millis(20));
        job.report(3, 30);
        let p = job.progress();
        assert!(p.steps_per_second.unwrap() > 0.0);
        assert!(
            p.text().starts_with("step 3/30 · ") && p.text().ends_with(" left"),
            "{}",
            p.text()
        );
        job.cancelling = true;
        assert_eq!(job.progress().text(), "cancelling…");
        assert_eq!(short_duration(75.0), "1:15 min");
    }
}
