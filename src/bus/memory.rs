//! The in-process bus of an embedded node: publishing hands each batch straight to the matching
//! sinks, with no queue of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::RwLock;

use super::{Bus, BusError, BusMessage, BusSink, SubscriptionId};
use crate::subject;

struct Entry {
    id: SubscriptionId,
    pattern: String,
    sink: Arc<dyn BusSink>,
}

/// A bus inside one process.
#[derive(Default)]
pub struct MemoryBus {
    subscriptions: RwLock<Vec<Entry>>,
    next_id: AtomicU64,
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryBus::default())
    }

    /// Delivers `messages` to every matching sink, in order, as one batch per sink.
    pub async fn publish_now(&self, messages: Vec<(Arc<str>, BusMessage)>) {
        let batches: Vec<(Arc<dyn BusSink>, Vec<BusMessage>)> = {
            let subscriptions = self.subscriptions.read();
            subscriptions
                .iter()
                .map(|entry| {
                    let batch = messages
                        .iter()
                        .filter(|(subject, _)| subject::matches(&entry.pattern, subject))
                        .map(|(_, message)| message.clone())
                        .collect();
                    (Arc::clone(&entry.sink), batch)
                })
                .collect()
        };
        for (sink, batch) in batches {
            if !batch.is_empty() {
                sink.deliver(batch).await;
            }
        }
    }
}

impl Bus for MemoryBus {
    fn publish(
        &self,
        messages: Vec<(Arc<str>, BusMessage)>,
    ) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            self.publish_now(messages).await;
            Ok(())
        }
        .boxed()
    }

    fn subscribe(
        &self,
        pattern: &str,
        sink: Arc<dyn BusSink>,
    ) -> BoxFuture<'_, Result<SubscriptionId, BusError>> {
        let id = SubscriptionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.subscriptions.write().push(Entry {
            id,
            pattern: pattern.to_string(),
            sink,
        });
        async move { Ok(id) }.boxed()
    }

    fn unsubscribe(&self, id: SubscriptionId) -> BoxFuture<'_, Result<(), BusError>> {
        self.subscriptions.write().retain(|entry| entry.id != id);
        async { Ok(()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<(String, u64)>>);

    impl BusSink for Collect {
        fn deliver(&self, messages: Vec<BusMessage>) -> BoxFuture<'_, ()> {
            let got = messages.iter().map(|m| (m.stream.to_string(), m.seq));
            self.0.lock().extend(got);
            async {}.boxed()
        }
    }

    fn message(stream: &str, seq: u64) -> BusMessage {
        BusMessage::for_tests(stream, seq, Bytes::from_static(b"{}"))
    }

    #[tokio::test]
    async fn delivers_to_matching_subscriptions_in_order() {
        let bus = MemoryBus::new();
        let trades = Arc::new(Collect::default());
        let all = Arc::new(Collect::default());
        bus.subscribe("md.*.trade", trades.clone()).await.unwrap();
        let id = bus.subscribe(">", all.clone()).await.unwrap();
        let batch = vec![
            (Arc::from("md.btcusdt.trade"), message("btcusdt@trade", 1)),
            (Arc::from("md.btcusdt.depth"), message("btcusdt@depth", 1)),
            (Arc::from("md.btcusdt.trade"), message("btcusdt@trade", 2)),
        ];
        bus.publish(batch).await.unwrap();
        assert_eq!(
            *trades.0.lock(),
            [
                ("btcusdt@trade".to_string(), 1),
                ("btcusdt@trade".to_string(), 2)
            ]
        );
        assert_eq!(all.0.lock().len(), 3);
        bus.unsubscribe(id).await.unwrap();
        bus.publish(vec![(Arc::from("md.x.trade"), message("x@trade", 3))])
            .await
            .unwrap();
        assert_eq!(all.0.lock().len(), 3);
        assert_eq!(trades.0.lock().len(), 3);
    }
}
