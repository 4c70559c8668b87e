//! Idle connections without a task.
//!
//! A connection that lent its socket to the fan-out lanes and has nothing of its own to do
//! needs no task: the lanes write what it is sent. Its session then leaves its task and waits
//! here, as a box, with a waker of its own registered on everything that can need it: the
//! socket becoming readable, the outbox's news, and the session's timer. The first of them to
//! fire spawns a new task for the session, which takes its socket back and carries on. A task
//! is the largest thing a connection would otherwise keep (its cell holds the session's whole
//! state machine), and most connections of a market-data node are idle between bursts.
//!
//! Waking is race-free without holding a lock while the wakers are registered: a wake-up
//! that comes before the session is stored marks `woken`, and the parking task, seeing it,
//! carries on with the session itself; one that comes after takes the session and spawns it.
//! Whichever takes the session out of the mutex is the only one to run it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::session::Session;

/// A parked session and what it takes to run it again.
struct Parked {
    session: Mutex<Option<Box<Session>>>,
    /// Set by every wake-up (see the module's documentation).
    woken: AtomicBool,
    /// The runtime the session's task is spawned on (wake-ups come from the lanes' threads
    /// too).
    runtime: Handle,
    /// Keeps the node's connection tracker counting the session while it has no task, so a
    /// shutdown waits for it.
    _tracked: TaskTrackerToken,
}

impl Parked {
    /// The session, if it is still here (it is then no longer parked).
    fn take(&self) -> Option<Box<Session>> {
        let session = self.session.lock().take()?;
        session.metrics().connections_parked.dec();
        Some(session)
    }
}

impl Wake for Parked {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if let Some(session) = self.take() {
            let tracker = session.tracker();
            tracker.spawn_on(session.drive(), &self.runtime);
        }
    }
}

/// Parks `session` (which must be idle, its socket lent) until one of its wake sources fires.
/// Returns the session when one already has: the caller carries on with it in its own task.
pub(super) fn park(mut session: Box<Session>) -> Option<Box<Session>> {
    let parked = Arc::new(Parked {
        session: Mutex::new(None),
        woken: AtomicBool::new(false),
        runtime: Handle::current(),
        _tracked: session.tracker().token(),
    });
    let waker = Waker::from(Arc::clone(&parked));
    if session.poll_wake_sources(&mut Context::from_waker(&waker)) {
        return Some(session);
    }
    session.metrics().connections_parked.inc();
    *parked.session.lock() = Some(session);
    if parked.woken.load(Ordering::SeqCst) {
        // Woken while the wakers were registered: whoever takes the session runs it (None
        // here means the wake-up already spawned it).
        return parked.take();
    }
    None
}
