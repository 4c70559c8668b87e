//! The `demo` datasource: the built-in synthetic exchange (`docs/demo-market.md`), driven on
//! its own thread so open-loop schedules keep sub-millisecond precision.

pub mod exchange;
pub mod market;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use self::exchange::{AccountEvent, DemoAccount, DemoExchange};
use self::market::{DemoMarket, MarketConfig};
use super::{Backpressure, Dispatcher, Position, Source, SourceError, UpstreamEvent};
use crate::config::Datasource;
use crate::util::now_us;

/// Shortest sleep between market steps.
const MIN_STEP: Duration = Duration::from_micros(200);
/// Longest sleep between market steps (bounds shutdown latency).
const MAX_STEP: Duration = Duration::from_millis(50);

/// The demo market as a source.
pub struct DemoSource {
    market: DemoMarket,
    exchange: Arc<DemoExchange>,
    accounts: Vec<DemoAccount>,
}

impl DemoSource {
    /// Validates the datasource's properties and starts the market clock now.
    pub fn from_datasource(datasource: &Datasource) -> Result<Self, SourceError> {
        let config = MarketConfig::from_properties(&datasource.properties).map_err(|e| {
            SourceError::Config {
                name: datasource.name.clone(),
                message: e.to_string(),
            }
        })?;
        let accounts = exchange::accounts_of(&datasource.properties).map_err(|message| {
            SourceError::Config {
                name: datasource.name.clone(),
                message,
            }
        })?;
        Ok(DemoSource {
            market: DemoMarket::new(config, now_us()),
            exchange: exchange::exchange(&datasource.name),
            accounts,
        })
    }
}

impl Source for DemoSource {
    /// The market cannot pause: a route that falls behind loses events, the others do not.
    fn backpressure(&self) -> Backpressure {
        Backpressure::DropForSlowRoute
    }

    fn run(mut self: Box<Self>, mut dispatcher: Dispatcher, shutdown: CancellationToken) {
        let mut channels: HashMap<String, Arc<str>> = HashMap::new();
        let mut made = Vec::new();
        let mut accounts: Vec<AccountEvent> = Vec::new();
        let mut position: u64 = 0;
        let account_channel: Arc<str> = Arc::from(exchange::CHANNEL);
        let _live = self.exchange.start(&self.accounts);
        dispatcher.health().set_up();
        while !shutdown.is_cancelled() {
            let now = now_us();
            self.market.advance(now, &mut made);
            for event in &made {
                self.exchange
                    .on_market_event(&event.channel, &event.payload, now / 1000);
            }
            self.exchange.drain(now / 1000, &mut accounts);
            if !made.is_empty() || !accounts.is_empty() {
                let account_events = accounts.drain(..).map(|account| {
                    position += 1;
                    let payload = serde_json::json!({
                        "user_id": account.user_id,
                        "event": account.event,
                    });
                    UpstreamEvent {
                        channel: Arc::clone(&account_channel),
                        key: None,
                        headers: Vec::new(),
                        payload: Bytes::from(payload.to_string()),
                        timestamp_us: now,
                        position: Position::Counted(position),
                    }
                });
                let account_events: Vec<UpstreamEvent> = account_events.collect();
                let mut batch: Vec<UpstreamEvent> = made
                    .drain(..)
                    .map(|event| {
                        position += 1;
                        let channel = channels
                            .entry(event.channel)
                            .or_insert_with_key(|name| Arc::from(name.as_str()));
                        UpstreamEvent {
                            channel: Arc::clone(channel),
                            key: Some(Bytes::from(event.symbol)),
                            headers: Vec::new(),
                            payload: Bytes::from(event.payload),
                            timestamp_us: event.ts_us,
                            position: Position::Counted(position),
                        }
                    })
                    .collect();
                batch.extend(account_events);
                if !dispatcher.dispatch_blocking(batch) {
                    return;
                }
            }
            let wait_us = (self.market.next_due_us() - now_us()).max(0) as u64;
            // Parked rather than asleep: the exchange unparks the thread when a trade action
            // queues account events.
            std::thread::park_timeout(Duration::from_micros(wait_us).clamp(MIN_STEP, MAX_STEP));
        }
    }
}
