//! The bus as one datasource's routes see it: what they publish feeds the books first.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::Books;
use crate::bus::{Bus, BusError, BusMessage, BusSink, SubscriptionId};

/// A bus that applies every diff-depth output to its symbol's book, then publishes it on the
/// bus it wraps. Everything else is the wrapped bus's: a method added to [`Bus`] must be
/// forwarded here too, or the routes would get its default instead.
pub(super) struct Feed {
    books: Books,
    source: Arc<str>,
    bus: Arc<dyn Bus>,
}

impl Feed {
    /// Feeds `books` from what `source`'s routes publish on `bus`.
    pub(super) fn new(books: Books, source: Arc<str>, bus: Arc<dyn Bus>) -> Self {
        Feed { books, source, bus }
    }
}

impl Bus for Feed {
    fn publish(
        &self,
        messages: Vec<(Arc<str>, BusMessage)>,
    ) -> BoxFuture<'_, Result<(), BusError>> {
        for (_, message) in &messages {
            self.books.feed(&self.source, message);
        }
        self.bus.publish(messages)
    }

    fn subscribe(
        &self,
        pattern: &str,
        sink: Arc<dyn BusSink>,
    ) -> BoxFuture<'_, Result<SubscriptionId, BusError>> {
        self.bus.subscribe(pattern, sink)
    }

    fn unsubscribe(&self, id: SubscriptionId) -> BoxFuture<'_, Result<(), BusError>> {
        self.bus.unsubscribe(id)
    }

    fn last_captured<'a>(
        &'a self,
        subject: &'a str,
        stream: &'a str,
    ) -> BoxFuture<'a, Option<BusMessage>> {
        self.bus.last_captured(subject, stream)
    }
}
