//! Per-stream sequence checks: lost ids and duplicates / out-of-order events.

/// Which id a stream's events carry, derived from the stream name.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SeqKind {
    /// `<s>@trade`: trade id `t`, contiguous.
    Trade,
    /// `<s>@aggTrade`: aggregate trade id `a`, contiguous.
    AggTrade,
    /// `<s>@depth` / `<s>@depth@100ms`: `U` must be the previous `u` + 1.
    DiffDepth,
    /// Anything else: no sequence check.
    Unchecked,
}

impl SeqKind {
    /// Classifies a stream name.
    pub fn of(stream: &str) -> SeqKind {
        let event = match stream.split_once('@') {
            Some((_, rest)) => rest,
            None => return SeqKind::Unchecked,
        };
        match event {
            "trade" => SeqKind::Trade,
            "aggTrade" => SeqKind::AggTrade,
            "depth" | "depth@100ms" | "depth@1000ms" => SeqKind::DiffDepth,
            _ => SeqKind::Unchecked,
        }
    }
}

/// Outcome of one observation.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Ids skipped between the previous event and this one.
    pub lost: u64,
    /// 1 when this event repeats or precedes ids already seen.
    pub dup: u64,
}

/// Tracks the last id of one stream on one connection.
#[derive(Clone, Debug)]
pub struct GapTracker {
    kind: SeqKind,
    last: Option<u64>,
}

impl GapTracker {
    /// A tracker with no baseline yet; the first event only sets it.
    pub fn new(kind: SeqKind) -> Self {
        GapTracker { kind, last: None }
    }

    /// The kind this tracker checks.
    pub fn kind(&self) -> SeqKind {
        self.kind
    }

    /// Observes a single-id event (`t` or `a`).
    pub fn observe_id(&mut self, id: u64) -> Verdict {
        self.observe_range(id, id)
    }

    /// Observes an event covering ids `first..=last` (`U`..=`u`; both equal for trades).
    pub fn observe_range(&mut self, first: u64, last: u64) -> Verdict {
        let last = last.max(first);
        let Some(prev) = self.last else {
            self.last = Some(last);
            return Verdict::default();
        };
        let expected = prev.saturating_add(1);
        if first == expected {
            self.last = Some(last);
            Verdict::default()
        } else if first > expected {
            self.last = Some(last);
            Verdict {
                lost: first - expected,
                dup: 0,
            }
        } else {
            // Repeated or reordered: keep the high-water mark, count once.
            self.last = Some(prev.max(last));
            Verdict { lost: 0, dup: 1 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(SeqKind::of("btcusdt@trade"), SeqKind::Trade);
        assert_eq!(SeqKind::of("btcusdt@aggTrade"), SeqKind::AggTrade);
        assert_eq!(SeqKind::of("btcusdt@depth"), SeqKind::DiffDepth);
        assert_eq!(SeqKind::of("btcusdt@depth@100ms"), SeqKind::DiffDepth);
        assert_eq!(SeqKind::of("btcusdt@depth5"), SeqKind::Unchecked);
        assert_eq!(SeqKind::of("btcusdt@depth20@100ms"), SeqKind::Unchecked);
        assert_eq!(SeqKind::of("btcusdt@bookTicker"), SeqKind::Unchecked);
        assert_eq!(SeqKind::of("!miniTicker@arr"), SeqKind::Unchecked);
        assert_eq!(SeqKind::of("nonsense"), SeqKind::Unchecked);
    }

    #[test]
    fn contiguous_ids_are_clean() {
        let mut g = GapTracker::new(SeqKind::Trade);
        for id in 100..200 {
            assert_eq!(g.observe_id(id), Verdict::default());
        }
    }

    #[test]
    fn first_event_sets_baseline() {
        let mut g = GapTracker::new(SeqKind::Trade);
        assert_eq!(g.observe_id(5_000_000), Verdict::default());
        assert_eq!(g.observe_id(5_000_001), Verdict::default());
    }

    #[test]
    fn gaps_count_missing_ids() {
        let mut g = GapTracker::new(SeqKind::AggTrade);
        g.observe_id(1);
        assert_eq!(g.observe_id(5), Verdict { lost: 3, dup: 0 });
        assert_eq!(g.observe_id(6), Verdict::default());
    }

    #[test]
    fn duplicates_and_reordering() {
        let mut g = GapTracker::new(SeqKind::Trade);
        g.observe_id(10);
        assert_eq!(g.observe_id(10), Verdict { lost: 0, dup: 1 });
        assert_eq!(g.observe_id(12), Verdict { lost: 1, dup: 0 });
        // 11 arrives late: out of order, not lost twice.
        assert_eq!(g.observe_id(11), Verdict { lost: 0, dup: 1 });
        assert_eq!(g.observe_id(13), Verdict::default());
    }

    #[test]
    fn depth_ranges() {
        let mut g = GapTracker::new(SeqKind::DiffDepth);
        assert_eq!(g.observe_range(157, 160), Verdict::default());
        assert_eq!(g.observe_range(161, 161), Verdict::default());
        assert_eq!(g.observe_range(162, 170), Verdict::default());
        assert_eq!(g.observe_range(175, 180), Verdict { lost: 4, dup: 0 });
        assert_eq!(g.observe_range(178, 185), Verdict { lost: 0, dup: 1 });
        assert_eq!(g.observe_range(186, 190), Verdict::default());
    }
}
