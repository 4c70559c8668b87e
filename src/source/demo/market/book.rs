//! The limit order book of one symbol: price levels with FIFO maker queues, the per-symbol update
//! id, and the journal of changed levels that the delta windows publish.
//!
//! Prices are integer ticks and quantities integer lots. Every level changed by one action takes
//! one update id.

use std::collections::VecDeque;

/// Book side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Side {
    Bid = 0,
    Ask = 1,
}

impl Side {
    pub(super) fn opposite(self) -> Side {
        match self {
            Side::Bid => Side::Ask,
            Side::Ask => Side::Bid,
        }
    }
}

/// One resting maker order.
#[derive(Debug, Clone, Copy)]
struct Order {
    id: u64,
    qty: i64,
}

/// One price level.
#[derive(Debug)]
struct Level {
    price: i64,
    qty: i64,
    orders: VecDeque<Order>,
}

/// One fill of a taker order against a maker order.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fill {
    pub maker_order_id: u64,
    pub price: i64,
    pub qty: i64,
}

/// Number of delta window series (100 ms and 1000 ms).
pub(super) const SERIES: usize = 2;

/// Levels of one side, sorted worst first so that the best level is last (cheap to pop).
#[derive(Debug, Default)]
struct SideBook {
    levels: VecDeque<Level>,
}

/// The order book of one symbol.
#[derive(Debug)]
pub(super) struct Book {
    sides: [SideBook; 2],
    update_id: u64,
    /// Per delta series, the (side, price) of every level change since the series' last event.
    journal: [Vec<(Side, i64)>; SERIES],
    spare: Vec<VecDeque<Order>>,
}

/// Sort key that grows towards the best price of the side.
#[inline]
fn key(side: Side, price: i64) -> i64 {
    match side {
        Side::Bid => price,
        Side::Ask => -price,
    }
}

impl Book {
    /// An empty book whose last update id is `update_id`.
    pub(super) fn new(update_id: u64) -> Self {
        Self {
            sides: [SideBook::default(), SideBook::default()],
            update_id,
            journal: [Vec::new(), Vec::new()],
            spare: Vec::new(),
        }
    }

    /// The id of the last change.
    pub(super) fn update_id(&self) -> u64 {
        self.update_id
    }

    /// Number of levels on `side`.
    pub(super) fn len(&self, side: Side) -> usize {
        self.sides[side as usize].levels.len()
    }

    /// Best (price, qty) of `side`.
    pub(super) fn best(&self, side: Side) -> Option<(i64, i64)> {
        self.sides[side as usize]
            .levels
            .back()
            .map(|l| (l.price, l.qty))
    }

    /// Worst price of `side`.
    pub(super) fn deepest(&self, side: Side) -> Option<i64> {
        self.sides[side as usize].levels.front().map(|l| l.price)
    }

    /// Price of the level `n` places from the best one (0 = best).
    pub(super) fn price_from_top(&self, side: Side, n: usize) -> i64 {
        let levels = &self.sides[side as usize].levels;
        levels[levels.len() - 1 - n].price
    }

    /// Number of orders at the level `n` places from the best one.
    pub(super) fn orders_from_top(&self, side: Side, n: usize) -> usize {
        let levels = &self.sides[side as usize].levels;
        levels[levels.len() - 1 - n].orders.len()
    }

