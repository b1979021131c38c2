//! Fast previews of latents while a job runs: a linear projection of the four latent channels
//! to RGB (the approximation AUTOMATIC1111 and ComfyUI use for SD 1.x/2.x), one pixel per
//! latent cell.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use candle_core::{DType, Tensor};
use crossbeam_channel::{bounded, Receiver, Sender};

use super::error::{EngineError, Result, TensorContext};
use super::image::RgbImage;
use super::model::taesd::Taesd;

/// The latents of one step of one job.
struct Request {
    job: u64,
    step: usize,
    latents: Tensor,
}

/// Decodes previews on a thread of their own, so a sampling step never waits for its preview:
/// the step hands over its latents and goes on. When decoding falls behind, a newer step's
/// latents replace the ones still waiting: only the newest picture matters, and the last step
/// of a job always gets its preview.
///
/// The decoder shares the machine with the sampler (on a CPU, the same cores), so previews are
/// also paced: after a decode that took `d`, steps are let through again only after
/// `d · (1 − SHARE) / SHARE`, which keeps previews to about `SHARE` of the time. On a GPU a
/// TAESD decode is a small fraction of a step and every step gets one.
pub struct PreviewThread {
    tx: Sender<Request>,
    /// The same queue, to take out a stale request.
    stale: Receiver<Request>,
    decoder: Arc<Mutex<Option<Taesd>>>,
    /// Microseconds after `epoch` before which new steps are not decoded.
    next_allowed: Arc<AtomicU64>,
    epoch: Instant,
    thread: Option<JoinHandle<()>>,
}

/// The most of the machine's time previews may take.
pub const SHARE: f64 = 0.05;

impl PreviewThread {
    /// `deliver(job, step, image)` receives each preview.
    pub fn spawn(deliver: impl Fn(u64, usize, RgbImage) + Send + 'static) -> Self {
        let (tx, rx) = bounded::<Request>(1);
        let decoder: Arc<Mutex<Option<Taesd>>> = Arc::new(Mutex::new(None));
        let shared = decoder.clone();
        let stale = rx.clone();
        let epoch = Instant::now();
        let next_allowed = Arc::new(AtomicU64::new(0));
        let pace = next_allowed.clone();
        let thread = std::thread::Builder::new()
            .name("pentimento-preview".into())
            .spawn(move || {
                for r in rx {
                    let started = Instant::now();
                    let taesd = shared.lock().ok();
                    let image = match taesd.as_ref().and_then(|t| t.as_ref()) {
                        Some(t) => taesd_preview(t, &r.latents),
                        None => latent_to_rgb(&r.latents),
                    };
                    drop(taesd);
                    let took = started.elapsed().as_secs_f64();
                    let wait = took * (1.0 - SHARE) / SHARE;
                    let until = epoch.elapsed().as_secs_f64() + wait;
                    pace.store((until * 1e6) as u64, Ordering::Relaxed);
                    if let Ok(image) = image {
                        deliver(r.job, r.step, image);
                    }
                }
            })
            .ok();
        Self {
            tx,
            stale,
            decoder,
            next_allowed,
            epoch,
            thread,
        }
    }

    /// Decode with TAESD from now on (`None`: the latent projection).
    pub fn set_decoder(&self, taesd: Option<Taesd>) {
        if let Ok(mut d) = self.decoder.lock() {
            *d = taesd;
        }
    }

    /// Queues the first image of `latents` (step `step` of `total`) for a preview, without
    /// waiting; skipped while previews are over their share of the time, except the last step.
    pub fn submit(&self, job: u64, step: usize, total: usize, latents: &Tensor) {
        let now = self.epoch.elapsed().as_micros() as u64;
        if step < total && now < self.next_allowed.load(Ordering::Relaxed) {
            return;
        }
        let first = latents.narrow(0, 0, 1).unwrap_or_else(|_| latents.clone());
        let mut request = Request {
            job,
            step,
            latents: first,
        };
        loop {
            match self.tx.try_send(request) {
                Ok(()) => return,
                Err(crossbeam_channel::TrySendError::Full(r)) => {
                    // Drop the older waiting request and try again with ours.
                    let _ = self.stale.try_recv();
                    request = r;
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

impl Drop for PreviewThread {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has finished its current preview.
        let (tx, _) = bounded(1);
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A full-size preview from TAESD, computed where TAESD lives.
fn taesd_preview(taesd: &Taesd, latents: &Tensor) -> Result<RgbImage> {
    let decoded = latents
        .to_device(&taesd.device())
        .and_then(|l| l.to_dtype(DType::F32))
        .and_then(|l| taesd.decode(&l))
        .map_err(|e| EngineError::Tensor {
            context: "TAESD preview".into(),
            source: e,
        })?;
    RgbImage::from_vae_output(&decoded)
}

/// RGB contribution of each SD latent channel.
const FACTORS: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];

/// `(1, 4, h, w)` latents → an `w × h` RGB image.
pub fn latent_to_rgb(latents: &Tensor) -> Result<RgbImage> {
    let (_, c, h, w) = latents.dims4().context("preview")?;
    let data: Vec<f32> = latents
        .narrow(0, 0, 1)
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .context("preview")?;
    let mut pixels = Vec::with_capacity(w * h * 3);
    for i in 0..w * h {
        for rgb in [0, 1, 2] {
            let v: f32 = (0..c.min(4))
                .map(|ch| data[ch * w * h + i] * FACTORS[ch][rgb])
                .sum();
            pixels.push(((v + 1.0) * 127.5).clamp(0.0, 255.0) as u8);
        }
    }
    RgbImage::new(w, h, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_each_cell() {
        let t = Tensor::from_vec(
            vec![1f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            (1, 4, 1, 2),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let img = latent_to_rgb(&t).unwrap();
        assert_eq!((img.width, img.height), (2, 1));
        assert_eq!(&img.pixels[0..3], &[172, 156, 168]);
        assert_eq!(&img.pixels[3..6], &[127, 127, 127]);
    }
}
