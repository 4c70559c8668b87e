//! The outbox's unit tests.
use super::*;
use bytes::Bytes;

fn delivery(size: usize) -> Arc<Delivery> {
    Arc::new(Delivery::new(
        Arc::from("s"),
        1,
        0,
        0,
        Bytes::from(vec![b'x'; size]),
        0,
    ))
}

#[test]
fn overflow_marks_the_connection_and_refuses_more() {
    let outbox = Outbox::new(1, 100);
    assert_eq!(outbox.push(&delivery(60)), Pushed::Queued);
    assert_eq!(outbox.push(&delivery(60)), Pushed::Overflowed);
    assert_eq!(outbox.push(&delivery(1)), Pushed::Refused);
    let mut taken = VecDeque::new();
    assert!(outbox.take_all(&mut taken));
    assert_eq!(taken.len(), 1);
}

mod lent {
    use super::*;
    use crate::hub::wire::test_socket::{self, wire};
    use std::task::{Wake, Waker};

    /// Counts its wake-ups.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An outbox whose writer waits (a registered waker), and its wake-up count.
    fn waiting(limit: usize) -> (Arc<Outbox>, Arc<Counter>) {
        let outbox = Outbox::new(1, limit);
        let counter = Arc::new(Counter(Default::default()));
        outbox.waker.register(&Waker::from(Arc::clone(&counter)));
        (outbox, counter)
    }

    /// What the writer would write of each queued message: the frame a lane left, or
    /// the payload (the test wire's frame) of one never written.
    fn frames(taken: &VecDeque<Arc<Delivery>>) -> Vec<String> {
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        taken
            .iter()
            .map(|d| text(d.cached(0).unwrap_or(&d.payload)))
            .collect()
    }

    fn wakes(counter: &Counter) -> usize {
        counter.0.load(Ordering::Relaxed)
    }

    fn on(payload: &'static str) -> Arc<Delivery> {
        let payload = Bytes::from_static(payload.as_bytes());
        Arc::new(Delivery::new(Arc::from("s"), 1, 0, 0, payload, 1))
    }

    #[test]
    fn a_lane_writes_a_lent_socket_without_waking_the_writer() {
        test_socket::reset(usize::MAX);
        let (outbox, counter) = waiting(1000);
        assert!(outbox.lend_wire(wire()));
        outbox.push(&on("ab"));
        outbox.push(&on("cd"));
        let flushed = outbox.flush_or_wake();
        assert_eq!(
            flushed,
            Flushed {
                frames: 2,
                sends: 1
            }
        );
        assert_eq!(test_socket::taken(), b"abcd");
        assert_eq!(wakes(&counter), 0);
        assert!(!outbox.has_news());
    }

    #[test]
    fn a_socket_taken_back_is_never_written_by_a_lane() {
        test_socket::reset(usize::MAX);
        let (outbox, counter) = waiting(1000);
        assert!(outbox.lend_wire(wire()));
        outbox.reclaim_wire();
        outbox.push(&on("ab"));
        assert_eq!(outbox.flush_or_wake(), Flushed::default());
        assert!(test_socket::taken().is_empty());
        assert_eq!(wakes(&counter), 1, "the writer writes it");
        let mut taken = VecDeque::new();
        outbox.take_all(&mut taken);
        assert_eq!(taken.len(), 1);
    }

    #[test]
    fn lending_is_refused_while_something_waits_or_needs_the_connection() {
        let outbox = Outbox::new(1, 10);
        outbox.push(&on("abcdefgh"));
        assert!(!outbox.lend_wire(wire()), "a message waits");
        outbox.push(&on("abcdefgh"));
        outbox.take_all(&mut VecDeque::new());
        assert!(!outbox.lend_wire(wire()), "overflowed");
        let closed = Outbox::new(2, 10);
        closed.close();
        assert!(!closed.lend_wire(wire()), "closed");
    }

    #[test]
    fn a_socket_full_mid_frame_goes_back_to_the_writer_with_the_rest_first() {
        test_socket::reset(3);
        let (outbox, counter) = waiting(1000);
        assert!(outbox.lend_wire(wire()));
        outbox.push(&on("ab"));
        outbox.push(&on("cde"));
        let flushed = outbox.flush_or_wake();
        assert_eq!(
            flushed,
            Flushed {
                frames: 1,
                sends: 1
            }
        );
        assert_eq!(wakes(&counter), 1);
        // The wire is the writer's again: a later push is not written by a lane.
        outbox.push(&on("f"));
        test_socket::make_room(usize::MAX);
        outbox.flush_or_wake();
        assert_eq!(test_socket::taken(), b"abc");
        let mut taken = VecDeque::new();
        outbox.take_all(&mut taken);
        assert!(
            outbox.take_partial_front(),
            "the front is the rest of a frame"
        );
        assert!(!outbox.take_partial_front(), "told once");
        assert_eq!(frames(&taken), ["de", "f"]);
    }

