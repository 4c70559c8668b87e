//! The in-process bus of an embedded node.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::RwLock;
use tokio::sync::mpsc;

use super::{Bus, BusError, BusMessage, Subscription};
use crate::subject;

/// Messages buffered per subscription before publishers wait.
const SUBSCRIPTION_BUFFER: usize = 65_536;

/// A bus inside one process: publish hands each message to every matching subscription.
#[derive(Default)]
pub struct MemoryBus {
    subscriptions: RwLock<Vec<(String, mpsc::Sender<BusMessage>)>>,
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryBus::default())
    }

    fn matching(&self, subject: &str) -> Vec<mpsc::Sender<BusMessage>> {
        self.subscriptions
            .read()
            .iter()
            .filter(|(pattern, tx)| !tx.is_closed() && subject::matches(pattern, subject))
            .map(|(_, tx)| tx.clone())
            .collect()
    }
}

impl Bus for MemoryBus {
    fn publish(
        &self,
        messages: Vec<(Arc<str>, BusMessage)>,
    ) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            let mut cached: Option<(Arc<str>, Vec<mpsc::Sender<BusMessage>>)> = None;
            for (subject, message) in messages {
                let targets = match &cached {
                    Some((s, targets)) if *s == subject => targets,
                    _ => {
                        let targets = self.matching(&subject);
                        &cached.insert((subject, targets)).1
                    }
                };
                if let Some((last, rest)) = targets.split_last() {
                    for tx in rest {
                        let _ = tx.send(message.clone()).await;
                    }
                    let _ = last.send(message).await;
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn subscribe(&self, pattern: &str) -> BoxFuture<'_, Result<Subscription, BusError>> {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let mut subscriptions = self.subscriptions.write();
        subscriptions.retain(|(_, tx)| !tx.is_closed());
        subscriptions.push((pattern.to_string(), tx));
        drop(subscriptions);
        async move { Ok(Subscription::new(rx)) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(stream: &str, seq: u64) -> BusMessage {
        BusMessage {
            stream: Arc::from(stream),
            seq,
            event_time_us: 0,
            published_us: 0,
            payload: Bytes::from_static(b"{}"),
            user_id: None,
        }
    }

    #[tokio::test]
    async fn delivers_to_matching_subscriptions_in_order() {
        let bus = MemoryBus::new();
        let mut trades = bus.subscribe("md.*.trade").await.unwrap();
        let mut all = bus.subscribe(">").await.unwrap();
        let batch = vec![
            (Arc::from("md.btcusdt.trade"), message("btcusdt@trade", 1)),
            (Arc::from("md.btcusdt.depth"), message("btcusdt@depth", 1)),
            (Arc::from("md.btcusdt.trade"), message("btcusdt@trade", 2)),
        ];
        bus.publish(batch).await.unwrap();
        assert_eq!(trades.next().await.unwrap().seq, 1);
        assert_eq!(trades.next().await.unwrap().seq, 2);
        let mut got = Vec::new();
        assert_eq!(all.next_batch(&mut got, 10).await, 3);
        assert_eq!(&*got[1].stream, "btcusdt@depth");
    }
}
