//! Latency histograms (1 µs .. 60 s, 3 significant digits) and their `[value, count]`
//! encoding for passing between processes.

use hdrhistogram::Histogram;

/// Lowest trackable latency (µs).
pub const HIST_LOW: u64 = 1;
/// Highest trackable latency (µs): 60 s; larger values saturate.
pub const HIST_HIGH: u64 = 60_000_000;
/// Significant decimal digits kept by the histograms.
pub const HIST_SIGFIG: u8 = 3;

/// A histogram encoded as `[value, count]` pairs (from `iter_recorded`).
pub type HistPairs = Vec<[u64; 2]>;

/// Creates an empty latency histogram (1 µs .. 60 s, 3 significant digits).
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW, HIST_HIGH, HIST_SIGFIG).expect("valid histogram bounds")
}

/// Encodes a histogram as `[value, count]` pairs.
pub fn encode_hist(h: &Histogram<u64>) -> HistPairs {
    h.iter_recorded()
        .map(|v| [v.value_iterated_to(), v.count_at_value()])
        .collect()
}

/// Adds encoded pairs into a histogram.
pub fn merge_pairs(h: &mut Histogram<u64>, pairs: &[[u64; 2]]) {
    for &[value, count] in pairs {
        h.saturating_record_n(value.max(HIST_LOW), count);
    }
}

/// Decodes pairs into a new histogram.
pub fn decode_hist(pairs: &[[u64; 2]]) -> Histogram<u64> {
    let mut h = new_hist();
    merge_pairs(&mut h, pairs);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_roundtrip_and_merge() {
        let (mut a, mut b, mut both) = (new_hist(), new_hist(), new_hist());
        for v in 1..5000u64 {
            a.record(v * 3).unwrap();
            both.record(v * 3).unwrap();
        }
        for v in [7u64, 900, 12_345, 59_999_999, 1_000_000] {
            b.record_n(v, 17).unwrap();
            both.record_n(v, 17).unwrap();
        }
        let mut merged = decode_hist(&encode_hist(&a));
        merge_pairs(&mut merged, &encode_hist(&b));
        assert_eq!(merged.len(), both.len());
        assert_eq!(merged.max(), both.max());
        assert_eq!(merged.min(), both.min());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged.value_at_quantile(q),
                both.value_at_quantile(q),
                "q={q}"
            );
        }
    }

    #[test]
    fn saturates_out_of_range() {
        let mut h = decode_hist(&[[0, 2], [HIST_HIGH * 10, 1]]);
        assert_eq!(h.len(), 3);
        assert!(h.max() >= HIST_HIGH);
        merge_pairs(&mut h, &[]);
        assert_eq!(h.len(), 3);
    }
}