    #[test]
    fn a_turn_goes_straight_to_a_lent_socket_and_queues_only_what_it_did_not_take() {
        test_socket::reset(usize::MAX);
        let (outbox, counter) = waiting(1000);
        assert!(outbox.lend_wire(wire()));
        let turn = [on("ab"), on("cd")];
        let mut counts = FanOut::default();
        let flushed = outbox.deliver(&turn, &Flow::UNLIMITED, 7, None, &mut counts);
        assert_eq!(
            flushed,
            Flushed {
                frames: 2,
                sends: 1
            }
        );
        assert_eq!(counts.queued, 2);
        assert_eq!(Arc::strong_count(&turn[0]), 1, "no reference kept");
        assert_eq!(wakes(&counter), 0);

        test_socket::reset(3);
        let turn = [on("ef"), on("gh"), on("ij")];
        let flushed = outbox.deliver(&turn, &Flow::UNLIMITED, 7, None, &mut counts);
        assert_eq!(
            flushed,
            Flushed {
                frames: 1,
                sends: 1
            }
        );
        assert_eq!(test_socket::taken(), b"efg");
        assert_eq!(wakes(&counter), 1);
        let mut taken = VecDeque::new();
        outbox.take_all(&mut taken);
        assert!(outbox.take_partial_front());
        assert_eq!(frames(&taken), ["h", "ij"]);
    }
}

#[test]
fn a_message_larger_than_the_limit_still_goes_to_an_idle_connection() {
    let outbox = Outbox::new(1, 10);
    assert_eq!(outbox.push(&delivery(50)), Pushed::Queued);
}

#[tokio::test]
async fn a_waiting_writer_is_woken_only_after_the_batch() {
    let outbox = Outbox::new(1, 1000);
    let waiter = Arc::clone(&outbox);
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        waiter.ready().await;
        tx.send(()).unwrap();
    });
    tokio::task::yield_now().await;
    outbox.push(&delivery(1));
    outbox.push(&delivery(1));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(rx.try_recv().is_err(), "woken before the publisher's wake");
    outbox.wake_if_due();
    tokio::time::timeout(std::time::Duration::from_secs(1), rx)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_removed_stream_wakes_the_connection_and_is_taken_once() {
    let outbox = Outbox::new(1, 1000);
    assert!(outbox.take_removed().is_empty());
    outbox.stream_removed(7);
    outbox.stream_removed(9);
    tokio::time::timeout(std::time::Duration::from_secs(1), outbox.ready())
        .await
        .expect("woken");
    assert_eq!(outbox.take_removed(), [7, 9]);
    assert!(outbox.take_removed().is_empty());
    outbox.close();
    outbox.stream_removed(11);
    assert!(
        outbox.take_removed().is_empty(),
        "a closed outbox keeps nothing"
    );
}

fn on(stream: &str, seq: u64, payload: String) -> Arc<Delivery> {
    Arc::new(Delivery::new(
        Arc::from(stream),
        seq,
        0,
        0,
        Bytes::from(payload),
        0,
    ))
}

fn depth(first: u64, last: u64, price: &str) -> String {
    format!(
        r#"{{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":{first},"u":{last},"b":[["{price}","1"]],"a":[]}}"#
    )
}

fn seqs(outbox: &Outbox) -> Vec<u64> {
    let mut taken = VecDeque::new();
    outbox.take_all(&mut taken);
    taken.iter().map(|d| d.seq).collect()
}

#[test]
fn over_the_rate_a_latest_stream_holds_its_newest_message_until_the_next_token() {
    let outbox = Outbox::new(1, 1 << 20);
    let flow = Flow::new(Some(10), Some(2), Overflow::Latest);
    let now = Some(Instant::now());
    let pushed: Vec<Pushed> = (1..=5)
        .map(|seq| outbox.push_flow(&on("s", seq, "{}".into()), &flow, 7, now))
        .collect();
    use Pushed::*;
    assert_eq!(pushed, [Queued, Queued, Held, Coalesced, Coalesced]);
    assert_eq!(seqs(&outbox), [1, 2], "the burst goes out, the rest waits");
    let due = outbox.release_at().expect("a message is held");
    assert!(due > Instant::now());
    std::thread::sleep(due - Instant::now());
    assert_eq!(seqs(&outbox), [5], "the newest value, once a token is due");
    assert_eq!(outbox.release_at(), None);
    assert_eq!(
        outbox.push_flow(&on("s", 6, "{}".into()), &flow, 7, Some(Instant::now())),
        Held,
        "the bucket is empty again"
    );
    outbox.forget_stream(7);
    assert_eq!(outbox.release_at(), None, "unsubscribed: nothing held");
}

