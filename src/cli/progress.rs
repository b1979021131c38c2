//! Step progress on stderr: a bar on a terminal, plain lines otherwise (logs, pipes).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub enum StepProgress {
    Bar(ProgressBar),
    Lines,
}

impl StepProgress {
    pub fn new(total: usize) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} steps {elapsed_precise} ({per_sec})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message("sampling");
            StepProgress::Bar(bar)
        } else {
            StepProgress::Lines
        }
    }

    pub fn step(&self, step: usize, total: usize) {
        match self {
            StepProgress::Bar(bar) => bar.set_position(step as u64),
            StepProgress::Lines => eprintln!("step {step}/{total}"),
        }
    }

    pub fn finish(&self) {
        if let StepProgress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// A model load's progress on stderr: a byte bar on a terminal, nothing otherwise (the
/// "loaded … in N s" line follows either way).
pub struct LoadBar(Option<ProgressBar>);

impl LoadBar {
    pub fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::new(0);
        if let Ok(style) =
            ProgressStyle::with_template("loading [{bar:30}] {bytes}/{total_bytes} {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Self(Some(bar))
    }

    /// What `StableDiffusion::load_reporting` calls.
    pub fn reporter(&self) -> impl FnMut(pentimento::engine::model::LoadProgress) + 'static {
        let bar = self.0.clone();
        move |p| {
            if let Some(bar) = &bar {
                bar.set_length(p.total_bytes.max(p.read_bytes));
                bar.set_position(p.read_bytes);
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Download progress on stderr: a byte bar per file on a terminal, a line per second otherwise.
pub struct DownloadProgress {
    bar: Option<ProgressBar>,
    file: String,
    last_line: Option<std::time::Instant>,
}

impl DownloadProgress {
    pub fn new() -> Self {
        Self {
            bar: None,
            file: String::new(),
            last_line: None,
        }
    }

    pub fn update(&mut self, file: &str, done: u64, total: u64, bytes_per_second: f64) {
        if file != self.file {
            self.finish();
            self.file = file.to_string();
            if std::io::stderr().is_terminal() {
                let bar = ProgressBar::new(total);
                if let Ok(style) = ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(file.to_string());
                self.bar = Some(bar);
            }
        }
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                let due = self
                    .last_line
                    .is_none_or(|t| t.elapsed().as_secs_f64() >= 1.0)
                    || done == total;
                if due {
                    eprintln!(
                        "{file}: {} of {} ({}/s)",
                        pentimento::engine::model::inspect::human_size(done),
                        pentimento::engine::model::inspect::human_size(total),
                        pentimento::engine::model::inspect::human_size(bytes_per_second as u64)
                    );
                    self.last_line = Some(std::time::Instant::now());
                }
            }
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.last_line = None;
    }
}
