//! Routing of upstream events to the routes that read their channel.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::IntCounter;
use tokio::sync::mpsc;

use super::UpstreamEvent;
use crate::subject;

/// Batches of events queued for one route before its source waits.
pub const ROUTE_QUEUE: usize = 1024;

/// The receiving end of a route's event queue.
pub type RouteInbox = mpsc::Receiver<RouteBatch>;

/// One route's share of a dispatched batch. A route drops it once the outputs of its events are
/// on the bus; when every route has dropped its share, the batch is *handed off* and its
/// source may acknowledge or commit it (see [`Dispatcher::dispatch_blocking_then`]).
pub struct RouteBatch {
    events: Vec<UpstreamEvent>,
    _handoff: Option<Arc<Handoff>>,
}

impl std::ops::Deref for RouteBatch {
    type Target = [UpstreamEvent];

    fn deref(&self) -> &[UpstreamEvent] {
        &self.events
    }
}

/// Runs its callback when dropped, i.e. when the last route share of a batch is gone.
struct Handoff(parking_lot::Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some(done) = self.0.get_mut().take() {
            done();
        }
    }
}

/// What a dispatcher does when a route's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
    /// Wait for the route: nothing is lost, and a slow route slows its whole source. For
    /// brokers, whose consumers resume from a committed position.
    Wait,
    /// Drop the batch for that route only, counting it: the other routes keep their pace. For
    /// the demo market, which cannot pause.
    DropForSlowRoute,
}

/// Sends each event to every route whose upstream patterns match its channel, preserving order
/// per route.
pub struct Dispatcher {
    routes: Vec<Target>,
    by_channel: HashMap<Arc<str>, Vec<usize>>,
    backpressure: Backpressure,
    received: Option<IntCounter>,
    health: Arc<super::SourceHealth>,
}

struct Target {
    patterns: Vec<String>,
    sender: mpsc::Sender<RouteBatch>,
    dropped: Option<IntCounter>,
}

impl Dispatcher {
    /// A dispatcher with no routes.
    pub fn new(backpressure: Backpressure) -> Self {
        Dispatcher {
            routes: Vec::new(),
            by_channel: HashMap::new(),
            backpressure,
            received: None,
            health: Arc::new(super::SourceHealth::detached("unnamed")),
        }
    }

    /// Reports the source's state through `health`.
    pub fn with_health(mut self, health: Arc<super::SourceHealth>) -> Self {
        self.health = health;
        self
    }

    /// Where the source reports whether it is connected.
    pub fn health(&self) -> &super::SourceHealth {
        &self.health
    }

    /// Counts every dispatched event on `counter` (the datasource's events metric).
    pub fn count_with(mut self, counter: IntCounter) -> Self {
        self.received = Some(counter);
        self
    }

    /// Adds a route reading `patterns` (NATS-style for demo channels); returns its inbox.
    /// `dropped` counts events dropped for it under [`Backpressure::DropForSlowRoute`].
    pub fn add_route(&mut self, patterns: Vec<String>, dropped: Option<IntCounter>) -> RouteInbox {
        let (sender, rx) = mpsc::channel(ROUTE_QUEUE);
        self.routes.push(Target {
            patterns,
            sender,
            dropped,
        });
        self.by_channel.clear();
        rx
    }

    /// Number of routes fed.
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// Routes a batch, waiting while a route's queue is full. Returns false once every route has
    /// gone away.
    pub fn dispatch_blocking(&mut self, events: Vec<UpstreamEvent>) -> bool {
        self.dispatch(events, None)
    }

    /// Like [`dispatch_blocking`](Self::dispatch_blocking), then calls `handed_off` (on whichever
    /// thread drops the last share) once every route has published what the batch mapped to, or
    /// dropped its share. Batches are handed off in dispatch order, so a source may acknowledge
    /// or commit up to the batch's last position: at-least-once delivery.
    pub fn dispatch_blocking_then(
        &mut self,
        events: Vec<UpstreamEvent>,
        handed_off: impl FnOnce() + Send + 'static,
    ) -> bool {
        let handoff = Handoff(parking_lot::Mutex::new(Some(Box::new(handed_off))));
        self.dispatch(events, Some(Arc::new(handoff)))
    }

