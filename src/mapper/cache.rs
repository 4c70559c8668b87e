//! The compiled-mapper cache in memory: least recently used first out, bounded by bytes.
//!
//! An entry costs what its compiled code occupies (the code image wasmtime maps, the same bytes
//! `Component::serialize` writes to disk); the module's wasm size says little about that. An
//! entry someone else still holds (a running route's instance, the desired state, a push being
//! validated) is *in use*: it is never evicted, so the next lookup of a running mapper is a hit,
//! and the cache can exceed its bound only by what is in use. Eviction runs after each insert
//! and lookup, oldest use first, until the bytes are within the bound.

use std::sync::Arc;

use indexmap::IndexMap;
use prometheus::{IntCounter, IntGauge};

use crate::metrics::Metrics;

/// The cache's metric handles (`wsgate_mapper_cache_*`), for both tiers.
#[derive(Clone)]
pub struct CacheMetrics {
    pub(super) memory: TierMetrics,
    pub(super) disk: TierMetrics,
    /// Disk entries refused because their tag did not verify.
    pub(super) rejected: IntCounter,
}

/// One tier's gauges and eviction counter.
#[derive(Clone)]
pub(super) struct TierMetrics {
    pub(super) bytes: IntGauge,
    pub(super) entries: IntGauge,
    pub(super) evictions: IntCounter,
}

impl CacheMetrics {
    /// The handles of a node's metrics.
    pub fn of(metrics: &Metrics) -> Self {
        let tier = |name: &str| TierMetrics {
            bytes: metrics.mapper_cache_bytes.with_label_values(&[name]),
            entries: metrics.mapper_cache_entries.with_label_values(&[name]),
            evictions: metrics.mapper_cache_evictions.with_label_values(&[name]),
        };
        CacheMetrics {
            memory: tier("memory"),
            disk: tier("disk"),
            rejected: metrics.mapper_cache_rejected.clone(),
        }
    }
}

impl Default for CacheMetrics {
    /// Handles exported nowhere (an engine outside a node: tests, benchmarks, the CLI).
    fn default() -> Self {
        CacheMetrics::of(&Metrics::new())
    }
}

/// Values shared as `Arc<T>`, by key, each with its cost in bytes; least recently used first.
pub(super) struct MemoryCache<K, T> {
    entries: IndexMap<K, (Arc<T>, u64)>,
    bytes: u64,
    bound: u64,
    metrics: TierMetrics,
}

impl<K: std::hash::Hash + Eq, T> MemoryCache<K, T> {
    /// An empty cache holding at most `bound` bytes of entries not in use.
    pub(super) fn new(bound: u64, metrics: TierMetrics) -> Self {
        MemoryCache {
            entries: IndexMap::new(),
            bytes: 0,
            bound,
            metrics,
        }
    }

    /// The value under `key`, now the most recently used.
    pub(super) fn get(&mut self, key: &K) -> Option<Arc<T>> {
        let index = self.entries.get_index_of(key)?;
        let last = self.entries.len() - 1;
        self.entries.move_index(index, last);
        let value = Arc::clone(&self.entries[last].0);
        self.trim();
        Some(value)
    }

    /// Caches `value` under `key` as the most recently used, costing `cost` bytes, and returns
    /// what the cache now holds under `key` (the value already there, if another caller was
    /// first), then evicts what the bound asks for. The value returned is held by the caller,
    /// so it is in use and not evicted now.
    pub(super) fn insert(&mut self, key: K, value: Arc<T>, cost: u64) -> Arc<T> {
        let index = match self.entries.get_index_of(&key) {
            // Another caller cached it first: theirs is shared, counted once.
            Some(index) => index,
            None => {
                self.bytes += cost;
                self.entries.insert_full(key, (value, cost)).0
            }
        };
        let last = self.entries.len() - 1;
        self.entries.move_index(index, last);
        let cached = Arc::clone(&self.entries[last].0);
        self.trim();
        cached
    }