#[test]
fn over_the_rate_depth_events_merge_and_a_closing_stream_overflows() {
    let outbox = Outbox::new(1, 1 << 20);
    let coalesce = Flow::new(Some(1), Some(1), Overflow::Coalesce);
    let now = Some(Instant::now());
    for (seq, (first, last)) in [(1, 1), (2, 3), (4, 6)].into_iter().enumerate() {
        let d = on("btcusdt@depth", seq as u64 + 1, depth(first, last, "1.0"));
        outbox.push_flow(&d, &coalesce, 1, now);
    }
    let mut taken = VecDeque::new();
    outbox.take_all(&mut taken);
    assert_eq!(taken.len(), 1);
    std::thread::sleep(outbox.release_at().unwrap() - Instant::now());
    outbox.take_all(&mut taken);
    let merged: serde_json::Value = serde_json::from_slice(&taken[1].payload).unwrap();
    assert_eq!(
        (merged["U"].as_u64(), merged["u"].as_u64()),
        (Some(2), Some(6))
    );

    let close = Flow::new(Some(1), Some(1), Overflow::Close);
    let trades = Outbox::new(2, 1 << 20);
    assert_eq!(
        trades.push_flow(&delivery(1), &close, 1, now),
        Pushed::Queued
    );
    assert_eq!(
        trades.push_flow(&delivery(1), &close, 1, now),
        Pushed::Overflowed
    );
    assert!(trades.take_all(&mut VecDeque::new()), "a slow consumer now");

    let drop = Flow::new(Some(1), Some(1), Overflow::Drop);
    let dropping = Outbox::new(3, 1 << 20);
    dropping.push_flow(&delivery(1), &drop, 1, now);
    assert_eq!(
        dropping.push_flow(&delivery(1), &drop, 1, now),
        Pushed::Dropped
    );
    assert_eq!(dropping.release_at(), None);
}

#[test]
fn a_limited_stream_costs_its_connections_one_small_entry() {
    let size = std::mem::size_of::<Limited>();
    assert!(size <= 96, "{size} bytes per limited stream and connection");
    let outbox = Outbox::new(1, 1 << 20);
    let flow = Flow::new(Some(100), Some(100), Overflow::Close);
    for topic in 1..=5 {
        outbox.push_flow(&delivery(10), &flow, topic, Some(Instant::now()));
    }
    let state = outbox.state.lock();
    let limited = state.limited.as_ref().unwrap();
    assert_eq!((limited.len(), limited.capacity()), (5, 5));
}

#[test]
fn a_full_queue_coalesces_by_the_stream_policy_before_it_overflows() {
    let unlimited = |overflow| Flow::new(None, None, overflow);
    let outbox = Outbox::new(1, 200);
    let book = unlimited(Overflow::Coalesce);
    let ticker = unlimited(Overflow::Latest);
    assert_eq!(
        outbox.push_flow(&on("d", 1, depth(1, 1, "1.0")), &book, 1, None),
        Pushed::Queued
    );
    assert_eq!(
        outbox.push_flow(&on("t", 2, "x".repeat(120)), &ticker, 2, None),
        Pushed::Queued
    );
    // Full: the next depth event merges into the queued one, the ticker replaces its own.
    assert_eq!(
        outbox.push_flow(&on("d", 3, depth(2, 4, "2.0")), &book, 1, None),
        Pushed::Coalesced
    );
    assert_eq!(
        outbox.push_flow(&on("t", 4, "y".repeat(120)), &ticker, 2, None),
        Pushed::Coalesced
    );
    assert_eq!(
        outbox.push_flow(&on("d", 5, depth(9, 9, "3.0")), &book, 1, None),
        Pushed::Overflowed,
        "a gap cannot be merged"
    );
    let mut taken = VecDeque::new();
    assert!(outbox.take_all(&mut taken));
    assert_eq!(taken.iter().map(|d| d.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(std::str::from_utf8(&taken[0].payload)
        .unwrap()
        .contains(r#""U":1,"u":4"#));
    assert_eq!(&taken[1].payload[..], "y".repeat(120).as_bytes());

    let dropping = Outbox::new(2, 10);
    let drop = unlimited(Overflow::Drop);
    dropping.push_flow(&delivery(20), &drop, 1, None);
    assert_eq!(
        dropping.push_flow(&delivery(20), &drop, 1, None),
        Pushed::Dropped
    );
    assert!(
        !dropping.take_all(&mut VecDeque::new()),
        "still a good consumer"
    );
}

#[tokio::test]
async fn push_wakes_the_writer_once() {
    let outbox = Outbox::new(1, 1000);
    outbox.push(&delivery(1));
    outbox.push(&delivery(1));
    outbox.ready().await;
    let mut taken = VecDeque::new();
    assert!(!outbox.take_all(&mut taken));
    assert_eq!(taken.len(), 2);
    assert!(!outbox.has_news());
}
