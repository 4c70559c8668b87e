//! Lame-duck drain: a node told to stop (SIGTERM) turns unready at once, keeps serving through
//! its grace while HAProxy takes it out of rotation, then closes its clients spread evenly over
//! its drain window; they reconnect through HAProxy to the other nodes, none is refused, and
//! with resume none loses or repeats an event.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use common::haproxy::HaProxy;
use common::nats::NatsServer;
use common::redis::RedisServer;
use common::trades::{produce, redis_stream_config, trades_owner};
use common::{wait_for, Gateway};

const STREAM: &str = "btcusdt@trade";
const CLIENTS: usize = 3000;
/// Trades are produced 5 a second (3,000 clients on debug builds of three nodes), from before the drain until the drained node has exited.
const GRACE: Duration = Duration::from_secs(4);
const WINDOW: Duration = Duration::from_secs(6);
const WAIT: Duration = Duration::from_secs(60);

/// What one client saw.
#[derive(Default)]
struct Outcome {
    /// Sequence number and trade id of every trade, in order of arrival.
    trades: Vec<(u64, u64)>,
    /// When the gateway closed the connection, and with which code.
    closes: Vec<(Instant, u16)>,
    /// Connection attempts that failed (HAProxy or a node refused it), and why.
    refused: Vec<String>,
}

