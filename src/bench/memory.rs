//! Resident memory over a bench run, sampled from /proc/self/status on a thread of its own:
//! the peak of each phase (load, each figure) split into file pages (a mapped model file) and
//! anonymous memory (weights copied out of it, activations), as issue "half the memory" asks to
//! measure before changing anything. Linux only; elsewhere nothing is sampled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// How often the sampler reads /proc/self/status.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// One /proc/self/status reading, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Resident {
    pub total: u64,
    /// Anonymous pages: copies of weights, activations, the allocator's heap.
    pub anon: u64,
    /// File pages: a memory-mapped model file's touched pages.
    pub file: u64,
}

fn field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// This process's resident memory now (`None` where /proc is not there).
pub fn resident() -> Option<Resident> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Some(Resident {
        total: field(&status, "VmRSS:")?,
        anon: field(&status, "RssAnon:").unwrap_or(0),
        file: field(&status, "RssFile:").unwrap_or(0),
    })
}

/// The most resident memory seen during a phase (the largest total, with its split).
#[derive(Debug, Clone, Serialize)]
pub struct PhasePeak {
    pub phase: String,
    pub peak: Resident,
}

struct Shared {
    phase: Mutex<String>,
    peaks: Mutex<Vec<PhasePeak>>,
    stop: AtomicBool,
}

/// Samples resident memory until dropped or `finish`ed.
pub struct MemorySampler {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MemorySampler {
    pub fn start(first_phase: &str) -> Self {
        let shared = Arc::new(Shared {
            phase: Mutex::new(first_phase.to_string()),
            peaks: Mutex::new(vec![]),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("bench-memory".into())
            .spawn(move || {
                while !s.stop.load(Ordering::Relaxed) {
                    s.sample();
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
            .ok();
        Self { shared, thread }
    }

    /// What runs from now on.
    pub fn phase(&self, name: &str) {
        // The last moments of the phase before count for it.
        self.shared.sample();
        if let Ok(mut p) = self.shared.phase.lock() {
            *p = name.to_string();
        }
        self.shared.sample();
    }

    /// Stops sampling; each phase's peak, in the order the phases ran.
    pub fn finish(mut self) -> Vec<PhasePeak> {
        self.shared.sample();
        self.stop();
        self.shared
            .peaks
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MemorySampler {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn sample(&self) {
        let Some(now) = resident() else {
            return;
        };
        let Ok(phase) = self.phase.lock().map(|p| p.clone()) else {
            return;
        };
        let Ok(mut peaks) = self.peaks.lock() else {
            return;
        };
        match peaks.iter_mut().find(|p| p.phase == phase) {
            Some(p) if now.total > p.peak.total => p.peak = now,
            Some(_) => {}
            None => peaks.push(PhasePeak { phase, peak: now }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_that_holds_more_memory_shows_it() {
        if resident().is_none() {
            return; // not Linux
        }
        let sampler = MemorySampler::start("small");
        std::thread::sleep(Duration::from_millis(50));
        sampler.phase("large");
        let block = vec![1u8; 256 << 20];
        std::thread::sleep(Duration::from_millis(100));
        let peaks = sampler.finish();
        drop(block);
        let of = |name: &str| peaks.iter().find(|p| p.phase == name).unwrap().peak;
        assert!(
            of("large").anon >= of("small").anon + (200 << 20),
            "{peaks:?}"
        );
        assert!(of("large").total >= of("large").anon);
    }
}
