//! The demo exchange behind the demo market: accounts with balances for the demo users and an
//! order book of their orders, matched against the market's best prices. It answers the
//! WebSocket API's trade actions (`crate::trade::demo` hands them over, in process or as the
//! NATS responder of a cluster) and publishes what they cause as upstream events of the demo
//! datasource (channel [`CHANNEL`], `{"user_id":..,"event":{..}}`), which a mapper turns into
//! the users' private events like any other.
//!
//! Each demo datasource has one exchange per process, found by the datasource's name; it is
//! live while the datasource's source runs on this node.

mod book;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Map, Value};

use book::Ledger;
pub use book::{AccountEvent, Rejected};

/// The upstream channel of account events.
pub const CHANNEL: &str = "account";

/// How often every demo account gets a small deposit (a `balanceUpdate` to watch).
const DEPOSIT_EVERY_MS: i64 = 30_000;
/// When the first deposit comes, after the market starts.
const FIRST_DEPOSIT_MS: i64 = 5_000;

/// A demo account as the datasource's `accounts` property declares it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoAccount {
    /// The user.
    pub user_id: String,
    /// Its API key (created in the key store when missing).
    pub api_key: String,
    /// Its HMAC secret.
    pub secret: String,
    /// Starting balances, asset → amount.
    #[serde(default)]
    pub balances: BTreeMap<String, String>,
}

/// The `accounts` property of a demo datasource.
pub fn accounts_of(properties: &Map<String, Value>) -> Result<Vec<DemoAccount>, String> {
    let Some(value) = properties.get("accounts") else {
        return Ok(Vec::new());
    };
    let accounts: Vec<DemoAccount> =
        serde_json::from_value(value.clone()).map_err(|e| format!("accounts: {e}"))?;
    for account in &accounts {
        for (asset, amount) in &account.balances {
            amount.parse::<Decimal>().map_err(|_| {
                format!(
                    "accounts: {}'s balance of {asset} is not a number",
                    account.user_id
                )
            })?;
        }
    }
    Ok(accounts)
}

/// One demo datasource's exchange.
#[derive(Default)]
pub struct DemoExchange {
    ledger: Mutex<Ledger>,
    events: Mutex<Vec<AccountEvent>>,
    live: AtomicBool,
    last_deposit_ms: Mutex<i64>,
    /// The market's thread, woken when a trade action queues events.
    market: Mutex<Option<std::thread::Thread>>,
}

static EXCHANGES: LazyLock<Mutex<HashMap<String, Arc<DemoExchange>>>> =
    LazyLock::new(Default::default);

/// The exchange of demo datasource `name` in this process.
pub fn exchange(name: &str) -> Arc<DemoExchange> {
    Arc::clone(EXCHANGES.lock().entry(name.to_string()).or_default())
}

/// An exchange whose market runs in this process, if any.
pub fn live_exchange() -> Option<Arc<DemoExchange>> {
    EXCHANGES.lock().values().find(|e| e.is_live()).cloned()
}

/// Keeps an exchange live while its market runs.
pub struct Running(Arc<DemoExchange>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.live.store(false, Ordering::Release);
    }
}

/// The best prices in a demo `bbo` event.
#[derive(Deserialize)]
struct Bbo<'a> {
    symbol: &'a str,
    bid_price: &'a str,
    ask_price: &'a str,
}

impl DemoExchange {
    /// Opens the accounts (existing ones keep their balances) and marks the exchange live
    /// until the returned guard is dropped. The calling thread runs the market: it is unparked
    /// whenever a trade action queues events, so they go out without waiting for the market's
    /// next step.
    pub fn start(self: &Arc<Self>, accounts: &[DemoAccount]) -> Running {
        let mut ledger = self.ledger.lock();
        for account in accounts {
            let balances = account
                .balances
                .iter()
                .filter_map(|(asset, amount)| Some((asset.clone(), amount.parse().ok()?)))
                .collect();
            ledger.open_account(&account.user_id, &balances);
        }
        drop(ledger);
        *self.market.lock() = Some(std::thread::current());
        *self.last_deposit_ms.lock() =
            crate::util::now_ms() as i64 - DEPOSIT_EVERY_MS + FIRST_DEPOSIT_MS;
        self.live.store(true, Ordering::Release);
        Running(Arc::clone(self))
    }

    /// True while its market runs in this process.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Takes in a market event: the best prices of `bbo` events move the matching.
    pub fn on_market_event(&self, channel: &str, payload: &[u8], now_ms: i64) {
        if !channel.starts_with("bbo.") {
            return;
        }
        let Ok(bbo) = serde_json::from_slice::<Bbo<'_>>(payload) else {
            return;
        };
        let (Ok(bid), Ok(ask)) = (bbo.bid_price.parse(), bbo.ask_price.parse()) else {
            return;
        };
        let events = self.ledger.lock().on_prices(bbo.symbol, bid, ask, now_ms);
        self.events.lock().extend(events);
    }

    /// Moves the events to publish into `out`, with the periodic deposits when due.
    pub fn drain(&self, now_ms: i64, out: &mut Vec<AccountEvent>) {
        {
            let mut last = self.last_deposit_ms.lock();
            if now_ms - *last >= DEPOSIT_EVERY_MS {
                *last = now_ms;
                let mut ledger = self.ledger.lock();
                for user in ledger.users() {
                    let events = ledger.deposit(&user, "USDT", Decimal::from(10), now_ms);
                    out.extend(events);
                }
            }
        }
        out.append(&mut self.events.lock());
    }

    /// Carries out a trade action of `user`: the result, or Binance's refusal.
    pub fn handle(
        &self,
        method: &str,
        user: &str,
        params: &Value,
        now_ms: i64,
    ) -> Result<Value, Rejected> {
        let mut ledger = self.ledger.lock();
        if !ledger.has_account(user) {
            return Err(Rejected::no_account());
        }
        let (result, events) = match method {
            "order.place" => ledger.place(user, params, now_ms)?,
            "order.cancel" => ledger.cancel(user, params, now_ms)?,
            "order.status" => (ledger.status(user, params, now_ms)?, Vec::new()),
            "openOrders.status" => (ledger.open_orders(user, params, now_ms), Vec::new()),
            "account.status" => (ledger.account(user, now_ms)?, Vec::new()),
            _ => return Err(Rejected(-1020, "This operation is not supported.".into())),
        };
        drop(ledger);
        if !events.is_empty() {
            self.events.lock().extend(events);
            if let Some(market) = &*self.market.lock() {
                market.unpark();
            }
        }
        Ok(result)
    }
}
