//! The epoch ticker that bounds mapper CPU time: a thread that advances the engine's epoch every
//! [`EPOCH_TICK`] while at least one mapper call runs, and sleeps (parked, costing nothing) while
//! none does, so an idle node does not wake a thread a thousand times a second.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

use wasmtime::Engine;

/// How often the engine's epoch advances while calls run: the granularity of CPU deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

struct Shared {
    active: AtomicUsize,
    stop: AtomicBool,
}

/// Handle to the ticker thread; stops it when dropped.
pub struct EpochTicker {
    shared: Arc<Shared>,
    thread: Thread,
}

impl EpochTicker {
    /// Starts the ticker for `engine`.
    pub fn start(engine: Engine) -> Self {
        let shared = Arc::new(Shared {
            active: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let state = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("wsgate-epoch".into())
            .spawn(move || {
                while !state.stop.load(Ordering::Relaxed) {
                    if state.active.load(Ordering::Acquire) == 0 {
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker {
            shared,
            thread: handle.thread().clone(),
        }
    }

    /// Marks a call as running until the guard drops.
    pub fn call(&self) -> CallGuard<'_> {
        if self.shared.active.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        CallGuard { ticker: self }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.thread.unpark();
    }
}

/// A running mapper call, as far as the ticker is concerned.
pub struct CallGuard<'a> {
    ticker: &'a EpochTicker,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.ticker.shared.active.fetch_sub(1, Ordering::AcqRel);
    }
}
