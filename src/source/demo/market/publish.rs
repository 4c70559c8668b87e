//! Writing a symbol's events as JSON (field names and order per `docs/demo-market.md`).

use super::book::{Fill, Side};
use super::candles::Candle;
use super::fixed::{begin, key, push_dec3, push_dec8, push_int, SCALE};
use super::symbol::{Kind, SymbolSim};
use super::ticker::WINDOW_MS;
use super::DemoEvent;

/// Levels per side in a `book_snapshot`.
const SNAPSHOT_LEVELS: usize = 20;

impl SymbolSim {
    pub(super) fn push_event(&self, kind: Kind, ts: i64, out: &mut Vec<DemoEvent>) {
        out.push(DemoEvent {
            channel: self.channels[kind as usize].clone(),
            symbol: self.name.clone(),
            ts_us: ts,
            payload: self.buf.clone(),
        });
    }

    #[inline]
    fn price(&self, ticks: i64) -> i128 {
        i128::from(ticks) * i128::from(self.tick)
    }

    #[inline]
    fn qty(&self, lots: i128) -> i128 {
        lots * i128::from(self.lot)
    }

    /// Quote volume (sum of ticks × lots) in 1e-8 units.
    #[inline]
    fn quote(&self, tick_lots: i128) -> i128 {
        tick_lots * i128::from(self.tick) * i128::from(self.lot) / i128::from(SCALE)
    }

    /// Publishes the `match` of one taker order and records its trades.
    pub(super) fn publish_match(
        &mut self,
        taker_id: u64,
        buy: bool,
        fills: &[Fill],
        ts: i64,
        out: &mut Vec<DemoEvent>,
    ) {
        let mut buf = std::mem::take(&mut self.buf);
        begin(&mut buf, "match", &self.name, ts);
        key(&mut buf, "taker_order_id");
        push_int(&mut buf, taker_id as i64);
        key(&mut buf, "taker_side");
        buf.extend_from_slice(if buy { b"\"BUY\"" } else { b"\"SELL\"" });
        key(&mut buf, "fills");
        buf.push(b'[');
        let mut prev_price = None;
        for (i, f) in fills.iter().enumerate() {
            if prev_price != Some(f.price) {
                self.next_agg_id += 1;
                prev_price = Some(f.price);
            }
            let trade_id = self.next_trade_id;
            self.next_trade_id += 1;
            self.second.add(trade_id, f.price, f.qty, buy);
            buf.extend_from_slice(if i == 0 {
                b"{\"trade_id\":"
            } else {
                b",{\"trade_id\":"
            });
            push_int(&mut buf, trade_id);
            key(&mut buf, "agg_id");
            push_int(&mut buf, self.next_agg_id - 1);
            key(&mut buf, "price");
            push_dec8(&mut buf, self.price(f.price));
            key(&mut buf, "qty");
            push_dec8(&mut buf, self.qty(i128::from(f.qty)));
            key(&mut buf, "maker_order_id");
            push_int(&mut buf, f.maker_order_id as i64);
            buf.push(b'}');
        }
        buf.extend_from_slice(b"]}");
        if let Some(last) = fills.last() {
            self.last_price = last.price;
            self.last_qty = last.qty;
        }
        self.buf = buf;
        self.push_event(Kind::Trade, ts, out);
    }

    /// Publishes a `bbo` if the best bid or ask (price or qty) changed since the last one.
    pub(super) fn publish_bbo(&mut self, ts: i64, out: &mut Vec<DemoEvent>) {
        let bbo = self.bbo();
        if bbo == self.last_bbo {
            return;
        }
        self.last_bbo = bbo;
        let mut buf = std::mem::take(&mut self.buf);
        begin(&mut buf, "bbo", &self.name, ts);
        key(&mut buf, "update_id");
        push_int(&mut buf, self.book.update_id() as i64);
        self.write_bbo_fields(&mut buf);
        buf.push(b'}');
        self.buf = buf;
        self.push_event(Kind::Bbo, ts, out);
    }

    fn write_bbo_fields(&self, buf: &mut Vec<u8>) {
        let [bp, bq, ap, aq] = self.bbo();
        key(buf, "bid_price");
        push_dec8(buf, self.price(bp));
        key(buf, "bid_qty");
        push_dec8(buf, self.qty(i128::from(bq)));
        key(buf, "ask_price");
        push_dec8(buf, self.price(ap));
        key(buf, "ask_qty");
        push_dec8(buf, self.qty(i128::from(aq)));
    }