    fn dispatch(&mut self, events: Vec<UpstreamEvent>, handoff: Option<Arc<Handoff>>) -> bool {
        if let Some(counter) = &self.received {
            counter.inc_by(events.len() as u64);
        }
        let mut per_route: Vec<Vec<UpstreamEvent>> = vec![Vec::new(); self.routes.len()];
        for event in events {
            let targets = self.targets(&event.channel);
            if let Some((last, rest)) = targets.split_last() {
                for &route in rest {
                    per_route[route].push(event.clone());
                }
                per_route[*last].push(event);
            }
        }
        let mut alive = false;
        for (target, batch) in self.routes.iter().zip(per_route) {
            if batch.is_empty() {
                alive |= !target.sender.is_closed();
                continue;
            }
            let count = batch.len() as u64;
            let batch = RouteBatch {
                events: batch,
                _handoff: handoff.clone(),
            };
            alive |= match self.backpressure {
                Backpressure::Wait => target.sender.blocking_send(batch).is_ok(),
                Backpressure::DropForSlowRoute => match target.sender.try_send(batch) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        if let Some(dropped) = &target.dropped {
                            dropped.inc_by(count);
                        }
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                },
            };
        }
        alive
    }

    fn targets(&mut self, channel: &Arc<str>) -> Vec<usize> {
        if let Some(targets) = self.by_channel.get(channel) {
            return targets.clone();
        }
        let targets: Vec<usize> = self
            .routes
            .iter()
            .enumerate()
            .filter(|(_, target)| target.patterns.iter().any(|p| subject::matches(p, channel)))
            .map(|(i, _)| i)
            .collect();
        self.by_channel.insert(Arc::clone(channel), targets.clone());
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn event(channel: &str) -> UpstreamEvent {
        UpstreamEvent {
            channel: Arc::from(channel),
            key: None,
            headers: Vec::new(),
            payload: Bytes::from_static(b"{}"),
            timestamp_us: 0,
            position: crate::source::Position::Counted(0),
        }
    }

    #[test]
    fn events_reach_matching_routes_in_order() {
        let mut dispatcher = Dispatcher::new(Backpressure::Wait);
        let mut trades = dispatcher.add_route(vec!["trade.*".into()], None);
        let mut everything = dispatcher.add_route(vec![">".into()], None);
        assert!(dispatcher.dispatch_blocking(vec![
            event("trade.BTCUSDT"),
            event("book.BTCUSDT"),
            event("trade.ETHUSDT"),
        ]));
        let got = trades.try_recv().unwrap();
        let channels: Vec<&str> = got.iter().map(|e| &*e.channel).collect();
        assert_eq!(channels, ["trade.BTCUSDT", "trade.ETHUSDT"]);
        assert_eq!(everything.try_recv().unwrap().len(), 3);
    }

    #[test]
    fn a_batch_is_handed_off_when_every_route_has_dropped_its_share() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let mut dispatcher = Dispatcher::new(Backpressure::Wait);
        let mut trades = dispatcher.add_route(vec!["trade.*".into()], None);
        let mut everything = dispatcher.add_route(vec!["trade.*".into(), "book.*".into()], None);
        let handed_off = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let counter = Arc::clone(&handed_off);
            dispatcher.dispatch_blocking_then(vec![event("trade.X"), event("book.X")], move || {
                counter.fetch_add(1, Ordering::SeqCst);
            });
        }
        let first_trades = trades.try_recv().unwrap();
        let first_all = everything.try_recv().unwrap();
        drop(first_trades);
        assert_eq!(
            handed_off.load(Ordering::SeqCst),
            0,
            "one route still holds it"
        );
        drop(first_all);
        assert_eq!(handed_off.load(Ordering::SeqCst), 1);
        drop((trades.try_recv().unwrap(), everything.try_recv().unwrap()));
        assert_eq!(handed_off.load(Ordering::SeqCst), 2);
        // A batch no route reads is handed off at once.
        let counter = Arc::clone(&handed_off);
        dispatcher.dispatch_blocking_then(vec![event("other")], move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(handed_off.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn reports_when_every_route_is_gone() {
        let mut dispatcher = Dispatcher::new(Backpressure::Wait);
        drop(dispatcher.add_route(vec![">".into()], None));
        assert!(!dispatcher.dispatch_blocking(vec![event("a")]));
    }

    #[test]
    fn a_full_route_loses_its_batch_without_stopping_the_others() {
        let dropped = IntCounter::new("dropped", "dropped").unwrap();
        let mut dispatcher = Dispatcher::new(Backpressure::DropForSlowRoute);
        let _stuck = dispatcher.add_route(vec!["a".into()], Some(dropped.clone()));
        let mut healthy = dispatcher.add_route(vec!["b".into()], None);
        for _ in 0..ROUTE_QUEUE + 3 {
            assert!(dispatcher.dispatch_blocking(vec![event("a"), event("b")]));
            healthy.try_recv().unwrap();
        }
        assert_eq!(dropped.get(), 3);
    }
}
