//! Ending one connection from outside its session: a listen key that expired or was revoked, an
//! API key revoked. Whoever holds a connection's [`Hangup`] asks for a close with the dialect's
//! words; the session sees it at its next wake-up (the request wakes it) and closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::dialect::Closing;
use crate::hub::Outbox;

/// A handle that closes one connection from outside.
#[derive(Default)]
pub struct Hangup {
    requested: AtomicBool,
    closing: Mutex<Option<Closing>>,
    outbox: OnceLock<Arc<Outbox>>,
}

impl Hangup {
    /// A handle for a connection not opened yet.
    pub fn new() -> Arc<Hangup> {
        Arc::new(Hangup::default())
    }

    /// Asks the connection to end with `closing` (the first request wins).
    pub fn request(&self, closing: Closing) {
        {
            let mut slot = self.closing.lock();
            if slot.is_some() {
                return;
            }
            *slot = Some(closing);
        }
        self.requested.store(true, Ordering::Release);
        if let Some(outbox) = self.outbox.get() {
            outbox.interrupt();
        }
    }

    /// True once a close was asked for.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Ties the handle to its connection's outbox, so a request wakes the session.
    pub(crate) fn attach(&self, outbox: &Arc<Outbox>) {
        let _ = self.outbox.set(Arc::clone(outbox));
        if self.is_requested() {
            outbox.interrupt();
        }
    }

    /// The close asked for, if any (the session takes it once).
    pub(crate) fn take(&self) -> Option<Closing> {
        if !self.is_requested() {
            return None;
        }
        self.closing.lock().take()
    }
}
