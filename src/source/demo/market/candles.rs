//! Trade statistics (OHLCV accumulators), kline intervals aligned to the UTC calendar, and the
//! current candle of each interval.

const SEC_MS: i64 = 1_000;
const MIN_MS: i64 = 60 * SEC_MS;
const HOUR_MS: i64 = 60 * MIN_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A kline interval, as named in Binance streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KlineInterval {
    /// `1s`
    S1,
    /// `1m`
    M1,
    /// `3m`
    M3,
    /// `5m`
    M5,
    /// `15m`
    M15,
    /// `30m`
    M30,
    /// `1h`
    H1,
    /// `2h`
    H2,
    /// `4h`
    H4,
    /// `6h`
    H6,
    /// `8h`
    H8,
    /// `12h`
    H12,
    /// `1d`
    D1,
    /// `3d` (aligned to the epoch, like Binance)
    D3,
    /// `1w` (starts Monday 00:00 UTC)
    W1,
    /// `1M` (starts on the 1st of the month, 00:00 UTC)
    Mo1,
}

impl KlineInterval {
    /// All intervals, shortest first.
    pub const ALL: [KlineInterval; 16] = [
        Self::S1,
        Self::M1,
        Self::M3,
        Self::M5,
        Self::M15,
        Self::M30,
        Self::H1,
        Self::H2,
        Self::H4,
        Self::H6,
        Self::H8,
        Self::H12,
        Self::D1,
        Self::D3,
        Self::W1,
        Self::Mo1,
    ];

    /// The Binance name, e.g. `"1m"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::S1 => "1s",
            Self::M1 => "1m",
            Self::M3 => "3m",
            Self::M5 => "5m",
            Self::M15 => "15m",
            Self::M30 => "30m",
            Self::H1 => "1h",
            Self::H2 => "2h",
            Self::H4 => "4h",
            Self::H6 => "6h",
            Self::H8 => "8h",
            Self::H12 => "12h",
            Self::D1 => "1d",
            Self::D3 => "3d",
            Self::W1 => "1w",
            Self::Mo1 => "1M",
        }
    }

    /// Parses a Binance interval name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.name() == s)
    }

    /// Fixed length in ms (none for `1M`).
    fn fixed_ms(self) -> Option<i64> {
        Some(match self {
            Self::S1 => SEC_MS,
            Self::M1 => MIN_MS,
            Self::M3 => 3 * MIN_MS,
            Self::M5 => 5 * MIN_MS,
            Self::M15 => 15 * MIN_MS,
            Self::M30 => 30 * MIN_MS,
            Self::H1 => HOUR_MS,
            Self::H2 => 2 * HOUR_MS,
            Self::H4 => 4 * HOUR_MS,
            Self::H6 => 6 * HOUR_MS,
            Self::H8 => 8 * HOUR_MS,
            Self::H12 => 12 * HOUR_MS,
            Self::D1 => DAY_MS,
            Self::D3 => 3 * DAY_MS,
            Self::W1 => 7 * DAY_MS,
            Self::Mo1 => return None,
        })
    }

    /// Open time (ms) of the interval containing `t_ms`.
    pub fn open_of(self, t_ms: i64) -> i64 {
        match self {
            // 1970-01-05 was a Monday.
            Self::W1 => (t_ms - 4 * DAY_MS).div_euclid(7 * DAY_MS) * 7 * DAY_MS + 4 * DAY_MS,
            Self::Mo1 => {
                let (y, m, _) = civil_from_days(t_ms.div_euclid(DAY_MS));
                days_from_civil(y, m, 1) * DAY_MS
            }
            _ => {
                let len = self.fixed_ms().expect("fixed interval");
                t_ms.div_euclid(len) * len
            }
        }
    }

    /// Open time (ms) of the interval after the one opening at `open_ms`.
    pub fn next_open(self, open_ms: i64) -> i64 {
        match self.fixed_ms() {
            Some(len) => open_ms + len,
            None => {
                let (y, m, _) = civil_from_days(open_ms.div_euclid(DAY_MS));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * DAY_MS
            }
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Date (year, month, day) of a day number since 1970-01-01.
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Trade statistics over a period: prices in ticks, volumes in lots, quote volumes in
/// tick×lot products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stats {
    /// First trade id, or -1 without trades.
    pub first_id: i64,
    /// Last trade id, or -1 without trades.
    pub last_id: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub count: i64,
    pub volume: i128,
    pub quote: i128,
    pub buy_volume: i128,
    pub buy_quote: i128,
}

impl Stats {
    /// No trades.
    pub(super) const EMPTY: Stats = Stats {
        first_id: -1,
        last_id: -1,
        open: 0,
        high: 0,
        low: 0,
        close: 0,
        count: 0,
        volume: 0,
        quote: 0,
        buy_volume: 0,
        buy_quote: 0,
    };

    /// Adds one trade.
    #[inline]
    pub(super) fn add(&mut self, id: i64, price: i64, qty: i64, taker_buy: bool) {
        if self.count == 0 {
            self.first_id = id;
            self.open = price;
            self.high = price;
            self.low = price;
        } else {
            self.high = self.high.max(price);
            self.low = self.low.min(price);
        }
        self.last_id = id;
        self.close = price;
        self.count += 1;
        let q = i128::from(qty);
        let pq = i128::from(price) * q;
        self.volume += q;
        self.quote += pq;
        if taker_buy {
            self.buy_volume += q;
            self.buy_quote += pq;
        }
    }

    /// Appends `later`, the statistics of the following period.
    pub(super) fn merge(&mut self, later: &Stats) {
        if later.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *later;
            return;
        }
        self.high = self.high.max(later.high);
        self.low = self.low.min(later.low);
        self.close = later.close;
        self.last_id = later.last_id;
        self.count += later.count;
        self.volume += later.volume;
        self.quote += later.quote;
        self.buy_volume += later.buy_volume;
        self.buy_quote += later.buy_quote;
    }
}