    /// Evicts the least recently used entries not in use until the cache is within its bound.
    fn trim(&mut self) {
        let mut index = 0;
        while self.bytes > self.bound && index < self.entries.len() {
            if Arc::strong_count(&self.entries[index].0) > 1 {
                index += 1;
                continue;
            }
            let (_, (_, cost)) = self.entries.shift_remove_index(index).expect("in range");
            self.bytes -= cost;
            self.metrics.evictions.inc();
        }
        self.metrics.bytes.set(self.bytes as i64);
        self.metrics.entries.set(self.entries.len() as i64);
    }

    /// Keys of the entries in use (held outside the cache).
    pub(super) fn in_use(&self) -> impl Iterator<Item = &K> {
        self.entries
            .iter()
            .filter(|(_, (value, _))| Arc::strong_count(value) > 1)
            .map(|(key, _)| key)
    }

    /// Bytes held, in use or not.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Keys from the least to the most recently used.
    #[cfg(test)]
    fn keys(&self) -> Vec<&K> {
        self.entries.keys().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(bound: u64) -> (MemoryCache<u32, String>, CacheMetrics) {
        let metrics = CacheMetrics::default();
        (MemoryCache::new(bound, metrics.memory.clone()), metrics)
    }

    /// Inserts `key` costing `cost` and lets go of it (not in use).
    fn put(cache: &mut MemoryCache<u32, String>, key: u32, cost: u64) {
        drop(cache.insert(key, Arc::new(key.to_string()), cost));
    }

    #[test]
    fn evicts_the_least_recently_used_first() {
        let (mut cache, metrics) = cache(300);
        for key in 1..=3 {
            put(&mut cache, key, 100);
        }
        // 1 is used again: 2 is now the least recently used.
        assert!(cache.get(&1).is_some());
        put(&mut cache, 4, 100);
        assert_eq!(cache.keys(), [&3, &1, &4]);
        assert!(cache.get(&2).is_none());
        put(&mut cache, 5, 100);
        assert_eq!(cache.keys(), [&1, &4, &5]);
        assert_eq!(metrics.memory.evictions.get(), 2);
    }

    #[test]
    fn holds_no_more_bytes_than_its_bound() {
        let (mut cache, metrics) = cache(1_000);
        for key in 0..50 {
            put(&mut cache, key, 90 + u64::from(key % 7) * 10);
            assert!(cache.bytes() <= 1_000, "{} bytes", cache.bytes());
            assert_eq!(metrics.memory.bytes.get() as u64, cache.bytes());
        }
        assert!(cache.bytes() > 1_000 - 150, "evicted more than needed");
        assert_eq!(metrics.memory.entries.get() as usize, cache.keys().len());
        assert_eq!(
            metrics.memory.evictions.get() as usize,
            50 - cache.keys().len()
        );
        // An entry larger than the bound is cached while in use, evicted once let go.
        let big = cache.insert(99, Arc::new("big".into()), 5_000);
        assert_eq!(cache.keys(), [&99]);
        assert!(cache.get(&99).is_some());
        drop(big);
        put(&mut cache, 100, 10);
        assert_eq!(cache.keys(), [&100]);
    }

    #[test]
    fn entries_in_use_are_not_evicted() {
        let (mut cache, _) = cache(200);
        let running = cache.insert(1, Arc::new("running".into()), 100);
        for key in 2..10 {
            put(&mut cache, key, 100);
        }
        // The oldest entry, but in use: still cached, and a lookup is a hit on the same value.
        let found = cache.get(&1).expect("an entry in use was evicted");
        assert!(Arc::ptr_eq(&found, &running));
        assert_eq!(cache.in_use().collect::<Vec<_>>(), [&1]);
        assert_eq!(cache.bytes(), 200);
        // Let go of, it ages like any other.
        drop((found, running));
        put(&mut cache, 10, 100);
        put(&mut cache, 11, 100);
        assert_eq!(cache.keys(), [&10, &11]);
    }

    #[test]
    fn a_second_insert_of_a_key_keeps_the_first_value_and_counts_it_once() {
        let (mut cache, _) = cache(1_000);
        let first = cache.insert(1, Arc::new("first".into()), 100);
        let second = cache.insert(1, Arc::new("second".into()), 100);
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(cache.bytes(), 100);
    }
}