    /// The best `n` levels of `side`, best first, as (price, qty).
    pub(super) fn top(&self, side: Side, n: usize) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.sides[side as usize]
            .levels
            .iter()
            .rev()
            .take(n)
            .map(|l| (l.price, l.qty))
    }

    /// Quantity resting at `price` on `side` (0 when there is no level).
    pub(super) fn qty_at(&self, side: Side, price: i64) -> i64 {
        let levels = &self.sides[side as usize].levels;
        match levels.binary_search_by_key(&key(side, price), |l| key(side, l.price)) {
            Ok(i) => levels[i].qty,
            Err(_) => 0,
        }
    }

    #[inline]
    fn touch(journal: &mut [Vec<(Side, i64)>; SERIES], id: &mut u64, side: Side, price: i64) {
        *id += 1;
        for j in journal.iter_mut() {
            j.push((side, price));
        }
    }

    /// Adds maker orders at `price` (appended to the level's queue, creating the level if needed):
    /// one level change.
    pub(super) fn add(
        &mut self,
        side: Side,
        price: i64,
        orders: impl IntoIterator<Item = (u64, i64)>,
    ) {
        let sb = &mut self.sides[side as usize];
        let idx = match sb
            .levels
            .binary_search_by_key(&key(side, price), |l| key(side, l.price))
        {
            Ok(i) => i,
            Err(i) => {
                let orders = self.spare.pop().unwrap_or_default();
                sb.levels.insert(
                    i,
                    Level {
                        price,
                        qty: 0,
                        orders,
                    },
                );
                i
            }
        };
        let level = &mut sb.levels[idx];
        for (id, qty) in orders {
            debug_assert!(qty > 0);
            level.qty += qty;
            level.orders.push_back(Order { id, qty });
        }
        debug_assert!(level.qty > 0);
        Self::touch(&mut self.journal, &mut self.update_id, side, price);
    }

    /// Cancels order `pos` of the level `n` places from the best one: one level change.
    pub(super) fn cancel(&mut self, side: Side, n: usize, pos: usize) {
        let sb = &mut self.sides[side as usize];
        let idx = sb.levels.len() - 1 - n;
        let level = &mut sb.levels[idx];
        let order = level.orders.remove(pos).expect("order position in range");
        level.qty -= order.qty;
        let price = level.price;
        if level.orders.is_empty() {
            let l = sb.levels.remove(idx).expect("level exists");
            self.spare.push(l.orders);
        }
        Self::touch(&mut self.journal, &mut self.update_id, side, price);
    }

    /// Removes the worst level of `side` with all its orders: one level change.
    pub(super) fn remove_deepest(&mut self, side: Side) {
        let sb = &mut self.sides[side as usize];
        let Some(mut l) = sb.levels.pop_front() else {
            return;
        };
        l.orders.clear();
        self.spare.push(l.orders);
        Self::touch(&mut self.journal, &mut self.update_id, side, l.price);
    }

    /// Matches a taker order of `qty` lots against the makers of `maker_side`, best level first,
    /// touching at most `max_levels` levels; appends the fills to `fills` (cleared first).
    pub(super) fn take(
        &mut self,
        maker_side: Side,
        qty: i64,
        max_levels: usize,
        fills: &mut Vec<Fill>,
    ) {
        fills.clear();
        let sb = &mut self.sides[maker_side as usize];
        let mut remaining = qty;
        let mut touched = 0;
        while remaining > 0 && touched < max_levels {
            let Some(level) = sb.levels.back_mut() else {
                break;
            };
            touched += 1;
            while remaining > 0 {
                let Some(order) = level.orders.front_mut() else {
                    break;
                };
                let q = order.qty.min(remaining);
                fills.push(Fill {
                    maker_order_id: order.id,
                    price: level.price,
                    qty: q,
                });
                order.qty -= q;
                level.qty -= q;
                remaining -= q;
                if order.qty == 0 {
                    level.orders.pop_front();
                }
            }
            let price = level.price;
            if level.orders.is_empty() {
                let l = sb.levels.pop_back().expect("level exists");
                self.spare.push(l.orders);
            }
            Self::touch(&mut self.journal, &mut self.update_id, maker_side, price);
        }
    }

    /// Takes the journal of delta series `series`, sorted for publication (bids by price
    /// descending, then asks ascending) without duplicates; `out` is cleared first.
    pub(super) fn drain_journal(&mut self, series: usize, out: &mut Vec<(Side, i64)>) {
        out.clear();
        std::mem::swap(out, &mut self.journal[series]);
        out.sort_unstable_by_key(|&(side, price)| (side, key(side, price).wrapping_neg()));
        out.dedup();
    }

    /// All levels of `side`, best first (for tests).
    #[cfg(test)]
    pub(super) fn levels(&self, side: Side) -> Vec<(i64, i64)> {
        self.top(side, usize::MAX).collect()
    }

    /// Checks the internal invariants (for tests): sorted sides, level qty = sum of orders,
    /// no empty level, no crossed book.
    #[cfg(test)]
    pub(super) fn check(&self) {
        for side in [Side::Bid, Side::Ask] {
            let levels = &self.sides[side as usize].levels;
            for (a, b) in levels.iter().zip(levels.iter().skip(1)) {
                assert!(key(side, a.price) < key(side, b.price), "side not sorted");
            }
            for l in levels {
                assert!(!l.orders.is_empty() && l.qty > 0 && l.price > 0);
                assert_eq!(l.qty, l.orders.iter().map(|o| o.qty).sum::<i64>());
            }
        }
        if let (Some((b, _)), Some((a, _))) = (self.best(Side::Bid), self.best(Side::Ask)) {
            assert!(b < a, "crossed book: bid {b} ask {a}");
        }
    }
}
