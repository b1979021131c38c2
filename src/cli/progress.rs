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
