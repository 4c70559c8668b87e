//! The demo exchange's ledger: accounts and their balances, and orders, matched against the
//! demo market's best prices. Every change yields the user-data events Binance sends
//! (`executionReport`, `outboundAccountPosition`, `balanceUpdate`).

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::api_error;
use crate::auth::AuthError;

/// One user-data event for one user, as the exchange publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountEvent {
    /// The user.
    pub user_id: String,
    /// The Binance payload.
    pub event: Value,
}

/// Why an order was refused: Binance's code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected(pub i32, pub String);

impl Rejected {
    fn missing(name: &str) -> Self {
        let (code, msg) = api_error::missing_parameter(name);
        Rejected(code, msg)
    }

    /// The key's user has no account here: Binance's `-2015`.
    pub(super) fn no_account() -> Self {
        Rejected(AuthError::Refused.code(), AuthError::Refused.to_string())
    }
}

/// An asset's balance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Balance {
    /// Available.
    pub free: Decimal,
    /// Held by open orders.
    pub locked: Decimal,
}

/// An order as the exchange keeps it.
#[derive(Debug, Clone)]
pub struct Order {
    user_id: String,
    symbol: String,
    id: u64,
    client_id: String,
    side: Side,
    kind: Kind,
    price: Decimal,
    quantity: Decimal,
    executed: Decimal,
    quote_executed: Decimal,
    status: &'static str,
    created_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Buy,
    Sell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Market,
    Limit,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
}

fn dec(value: Decimal) -> String {
    format!("{value:.8}")
}

/// Accounts, orders and the last best prices.
#[derive(Default)]
pub struct Ledger {
    accounts: HashMap<String, BTreeMap<String, Balance>>,
    orders: BTreeMap<u64, Order>,
    /// Symbol → (best bid, best ask).
    prices: HashMap<String, (Decimal, Decimal)>,
    next_order: u64,
    next_trade: u64,
}

/// The base and quote assets of a demo symbol (`BTCUSDT` → `BTC`, `USDT`).
fn assets(symbol: &str) -> Option<(&str, &str)> {
    let base = symbol.strip_suffix("USDT")?;
    (!base.is_empty()).then_some((base, "USDT"))
}

impl Ledger {
    /// Opens `user`'s account with `balances` (kept if it exists).
    pub fn open_account(&mut self, user: &str, balances: &BTreeMap<String, Decimal>) {
        self.accounts.entry(user.to_string()).or_insert_with(|| {
            balances
                .iter()
                .map(|(asset, free)| {
                    let balance = Balance {
                        free: *free,
                        locked: Decimal::ZERO,
                    };
                    (asset.clone(), balance)
                })
                .collect()
        });
    }

    /// True when `user` has an account.
    pub fn has_account(&self, user: &str) -> bool {
        self.accounts.contains_key(user)
    }

    /// The users with accounts.
    pub fn users(&self) -> Vec<String> {
        self.accounts.keys().cloned().collect()
    }

    /// Records the best prices of `symbol`; fills resting orders they cross.
    pub fn on_prices(
        &mut self,
        symbol: &str,
        bid: Decimal,
        ask: Decimal,
        now_ms: i64,
    ) -> Vec<AccountEvent> {
        self.prices.insert(symbol.to_string(), (bid, ask));
        let crossed: Vec<u64> = self
            .orders
            .values()
            .filter(|o| o.symbol == symbol && o.status == "NEW")
            .filter(|o| match o.side {
                Side::Buy => ask <= o.price,
                Side::Sell => bid >= o.price,
            })
            .map(|o| o.id)
            .collect();
        let mut events = Vec::new();
        for id in crossed {
            let price = self.orders[&id].price;
            events.extend(self.fill(id, price, now_ms));
        }
        events
    }

    /// A deposit of `amount` of `asset` to `user` (a `balanceUpdate`, then the position).
    pub fn deposit(
        &mut self,
        user: &str,
        asset: &str,
        amount: Decimal,
        now_ms: i64,
    ) -> Vec<AccountEvent> {
        let Some(account) = self.accounts.get_mut(user) else {
            return Vec::new();
        };
        account.entry(asset.to_string()).or_default().free += amount;
        vec![
            AccountEvent {
                user_id: user.to_string(),
                event: json!({"e": "balanceUpdate", "E": now_ms, "a": asset, "d": dec(amount), "T": now_ms}),
            },
            self.position(user, &[asset], now_ms),
        ]
    }

    fn position(&self, user: &str, changed: &[&str], now_ms: i64) -> AccountEvent {
        let account = &self.accounts[user];
        let balances: Vec<Value> = changed
            .iter()
            .map(|asset| {
                let b = account.get(*asset).copied().unwrap_or_default();
                json!({"a": asset, "f": dec(b.free), "l": dec(b.locked)})
            })
            .collect();
        AccountEvent {
            user_id: user.to_string(),
            event: json!({"e": "outboundAccountPosition", "E": now_ms, "u": now_ms, "B": balances}),
        }
    }