    fn write_levels(&self, buf: &mut Vec<u8>, levels: impl Iterator<Item = (i64, i64)>) {
        buf.push(b'[');
        for (i, (p, q)) in levels.enumerate() {
            buf.extend_from_slice(if i == 0 { b"[" } else { b",[" });
            push_dec8(buf, self.price(p));
            buf.push(b',');
            push_dec8(buf, self.qty(i128::from(q)));
            buf.push(b']');
        }
        buf.push(b']');
    }

    /// Publishes what is due at the window boundary `t_us` (a multiple of 100 ms).
    pub(super) fn on_window(&mut self, t_us: i64, ts: i64, out: &mut Vec<DemoEvent>) {
        self.publish_delta(0, ts, out);
        self.publish_snapshot(100, ts, out);
        if t_us.rem_euclid(1_000_000) == 0 {
            self.publish_delta(1, ts, out);
            self.publish_snapshot(1000, ts, out);
            self.close_second(t_us.div_euclid(1000), ts, out);
            self.publish_mark_price(t_us.div_euclid(1000), ts, out);
        }
    }

    fn publish_delta(&mut self, series: usize, ts: i64, out: &mut Vec<DemoEvent>) {
        let mut changed = std::mem::take(&mut self.scratch);
        self.book.drain_journal(series, &mut changed);
        let last = self.book.update_id();
        if last > self.published[series] {
            let mut buf = std::mem::take(&mut self.buf);
            begin(&mut buf, "book_delta", &self.name, ts);
            key(&mut buf, "window_ms");
            buf.extend_from_slice(if series == 0 { b"100" } else { b"1000" });
            key(&mut buf, "first_update_id");
            push_int(&mut buf, self.published[series] as i64 + 1);
            key(&mut buf, "last_update_id");
            push_int(&mut buf, last as i64);
            let split = changed.partition_point(|&(side, _)| side == Side::Bid);
            let book = &self.book;
            key(&mut buf, "bids");
            let bids = changed[..split]
                .iter()
                .map(|&(s, p)| (p, book.qty_at(s, p)));
            self.write_levels(&mut buf, bids);
            key(&mut buf, "asks");
            let asks = changed[split..]
                .iter()
                .map(|&(s, p)| (p, book.qty_at(s, p)));
            self.write_levels(&mut buf, asks);
            buf.push(b'}');
            self.buf = buf;
            self.published[series] = last;
            self.push_event(Kind::Book, ts, out);
        }
        self.scratch = changed;
    }

    fn publish_snapshot(&mut self, window_ms: i64, ts: i64, out: &mut Vec<DemoEvent>) {
        let mut buf = std::mem::take(&mut self.buf);
        begin(&mut buf, "book_snapshot", &self.name, ts);
        key(&mut buf, "window_ms");
        push_int(&mut buf, window_ms);
        key(&mut buf, "last_update_id");
        push_int(&mut buf, self.book.update_id() as i64);
        key(&mut buf, "bids");
        self.write_levels(&mut buf, self.book.top(Side::Bid, SNAPSHOT_LEVELS));
        key(&mut buf, "asks");
        self.write_levels(&mut buf, self.book.top(Side::Ask, SNAPSHOT_LEVELS));
        buf.push(b'}');
        self.buf = buf;
        self.push_event(Kind::Book, ts, out);
    }

    /// Ends the second that finishes at `t_ms`: klines, then the ticker.
    fn close_second(&mut self, t_ms: i64, ts: i64, out: &mut Vec<DemoEvent>) {
        let second = std::mem::replace(&mut self.second, super::candles::Stats::EMPTY);
        self.ticker.record_second(t_ms - 1000, &second);
        for i in 0..self.candles.len() {
            self.candles[i].stats.merge(&second);
            let closed = t_ms >= self.candles[i].end_ms;
            if closed || t_ms.rem_euclid(2000) == 0 {
                self.publish_kline(i, closed, ts, out);
            }
            if closed {
                self.candles[i].roll();
            }
        }
        self.publish_ticker(t_ms, ts, out);
    }