/// The current candle of one interval.
#[derive(Debug, Clone)]
pub(super) struct Candle {
    pub interval: KlineInterval,
    pub open_ms: i64,
    /// Open time of the next candle (close time + 1 ms).
    pub end_ms: i64,
    pub stats: Stats,
}

impl Candle {
    /// The empty candle containing `t_ms`.
    pub(super) fn at(interval: KlineInterval, t_ms: i64) -> Self {
        let open_ms = interval.open_of(t_ms);
        Self {
            interval,
            open_ms,
            end_ms: interval.next_open(open_ms),
            stats: Stats::EMPTY,
        }
    }

    /// Replaces this candle with the (empty) next one.
    pub(super) fn roll(&mut self) {
        self.open_ms = self.end_ms;
        self.end_ms = self.interval.next_open(self.open_ms);
        self.stats = Stats::EMPTY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_alignment() {
        for d in [-800_000, -1, 0, 1, 19_000, 20_454, 800_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2026-02-01T12:00:00Z
        let t = days_from_civil(2026, 2, 1) * DAY_MS + 12 * HOUR_MS;
        let mo = KlineInterval::Mo1;
        assert_eq!(mo.open_of(t), days_from_civil(2026, 2, 1) * DAY_MS);
        assert_eq!(
            mo.next_open(mo.open_of(t)),
            days_from_civil(2026, 3, 1) * DAY_MS
        );
        let dec = days_from_civil(2025, 12, 1) * DAY_MS;
        assert_eq!(mo.next_open(dec), days_from_civil(2026, 1, 1) * DAY_MS);
        // 2026-01-26 is a Monday.
        assert_eq!(
            KlineInterval::W1.open_of(t),
            days_from_civil(2026, 1, 26) * DAY_MS
        );
        assert_eq!(KlineInterval::H4.open_of(t + 5 * HOUR_MS), t + 4 * HOUR_MS);
    }
}
