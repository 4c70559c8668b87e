//! Cost of fanning one message out to N subscribers (queue push + wake-up flag, no socket), against
//! `tokio::sync::broadcast` with N receivers as the baseline measured in the same run, and the
//! same fan-out with a per-connection rate limit that never bites (the cost of checking it).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wsgate::hub::{Delivery, Flow, Outbox, Overflow, Topic};
use wsgate::metrics::Metrics;

const PAYLOAD: &[u8] = br#"{"e":"trade","E":1767000000123,"s":"BTCUSDT","t":5001,"p":"67000.01000000","q":"0.01200000","T":1767000000123,"m":false,"M":true}"#;

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    let metrics = Metrics::new();
    for subscribers in [1_000usize, 10_000] {
        group.throughput(Throughput::Elements(subscribers as u64));
        // A million a second per connection: every delivery finds a token (an iteration takes
        // microseconds), so what is measured is taking it.
        let limited = Flow::new(Some(1_000_000), Some(1_000_000), Overflow::Close);
        for (name, flow) in [
            ("hub_topic", Flow::UNLIMITED),
            ("hub_topic_limited", limited),
        ] {
            let topic = Topic::new(Arc::from("btcusdt@trade"), &metrics);
            topic.set_flow(flow);
            let outboxes: Vec<Arc<Outbox>> = (0..subscribers as u64)
                .map(|id| Outbox::new(id, 1 << 20))
                .collect();
            for outbox in &outboxes {
                topic.subscribe(outbox);
            }
            let mut drained = VecDeque::new();
            group.bench_function(format!("{name}/{subscribers}"), |b| {
                b.iter(|| {
                    let delivery = Arc::new(Delivery::new(
                        Arc::from("btcusdt@trade"),
                        1,
                        0,
                        0,
                        Bytes::from_static(PAYLOAD),
                        0,
                    ));
                    topic.fan_out(&delivery, 0, 1);
                    topic.wake(0, 1);
                    for outbox in &outboxes {
                        outbox.take_all(&mut drained);
                        drained.clear();
                    }
                })
            });
        }

        let (sender, _) = tokio::sync::broadcast::channel::<Bytes>(16);
        let mut receivers: Vec<_> = (0..subscribers).map(|_| sender.subscribe()).collect();
        group.bench_function(format!("tokio_broadcast_baseline/{subscribers}"), |b| {
            b.iter(|| {
                sender.send(Bytes::from_static(PAYLOAD)).unwrap();
                for receiver in &mut receivers {
                    receiver.try_recv().unwrap();
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
