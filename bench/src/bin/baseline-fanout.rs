//! A plain tokio-tungstenite fan-out server, the baseline `docs/benchmarks.md` measures wsgate
//! against on the same machine in the same run.
//!
//! It is what a careful first implementation looks like: one task per connection owning a
//! `WebSocketStream` (tokio-tungstenite's default buffers unless `--read-buffer` is given), one
//! `tokio::sync::broadcast` channel carrying every event, each connection keeping the streams it
//! asked for, feeding every ready message and flushing once per burst. Events are Binance-style
//! trades with microsecond `E` stamps taken from an open-loop schedule, so `wsgate-bench` measures
//! both servers the same way.
//!
//! ```sh
//! cargo run --release --bin baseline-fanout -- 127.0.0.1:9300 btcusdt,ethusdt 1 5
//! ```
//! (address, symbols, taker orders per second per symbol, trades per taker order; optional 5th
//! argument: read buffer bytes). Like the demo market in `schedule` mode, each taker order
//! publishes its trades at one instant, and symbols are spread evenly over the period.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

type Event = Arc<(String, String)>;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).map(String::as_str).unwrap_or("127.0.0.1:9300");
    let symbols: Vec<String> = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("btcusdt")
        .split(',')
        .map(str::to_string)
        .collect();
    let rate: f64 = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(1.0);
    let fills: u64 = args.get(4).and_then(|r| r.parse().ok()).unwrap_or(5);
    let read_buffer: Option<usize> = args.get(5).and_then(|r| r.parse().ok());
    let (events, _) = broadcast::channel::<Event>(65_536);
    let count = symbols.len();
    for (index, symbol) in symbols.into_iter().enumerate() {
        let phase = Duration::from_secs_f64(index as f64 / count as f64 / rate);
        tokio::spawn(publish(symbol, rate, fills, phase, events.clone()));
    }
    let listener = TcpListener::bind(addr).await.unwrap();
    eprintln!("baseline fan-out server on {addr}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let receiver = events.subscribe();
        tokio::spawn(serve(stream, receiver, read_buffer));
    }
}

/// Publishes `fills` trades for `symbol` every `1/rate` seconds (first after `phase`), on an
/// open-loop schedule; `E` is the intended publish time.
async fn publish(
    symbol: String,
    rate: f64,
    fills: u64,
    phase: Duration,
    events: broadcast::Sender<Event>,
) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let stream = format!("{symbol}@trade");
    let upper = symbol.to_uppercase();
    let start = tokio::time::Instant::now() + phase;
    let start_us = now_us() + phase.as_micros() as i64;
    let mut id = 0u64;
    for tick in 1u32.. {
        tokio::time::sleep_until(start + interval * tick).await;
        let stamp = start_us + (interval * tick).as_micros() as i64;
        for _ in 0..fills {
            id += 1;
            let data = format!(
                r#"{{"e":"trade","E":{stamp},"s":"{upper}","t":{id},"p":"67000.01000000","q":"0.01200000","T":{stamp},"m":false,"M":true}}"#
            );
            let frame = format!(r#"{{"stream":"{stream}","data":{data}}}"#);
            let _ = events.send(Arc::new((stream.clone(), frame)));
        }
    }
}

async fn serve(
    stream: TcpStream,
    mut events: broadcast::Receiver<Event>,
    read_buffer: Option<usize>,
) {
    let _ = stream.set_nodelay(true);
    let mut wanted = HashSet::new();
    // tungstenite's handshake callback type fixes the (large) error type.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        let query = request.uri().query().unwrap_or("");
        for pair in query.split('&') {
            if let Some(list) = pair.strip_prefix("streams=") {
                wanted.extend(list.split('/').map(str::to_string));
            }
        }
        Ok(response)
    };
    let config = read_buffer.map(|size| WebSocketConfig::default().read_buffer_size(size));
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, config).await
    else {
        return;
    };
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(_)) => {}
                _ => return,
            },
            event = events.recv() => {
                let mut next = event;
                loop {
                    match next {
                        Ok(event) if wanted.contains(&event.0) => {
                            if ws.feed(Message::text(event.1.clone())).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    next = match events.try_recv() {
                        Ok(event) => Ok(event),
                        Err(broadcast::error::TryRecvError::Lagged(n)) => Err(broadcast::error::RecvError::Lagged(n)),
                        Err(_) => break,
                    };
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}
