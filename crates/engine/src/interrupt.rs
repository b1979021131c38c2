//! Stopping long work from outside, within a fraction of a second: a job runs inside
//! [`interruptible`] with a check (is this job cancelled?), and the networks ask [`check`]
//! between their blocks, the attention kernel between row blocks, the tiled VAE between tiles.
//! An interrupted pass fails with [`INTERRUPTED`]; the job layer turns that into `Cancelled`.
//!
//! The check travels in a thread-local, not through every `forward` signature: the networks
//! stay plain candle-style structs, and work on other threads (rayon inside a kernel) takes a
//! copy with [`current`].

use std::cell::RefCell;
use std::sync::Arc;

/// The message of the candle error an interrupted pass returns.
pub const INTERRUPTED: &str = "interrupted";

/// Whether the work running now should stop.
#[derive(Clone)]
pub struct Interrupt(Arc<dyn Fn() -> bool + Send + Sync>);

impl Interrupt {
    pub fn new(requested: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(requested))
    }

    pub fn requested(&self) -> bool {
        (self.0)()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Interrupt>> = const { RefCell::new(None) };
}

/// Runs `work` on this thread with `interrupt` as the check [`check`] consults.
pub fn interruptible<T>(interrupt: Interrupt, work: impl FnOnce() -> T) -> T {
    struct Restore(Option<Interrupt>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    let previous = CURRENT.with(|c| c.borrow_mut().replace(interrupt));
    let _restore = Restore(previous);
    work()
}

/// The check of the work on this thread, to hand to helper threads.
pub fn current() -> Option<Interrupt> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Whether the work on this thread was asked to stop.
pub fn requested() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(Interrupt::requested))
}

/// Fails with [`INTERRUPTED`] when the work on this thread was asked to stop.
pub fn check() -> candle_core::Result<()> {
    if requested() {
        return Err(interrupted());
    }
    Ok(())
}

pub fn interrupted() -> candle_core::Error {
    candle_core::Error::Msg(INTERRUPTED.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn checks_see_the_innermost_interrupt_and_it_is_restored() {
        assert!(check().is_ok(), "nothing installed: never interrupted");
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        interruptible(Interrupt::new(move || f.load(Ordering::SeqCst)), || {
            assert!(check().is_ok());
            flag.store(true, Ordering::SeqCst);
            assert!(check().is_err());
            let copy = current().unwrap();
            assert!(std::thread::spawn(move || copy.requested()).join().unwrap());
            interruptible(Interrupt::new(|| false), || assert!(check().is_ok()));
            assert!(check().is_err(), "the outer check is back");
        });
        assert!(check().is_ok());
    }
}