    /// Places an order for `user` from Binance's `order.place` params; the REST order object
    /// and the events it caused.
    pub fn place(
        &mut self,
        user: &str,
        params: &Value,
        now_ms: i64,
    ) -> Result<(Value, Vec<AccountEvent>), Rejected> {
        let text = |name: &str| {
            params.get(name).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let number = |name: &str| -> Result<Decimal, Rejected> {
            text(name)
                .and_then(|t| t.parse::<Decimal>().ok())
                .filter(|d| *d > Decimal::ZERO)
                .ok_or_else(|| Rejected::missing(name))
        };
        let symbol = text("symbol").ok_or_else(|| Rejected::missing("symbol"))?;
        let (base, quote) = assets(&symbol)
            .filter(|_| self.prices.contains_key(&symbol))
            .ok_or_else(|| Rejected(-1121, "Invalid symbol.".into()))?;
        let (base, quote) = (base.to_string(), quote.to_string());
        let side = match text("side").as_deref() {
            Some("BUY") => Side::Buy,
            Some("SELL") => Side::Sell,
            _ => return Err(Rejected::missing("side")),
        };
        let kind = match text("type").as_deref() {
            Some("MARKET") => Kind::Market,
            Some("LIMIT") => Kind::Limit,
            Some(_) => return Err(Rejected(-1116, "Invalid orderType.".into())),
            None => return Err(Rejected::missing("type")),
        };
        let quantity = number("quantity")?;
        let (bid, ask) = self.prices[&symbol];
        let touch = if side == Side::Buy { ask } else { bid };
        let price = match kind {
            Kind::Market => touch,
            Kind::Limit => number("price")?,
        };
        // What the order holds until it fills: quote for a buy, base for a sell.
        let (held_asset, held) = match side {
            Side::Buy => (quote.as_str(), price * quantity),
            Side::Sell => (base.as_str(), quantity),
        };
        let account = self.accounts.get_mut(user).ok_or_else(|| {
            Rejected(
                -2010,
                "Account has insufficient balance for requested action.".into(),
            )
        })?;
        let balance = account.entry(held_asset.to_string()).or_default();
        if balance.free < held {
            return Err(Rejected(
                -2010,
                "Account has insufficient balance for requested action.".into(),
            ));
        }
        balance.free -= held;
        balance.locked += held;
        self.next_order += 1;
        let id = self.next_order;
        let client_id = text("newClientOrderId").unwrap_or_else(|| format!("demo-{id}"));
        self.orders.insert(
            id,
            Order {
                user_id: user.to_string(),
                symbol: symbol.clone(),
                id,
                client_id,
                side,
                kind,
                price,
                quantity,
                executed: Decimal::ZERO,
                quote_executed: Decimal::ZERO,
                status: "NEW",
                created_ms: now_ms,
            },
        );
        let mut events = vec![
            self.report(id, "NEW", Decimal::ZERO, Decimal::ZERO, now_ms),
            self.position(user, &[held_asset], now_ms),
        ];
        let marketable = match side {
            Side::Buy => touch <= price,
            Side::Sell => touch >= price,
        };
        if kind == Kind::Market || marketable {
            events.extend(self.fill(id, touch, now_ms));
        }
        Ok((self.order_json(&self.orders[&id], now_ms), events))
    }

    /// Fills order `id` whole at `price`.
    fn fill(&mut self, id: u64, price: Decimal, now_ms: i64) -> Vec<AccountEvent> {
        let order = self.orders.get_mut(&id).expect("a known order");
        let (base, quote) = assets(&order.symbol).expect("a demo symbol");
        let (base, quote) = (base.to_string(), quote.to_string());
        let quantity = order.quantity;
        let cost = price * quantity;
        order.executed = quantity;
        order.quote_executed = cost;
        order.status = "FILLED";
        let (side, held_price, user) = (order.side, order.price, order.user_id.clone());
        let account = self
            .accounts
            .get_mut(&user)
            .expect("orders belong to accounts");
        match side {
            Side::Buy => {
                let held = held_price * quantity;
                let q = account.entry(quote.clone()).or_default();
                q.locked -= held;
                q.free += held - cost;
                account.entry(base.clone()).or_default().free += quantity;
            }
            Side::Sell => {
                account.entry(base.clone()).or_default().locked -= quantity;
                account.entry(quote.clone()).or_default().free += cost;
            }
        }
        self.next_trade += 1;
        vec![
            self.report(id, "TRADE", quantity, price, now_ms),
            self.position(&user, &[&base, &quote], now_ms),
        ]
    }

    /// Cancels `user`'s open order named by `orderId` or `origClientOrderId`.
    pub fn cancel(
        &mut self,
        user: &str,
        params: &Value,
        now_ms: i64,
    ) -> Result<(Value, Vec<AccountEvent>), Rejected> {
        let id = self
            .find(user, params)
            .ok_or_else(|| Rejected(-2011, "Unknown order sent.".into()))?;
        let order = self.orders.get_mut(&id).expect("found");
        if order.status != "NEW" {
            return Err(Rejected(-2011, "Unknown order sent.".into()));
        }
        order.status = "CANCELED";
        let (base, quote) = assets(&order.symbol).expect("a demo symbol");
        let (asset, held) = match order.side {
            Side::Buy => (quote.to_string(), order.price * order.quantity),
            Side::Sell => (base.to_string(), order.quantity),
        };
        let balance = self
            .accounts
            .get_mut(user)
            .expect("orders belong to accounts")
            .entry(asset.clone())
            .or_default();
        balance.locked -= held;
        balance.free += held;
        let events = vec![
            self.report(id, "CANCELED", Decimal::ZERO, Decimal::ZERO, now_ms),
            self.position(user, &[&asset], now_ms),
        ];
        Ok((self.order_json(&self.orders[&id], now_ms), events))
    }

    /// `user`'s order named by `orderId` or `origClientOrderId`.
    pub fn status(&self, user: &str, params: &Value, now_ms: i64) -> Result<Value, Rejected> {
        let id = self
            .find(user, params)
            .ok_or_else(|| Rejected(-2013, "Order does not exist.".into()))?;
        Ok(self.order_json(&self.orders[&id], now_ms))
    }

    /// `user`'s open orders (of `symbol`, if given).
    pub fn open_orders(&self, user: &str, params: &Value, now_ms: i64) -> Value {
        let symbol = params.get("symbol").and_then(Value::as_str);
        Value::Array(
            self.orders
                .values()
                .filter(|o| o.user_id == user && o.status == "NEW")
                .filter(|o| symbol.is_none_or(|s| s == o.symbol))
                .map(|o| self.order_json(o, now_ms))
                .collect(),
        )
    }

    /// `user`'s account: balances and permissions.
    pub fn account(&self, user: &str, now_ms: i64) -> Result<Value, Rejected> {
        let account = self.accounts.get(user).ok_or_else(Rejected::no_account)?;
        let balances: Vec<Value> = account
            .iter()
            .map(|(asset, b)| json!({"asset": asset, "free": dec(b.free), "locked": dec(b.locked)}))
            .collect();
        Ok(json!({
            "makerCommission": 0, "takerCommission": 0, "buyerCommission": 0,
            "sellerCommission": 0, "canTrade": true, "canWithdraw": false, "canDeposit": true,
            "brokered": false, "requireSelfTradePrevention": false, "preventSor": false,
            "updateTime": now_ms, "accountType": "SPOT", "balances": balances,
            "permissions": ["SPOT"],
        }))
    }

    fn find(&self, user: &str, params: &Value) -> Option<u64> {
        let by_id = params
            .get("orderId")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
        let by_client = params.get("origClientOrderId").and_then(Value::as_str);
        self.orders
            .values()
            .find(|o| {
                o.user_id == user
                    && (by_id == Some(o.id) || by_client == Some(o.client_id.as_str()))
            })
            .map(|o| o.id)
    }

    fn order_json(&self, o: &Order, now_ms: i64) -> Value {
        json!({
            "symbol": o.symbol, "orderId": o.id, "orderListId": -1, "clientOrderId": o.client_id,
            "transactTime": now_ms, "price": dec(if o.kind == Kind::Market { Decimal::ZERO } else { o.price }),
            "origQty": dec(o.quantity), "executedQty": dec(o.executed),
            "cummulativeQuoteQty": dec(o.quote_executed), "status": o.status,
            "timeInForce": "GTC", "type": if o.kind == Kind::Market { "MARKET" } else { "LIMIT" },
            "side": o.side.name(), "workingTime": o.created_ms, "selfTradePreventionMode": "NONE",
        })
    }

    /// An `executionReport` of order `id`: execution type `x`, last fill `last_qty` at `last_price`.
    fn report(
        &self,
        id: u64,
        x: &str,
        last_qty: Decimal,
        last_price: Decimal,
        now_ms: i64,
    ) -> AccountEvent {
        let o = &self.orders[&id];
        let (_, quote) = assets(&o.symbol).expect("a demo symbol");
        let trade_id = if x == "TRADE" {
            self.next_trade as i64
        } else {
            -1
        };
        AccountEvent {
            user_id: o.user_id.clone(),
            event: json!({
                "e": "executionReport", "E": now_ms, "s": o.symbol, "c": o.client_id,
                "S": o.side.name(), "o": if o.kind == Kind::Market { "MARKET" } else { "LIMIT" },
                "f": "GTC", "q": dec(o.quantity),
                "p": dec(if o.kind == Kind::Market { Decimal::ZERO } else { o.price }),
                "P": "0.00000000", "F": "0.00000000", "g": -1, "C": "", "x": x, "X": o.status,
                "r": "NONE", "i": o.id, "l": dec(last_qty), "z": dec(o.executed),
                "L": dec(last_price), "n": "0", "N": if x == "TRADE" { Value::from(quote) } else { Value::Null },
                "T": now_ms, "t": trade_id, "I": o.id * 2 + u64::from(x == "TRADE"),
                "w": o.status == "NEW", "m": false, "M": x == "TRADE", "O": o.created_ms,
                "Z": dec(o.quote_executed), "Y": dec(last_qty * last_price), "Q": "0.00000000",
                "W": o.created_ms, "V": "NONE",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        let mut ledger = Ledger::default();
        let funds: BTreeMap<String, Decimal> = [
            ("USDT".to_string(), Decimal::from(100_000)),
            ("BTC".to_string(), Decimal::ONE),
        ]
        .into();
        ledger.open_account("alice", &funds);
        ledger.on_prices("BTCUSDT", Decimal::from(66_990), Decimal::from(67_000), 1);
        ledger
    }

    fn balance(ledger: &Ledger, asset: &str) -> Balance {
        ledger.accounts["alice"][asset]
    }

    #[test]
    fn a_market_buy_fills_at_the_ask_and_moves_both_balances() {
        let mut ledger = ledger();
        let params = json!({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.5", "newClientOrderId": "c1"});
        let (order, events) = ledger.place("alice", &params, 10).unwrap();
        assert_eq!(order["status"], "FILLED");
        assert_eq!(order["cummulativeQuoteQty"], "33500.00000000");
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.event["e"].clone(), e.event["x"].clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                (json!("executionReport"), json!("NEW")),
                (json!("outboundAccountPosition"), Value::Null),
                (json!("executionReport"), json!("TRADE")),
                (json!("outboundAccountPosition"), Value::Null),
            ]
        );
        assert_eq!(balance(&ledger, "USDT").free, Decimal::from(66_500));
        assert_eq!(balance(&ledger, "USDT").locked, Decimal::ZERO);
        assert_eq!(balance(&ledger, "BTC").free, Decimal::new(15, 1));
    }

    #[test]
    fn a_resting_limit_order_fills_when_the_market_crosses_it_or_is_canceled() {
        let mut ledger = ledger();
        let params = json!({"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "quantity": "0.4", "price": "67100"});
        let (order, _) = ledger.place("alice", &params, 10).unwrap();
        assert_eq!(order["status"], "NEW");
        assert_eq!(balance(&ledger, "BTC").locked, Decimal::new(4, 1));
        assert!(ledger
            .on_prices("BTCUSDT", Decimal::from(67_050), Decimal::from(67_060), 11)
            .is_empty());
        let filled = ledger.on_prices("BTCUSDT", Decimal::from(67_100), Decimal::from(67_110), 12);
        assert_eq!(filled[0].event["X"], "FILLED");
        assert_eq!(
            balance(&ledger, "USDT").free,
            Decimal::from(100_000 + 26_840)
        );

        let params = json!({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "60000"});
        let (order, _) = ledger.place("alice", &params, 13).unwrap();
        let id = order["orderId"].clone();
        assert_eq!(
            ledger
                .open_orders("alice", &json!({}), 14)
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let (canceled, _) = ledger.cancel("alice", &json!({"orderId": id}), 15).unwrap();
        assert_eq!(canceled["status"], "CANCELED");
        assert_eq!(balance(&ledger, "USDT").locked, Decimal::ZERO);
        assert_eq!(
            ledger
                .cancel("alice", &json!({"orderId": id}), 16)
                .unwrap_err()
                .0,
            -2011
        );
        assert_eq!(
            ledger
                .cancel("bob", &json!({"orderId": id}), 16)
                .unwrap_err()
                .0,
            -2011
        );
    }

    #[test]
    fn refusals_carry_binances_codes() {
        let mut ledger = ledger();
        let too_big =
            json!({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "100"});
        assert_eq!(ledger.place("alice", &too_big, 1).unwrap_err().0, -2010);
        let unknown =
            json!({"symbol": "DOGEUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"});
        assert_eq!(ledger.place("alice", &unknown, 1).unwrap_err().0, -1121);
        let no_qty = json!({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"});
        assert_eq!(ledger.place("alice", &no_qty, 1).unwrap_err().0, -1102);
        assert_eq!(
            ledger
                .status("alice", &json!({"orderId": 99}), 1)
                .unwrap_err()
                .0,
            -2013
        );
    }
}
