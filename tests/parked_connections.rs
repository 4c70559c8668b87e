//! An idle connection parks: it leaves its task while the lanes write its socket
//! (`wsgate_connections_parked`). Everything a connection needs must still wake a parked one:
//! market data keeps coming whole and in order, server pings go out (its timer), the client's
//! pongs and requests are read and answered (its socket), a client that leaves is let go, and
//! a shutdown reaches it (its outbox).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 16;
const WAIT: Duration = Duration::from_secs(10);

/// What a client saw in a window: trade ids in order, pings.
#[derive(Default, Debug)]
struct Seen {
    trade_ids: Vec<u64>,
    pings: usize,
}

/// Reads `client` for `window`, answering pings (tungstenite does, as it reads); panics on a
/// close or anything but trades and pings.
async fn read_for(client: &mut Client, window: Duration) -> Seen {
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(message) = tokio::time::timeout_at(deadline, client.next()).await {
        match message.expect("connection open").expect("a valid frame") {
            Message::Text(text) => {
                let trade: Value = serde_json::from_str(&text).expect("JSON");
                assert_eq!(trade["e"], "trade", "{trade}");
                seen.trade_ids
                    .push(trade["t"].as_u64().expect("a trade id"));
            }
            Message::Ping(_) => seen.pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    seen
}

/// The highest value `wsgate_connections_parked` takes until `done`, sampled every
/// 20 ms on a thread of its own.
fn sample_parked(gateway: Arc<Gateway>, done: Arc<AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut highest: f64 = 0.0;
        while !done.load(Ordering::Relaxed) {
            highest = highest.max(gateway.metric("wsgate_connections_parked "));
            std::thread::sleep(Duration::from_millis(20));
        }
        highest
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_park_and_everything_they_need_wakes_them() {
    // Pings every 300 ms, and a client whose pong has not come 2 s after a ping is closed: a
    // parked connection that missed its timer or its client's pongs fails the reading below.
    let gateway = Arc::new(Gateway::start(&[
        "--ping-interval",
        "300ms",
        "--pong-timeout",
        "2s",
    ]));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(gateway.connect("/ws/btcusdt@trade").await);
    }

    let done = Arc::new(AtomicBool::new(false));
    let sampler = sample_parked(Arc::clone(&gateway), Arc::clone(&done));
    let seen = futures_util::future::join_all(
        clients
            .iter_mut()
            .map(|client| read_for(client, Duration::from_secs(3))),
    )
    .await;
    done.store(true, Ordering::Relaxed);
    let highest_parked = sampler.join().unwrap();
    assert_eq!(
        highest_parked, CLIENTS as f64,
        "every idle connection parks between its wake-ups"
    );
    for seen in &seen {
        assert!(seen.pings >= 5, "pings at 300 ms for 3 s: {seen:?}");
        assert!(seen.trade_ids.len() >= 3, "trades keep coming: {seen:?}");
        assert!(
            seen.trade_ids.windows(2).all(|w| w[1] == w[0] + 1),
            "trade ids contiguous: {:?}",
            seen.trade_ids
        );
    }

    // Requests wake a parked connection and are answered.
    for (i, client) in clients.iter_mut().enumerate() {
        let list = json!({"method": "LIST_SUBSCRIPTIONS", "id": i});
        client.send(Message::text(list.to_string())).await.unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let reply = next_reply(client).await;
        assert_eq!(reply, json!({"result": ["btcusdt@trade"], "id": i}));
    }

    // Clients that leave are let go, parked or not.
    for mut client in clients.drain(CLIENTS / 2..) {
        client.close(None).await.unwrap();
    }
    wait_for("the clients that left to be gone", || {
        gateway.metric("wsgate_connections ") == (CLIENTS / 2) as f64
    });
    wait_for("the rest to park again", || {
        gateway.metric("wsgate_connections_parked ") == (CLIENTS / 2) as f64
    });

    // A shutdown reaches every parked connection.
    gateway.signal("TERM");
    for client in &mut clients {
        assert_eq!(expect_close(client, WAIT).await.0, 1001);
    }
}