    fn publish_kline(&mut self, i: usize, closed: bool, ts: i64, out: &mut Vec<DemoEvent>) {
        let c: &Candle = &self.candles[i];
        let s = &c.stats;
        let (o, h, l, cl) = if s.count > 0 {
            (s.open, s.high, s.low, s.close)
        } else {
            let p = self.last_price;
            (p, p, p, p)
        };
        let mut buf = std::mem::take(&mut self.buf);
        begin(&mut buf, "kline", &self.name, ts);
        key(&mut buf, "interval");
        buf.push(b'"');
        buf.extend_from_slice(c.interval.name().as_bytes());
        buf.push(b'"');
        key(&mut buf, "open_time_ms");
        push_int(&mut buf, c.open_ms);
        key(&mut buf, "close_time_ms");
        push_int(&mut buf, c.end_ms - 1);
        key(&mut buf, "first_trade_id");
        push_int(&mut buf, s.first_id);
        key(&mut buf, "last_trade_id");
        push_int(&mut buf, s.last_id);
        for (k, v) in [("open", o), ("high", h), ("low", l), ("close", cl)] {
            key(&mut buf, k);
            push_dec8(&mut buf, self.price(v));
        }
        key(&mut buf, "volume");
        push_dec8(&mut buf, self.qty(s.volume));
        key(&mut buf, "quote_volume");
        push_dec8(&mut buf, self.quote(s.quote));
        key(&mut buf, "trades");
        push_int(&mut buf, s.count);
        key(&mut buf, "taker_buy_volume");
        push_dec8(&mut buf, self.qty(s.buy_volume));
        key(&mut buf, "taker_buy_quote_volume");
        push_dec8(&mut buf, self.quote(s.buy_quote));
        key(&mut buf, "closed");
        buf.extend_from_slice(if closed { b"true}" } else { b"false}" });
        self.buf = buf;
        self.push_event(Kind::Kline, ts, out);
    }

    fn publish_ticker(&mut self, t_ms: i64, ts: i64, out: &mut Vec<DemoEvent>) {
        let (w, prev_close) = self.ticker.window(t_ms);
        let last = self.last_price;
        let (open, high, low, first_id, last_id, count) = if w.count > 0 {
            let n = w.last_id - w.first_id + 1;
            (w.open, w.high, w.low, w.first_id, w.last_id, n)
        } else {
            (last, last, last, -1, -1, 0)
        };
        let change = self.price(last) - self.price(open);
        let open_units = self.price(open);
        let pct = if open_units == 0 {
            0
        } else {
            // Thousandths of a percent, rounded half away from zero.
            let num = change * 100_000;
            (num + num.signum() * open_units / 2) / open_units
        };
        let wavg = if w.volume > 0 {
            w.quote * i128::from(self.tick) / w.volume
        } else {
            0
        };
        let mut buf = std::mem::take(&mut self.buf);
        begin(&mut buf, "ticker", &self.name, ts);
        key(&mut buf, "open_time_ms");
        push_int(&mut buf, t_ms - WINDOW_MS);
        key(&mut buf, "close_time_ms");
        push_int(&mut buf, t_ms);
        for (k, v) in [("open", open), ("high", high), ("low", low), ("last", last)] {
            key(&mut buf, k);
            push_dec8(&mut buf, self.price(v));
        }
        key(&mut buf, "last_qty");
        push_dec8(&mut buf, self.qty(i128::from(self.last_qty)));
        key(&mut buf, "prev_close");
        push_dec8(&mut buf, self.price(prev_close));
        key(&mut buf, "price_change");
        push_dec8(&mut buf, change);
        key(&mut buf, "price_change_percent");
        push_dec3(&mut buf, pct);
        key(&mut buf, "weighted_avg_price");
        push_dec8(&mut buf, wavg);
        key(&mut buf, "volume");
        push_dec8(&mut buf, self.qty(w.volume));
        key(&mut buf, "quote_volume");
        push_dec8(&mut buf, self.quote(w.quote));
        self.write_bbo_fields(&mut buf);
        key(&mut buf, "first_trade_id");
        push_int(&mut buf, first_id);
        key(&mut buf, "last_trade_id");
        push_int(&mut buf, last_id);
        key(&mut buf, "trade_count");
        push_int(&mut buf, count);
        buf.push(b'}');
        self.buf = buf;
        self.push_event(Kind::Ticker, ts, out);
    }
}