async fn connect(url: &str) -> Result<common::Client, String> {
    match tokio_tungstenite::connect_async(url).await {
        Ok((client, _)) => Ok(client),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            Err(format!(
                "HTTP {}: {}",
                response.status(),
                String::from_utf8_lossy(body)
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Follows `btcusdt@trade` through `proxy` until the last trade `last` names, reconnecting
/// with `resumeFrom` whenever the gateway closes the connection.
async fn follow(
    proxy: String,
    mut client: common::Client,
    started: Arc<AtomicUsize>,
    mut last: tokio::sync::watch::Receiver<u64>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = outcome.trades.last().map_or(0, |(_, t)| *t);
        let target = *last.borrow_and_update();
        if target != 0 && seen >= target {
            return outcome;
        }
        let message = tokio::select! {
            message = client.next() => message,
            _ = last.changed() => continue,
            _ = tokio::time::sleep_until(deadline) => {
                panic!("trades stopped at {:?}", outcome.trades.last())
            }
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if value["stream"] != STREAM || value.get("seq").is_none() {
                    continue;
                }
                let seq = value["seq"].as_u64().unwrap();
                let t = value["data"]["t"].as_u64().unwrap();
                outcome.trades.push((seq, t));
                if t == 5 {
                    started.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map_or(0, |f| u16::from(f.code));
                outcome.closes.push((Instant::now(), code));
                let last = outcome.trades.last().map_or(0, |(seq, _)| *seq);
                let url = format!("{proxy}/stream?streams={STREAM}&resumeFrom={STREAM}:{last}");
                client = loop {
                    let asked = Instant::now();
                    match connect(&url).await {
                        Ok(client) => break client,
                        Err(why) => {
                            outcome
                                .refused
                                .push(format!("{why} after {:?}", asked.elapsed()));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                };
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("connection failed without a close: {e}"),
            None => panic!("connection ended without a close"),
        }
    }
}

/// What a drain of one node of three did to the clients.
struct Drained {
    /// Clients on the drained node when it was told to stop.
    on_victim: usize,
    /// Every client's view.
    outcomes: Vec<Outcome>,
    /// Every close a client saw: when after SIGTERM, and its code.
    closes: Vec<(Duration, u16)>,
    /// The last trade id produced.
    trades: u64,
    /// When the drained node exited, after SIGTERM.
    exited: Duration,
    /// The drained node's own count of 1001 closes, sampled every 100 ms after SIGTERM.
    counted: Vec<(Duration, f64)>,
}

/// Three nodes behind HAProxy with [`CLIENTS`] resuming clients streaming trades; one node
/// that does not consume the source is sent SIGTERM and drains with [`GRACE`] and `window`.
async fn drain_one_of_three(window: Duration) -> Drained {
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let config = redis_stream_config(&redis.url());
    let (grace, window) = (
        format!("{}s", GRACE.as_secs()),
        format!("{}ms", window.as_millis()),
    );
    let args = [
        "--replay-retention",
        "10m",
        "--drain-grace",
        &grace,
        "--drain-window",
        &window,
        "--shutdown-timeout",
        "5s",
    ];
    let mut nodes: Vec<Gateway> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| Gateway::cluster_node_with(&config, &redis.url(), &nats.url(), id, &args))
        .collect();
    let proxy = HaProxy::start(&nodes);
    // A node that does not consume the source: its clients' streams go on while it drains.
    let victim = (trades_owner(&nodes) + 1) % nodes.len();

    let proxy_url = proxy.url("");
    let url = proxy.url(&format!("/stream?streams={STREAM}&resume=true"));
    let started = Arc::new(AtomicUsize::new(0));
    let (last_sender, last) = tokio::sync::watch::channel(0u64);
    let mut clients = Vec::with_capacity(CLIENTS);
    for batch in 0..CLIENTS / 100 {
        let connects = (0..100).map(|_| connect(&url));
        for (i, client) in futures_util::future::join_all(connects)
            .await
            .into_iter()
            .enumerate()
        {
            let client =
                client.unwrap_or_else(|e| panic!("client {} refused: {e}", batch * 100 + i));
            clients.push(tokio::spawn(follow(
                proxy_url.clone(),
                client,
                Arc::clone(&started),
                last.clone(),
            )));
        }
    }
    let on_victim = nodes[victim].metric("wsgate_connections ") as usize;
    assert!(
        on_victim > CLIENTS / 6,
        "HAProxy put only {on_victim} clients on the node to drain"
    );
    wait_for("every node subscribed", || {
        nodes
            .iter()
            .all(|n| n.metric("wsgate_bus_subscriptions ") == 1.0)
    });

    let redis_url = redis.url();
    // On a thread of its own (the clients keep the test's runtime busy), until told to stop;
    // returns the last trade id.
    let producing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let producer = std::thread::spawn({
        let producing = Arc::clone(&producing);
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut next = 1;
                while producing.load(Ordering::Relaxed) {
                    produce(&redis_url, next..=next).await;
                    next += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                next - 1
            })
        }
    });
    let deadline = Instant::now() + WAIT;
    while started.load(Ordering::Relaxed) < CLIENTS {
        assert!(
            Instant::now() < deadline,
            "only {} of {CLIENTS} clients got trade 5",
            started.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nodes[victim].signal("TERM");
    let term = Instant::now();
    // The node's own count of the closes it made, read until it is gone: when each close
    // happened, without the clients' delay in reading it.
    let admin = nodes[victim].admin;
    let sampler = std::thread::spawn(move || {
        let mut counted = Vec::new();
        while let Ok((200, body)) = common::http_get(admin, "/metrics") {
            let closes = common::metric_value(&body, "wsgate_closes_total{code=\"1001\"}");
            counted.push((term.elapsed(), closes.max(0.0)));
            std::thread::sleep(Duration::from_millis(100));
        }
        counted
    });
    // Unready at once, still serving.
    wait_for("the node unready", || {
        nodes[victim]
            .http_get("/readyz")
            .map(|(s, _)| s)
            .unwrap_or(0)
            == 503
    });
    assert!(term.elapsed() < Duration::from_secs(1));
    assert_eq!(
        nodes[victim].metric("wsgate_connections ") as usize,
        on_victim,
        "no client closed during the grace"
    );

    nodes[victim]
        .wait_exit(Duration::from_secs(30))
        .expect("the drained node exits");
    let exited = term.elapsed();
    let counted = sampler.join().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    producing.store(false, Ordering::Relaxed);
    let trades = producer.join().unwrap();
    last_sender.send(trades).unwrap();
    let mut outcomes = Vec::with_capacity(CLIENTS);
    for client in clients {
        outcomes.push(client.await.expect("client task"));
    }

    let closes = outcomes
        .iter()
        .flat_map(|o| o.closes.iter().map(|(at, code)| (*at - term, *code)))
        .collect();
    nodes.remove(victim);
    Drained {
        on_victim,
        outcomes,
        closes,
        trades,
        exited,
        counted,
    }
}

/// The busiest 100 ms of reconnects (each close is followed by one at once).
fn reconnect_peak(closes: &[(Duration, u16)]) -> usize {
    let mut per_tick = std::collections::BTreeMap::<u128, usize>::new();
    for (after, _) in closes {
        *per_tick.entry(after.as_millis() / 100).or_default() += 1;
    }
    per_tick.values().max().copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_node_hands_its_clients_to_the_others_over_its_window_losing_nothing() {
    let Drained {
        on_victim,
        outcomes,
        closes,
        trades,
        exited,
        counted,
    } = drain_one_of_three(WINDOW).await;
    // Every client saw every trade once, in order, numbered without a gap.
    for (i, outcome) in outcomes.iter().enumerate() {
        let ids: Vec<u64> = outcome.trades.iter().map(|(_, t)| *t).collect();
        assert_eq!(ids, (1..=trades).collect::<Vec<_>>(), "client {i}'s trades");
        let first = outcome.trades[0].0;
        let seqs: Vec<u64> = outcome.trades.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs,
            (first..first + trades).collect::<Vec<_>>(),
            "client {i}"
        );
    }
    let refused: Vec<&String> = outcomes.iter().flat_map(|o| &o.refused).collect();
    assert!(refused.is_empty(), "reconnects refused: {refused:?}");
    // Exactly the drained node's clients were closed, each once, with 1001, after the grace
    // and within the window.
    assert_eq!(closes.len(), on_victim, "closes");
    assert!(outcomes.iter().all(|o| o.closes.len() <= 1));
    assert!(closes.iter().all(|(_, code)| *code == 1001), "{closes:?}");
    // Measured where the client reads the close: allow for its own delay on a loaded machine.
    let slack = Duration::from_millis(1500);
    for (after, _) in &closes {
        assert!(
            *after >= GRACE && *after <= GRACE + WINDOW + slack,
            "a close {after:?} after SIGTERM"
        );
    }
    // Spread, as the node counted its closes: none in the grace, then each sixth of the window
    // closes about a sixth of them.
    let count_at = |at: Duration| {
        let sample = counted.iter().rev().find(|(when, _)| *when <= at);
        sample.map_or(0.0, |(_, count)| *count) as usize
    };
    assert_eq!(
        count_at(GRACE - Duration::from_millis(300)),
        0,
        "{counted:?}"
    );
    let slice = WINDOW / 6;
    let per_slice: Vec<usize> = (0..6)
        .map(|i| count_at(GRACE + slice * (i + 1)) - count_at(GRACE + slice * i))
        .collect();
    let even = on_victim / 6;
    for count in &per_slice {
        assert!(
            *count >= even / 2 && *count <= even * 2,
            "closes per second of the window, as the node counted them: {per_slice:?}"
        );
    }
    let peak = reconnect_peak(&closes);
    println!(
        "drained {on_victim} clients over {WINDOW:?} after a {GRACE:?} grace: closes per second \
         {per_slice:?}, reconnect peak {peak} in 100 ms ({} per second), node exited {exited:?} \
         after SIGTERM, 0 refused, every client got trades 1..={trades} once, in order",
        peak * 10
    );
}

/// Drain window against the reconnect peak on the nodes that stay, printed (a measurement, not
/// a check; `docs/benchmarks.md` has the command): the same drain with no window (every client
/// closed at once, as a node without `--drain-window` does), then with [`WINDOW`].
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn drain_window_against_reconnect_peak() {
    for window in [Duration::ZERO, WINDOW] {
        let drained = drain_one_of_three(window).await;
        let times = || drained.closes.iter().map(|(at, _)| *at);
        let first = times().min().unwrap_or_default();
        let last = times().max().unwrap_or_default();
        let lost = drained
            .outcomes
            .iter()
            .filter(|o| o.trades.len() as u64 != drained.trades)
            .count();
        println!(
            "window {window:?}: {} clients closed from {first:?} to {last:?} after SIGTERM, \
             reconnect peak {} in 100 ms, refused {}, clients missing a trade {lost}",
            drained.closes.len(),
            reconnect_peak(&drained.closes),
            drained
                .outcomes
                .iter()
                .map(|o| o.refused.len())
                .sum::<usize>(),
        );
    }
}
