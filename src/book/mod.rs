//! Order books kept from the diff-depth outputs a node publishes, and the depth snapshots they
//! answer (Binance's `GET /api/v3/depth`, served by the `binance` dialect).
//!
//! The node that owns a source maps each upstream event once and publishes the outputs; on the
//! way to the bus ([`Books::observe`]) every output on a diff-depth stream (`<symbol>@depth`,
//! `<symbol>@depth@100ms`) whose payload is a Binance `depthUpdate` is applied to that symbol's
//! book, *before* it is published, so a snapshot is never behind an event a client has seen.
//! Both series share one update-id space and feed one book per symbol; an event is applied when
//! it continues the book (`U <= id + 1 <= u`), ignored when it is wholly older, and a gap makes
//! the book unavailable until an event continues it again ([`order_book`]). A book starts empty
//! at update id 0, which is exact for a market that starts empty under the gateway's eyes (the
//! demo market); a source whose first delta starts later has no snapshot to start from, and its
//! book stays unavailable.
//!
//! A book belongs to the source that fed it: when the source stops (a config change restarts
//! it, or its lease moves to another node) its books are dropped ([`Books::source_stopped`]),
//! and the next owner starts its own.
//!
//! In a cluster a snapshot request may reach a node that does not own the source. Each book's
//! keeper then also answers NATS requests on `_wsgate.book.<symbol>` (the full snapshot, up to
//! [`MAX_LIMIT`] levels a side), and a node without the book forwards the request there
//! ([`cluster`]).

pub mod cluster;
mod feed;
pub mod order_book;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use prometheus::IntCounterVec;

use crate::bus::{Bus, BusMessage};
pub use order_book::{Applied, DepthUpdate, OrderBook, Snapshot, MAX_LEVELS, MAX_LIMIT};

/// The symbol (as in stream names, lower case) of a diff-depth stream: `<symbol>@depth` or
/// `<symbol>@depth@100ms`, of Binance Spot (no namespace: `hashkey:btcusdt@depth` is another
/// dialect's stream).
pub fn diff_depth_symbol(stream: &str) -> Option<&str> {
    if crate::config::split_namespace(stream).0.is_some() {
        return None;
    }
    let symbol = stream
        .strip_suffix("@depth")
        .or_else(|| stream.strip_suffix("@depth@100ms"))?;
    (!symbol.is_empty() && !symbol.contains('@')).then_some(symbol)
}

/// Why no snapshot can be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// No diff-depth stream of the symbol is declared.
    #[error("unknown symbol")]
    UnknownSymbol,
    /// The symbol is served, but no complete book of it can be reached now (none fed yet, a
    /// gap, or in a cluster no node answering for it).
    #[error("book unavailable")]
    Unavailable,
}

impl SnapshotError {
    /// The `result` label of `wsgate_depth_snapshots_total`.
    pub fn label(self) -> &'static str {
        match self {
            SnapshotError::UnknownSymbol => "unknown_symbol",
            SnapshotError::Unavailable => "unavailable",
        }
    }
}

/// One symbol's book and who feeds it.
struct Kept {
    /// The datasource whose outputs feed it.
    source: Arc<str>,
    book: Mutex<OrderBook>,
    /// Answers other nodes' requests while the book is kept (a cluster member only).
    _responder: Option<cluster::Responder>,
}

/// The node's order books, shared by the routes that feed them and the listeners that serve
/// snapshots. Cloning shares them.
#[derive(Clone)]
pub struct Books {
    inner: Arc<Inner>,
}

struct Inner {
    /// Books by symbol (lower case, as in stream names).
    kept: RwLock<HashMap<Box<str>, Arc<Kept>>>,
    /// Symbols with a declared diff-depth stream.
    declared: RwLock<HashSet<Box<str>>>,
    /// The cluster's request path, on a cluster member.
    cluster: Option<cluster::Link>,
    /// `wsgate_depth_snapshots_total`, by result.
    served: IntCounterVec,
}

impl Books {
    /// No books yet; `served` counts the snapshots served by result. A cluster member passes
    /// its NATS link, so that its books answer other nodes and it asks them for theirs.
    pub fn new(served: IntCounterVec, cluster: Option<cluster::Link>) -> Self {
        Books {
            inner: Arc::new(Inner {
                kept: RwLock::new(HashMap::new()),
                declared: RwLock::new(HashSet::new()),
                cluster,
                served,
            }),
        }
    }

    /// `bus`, as seen by the routes of datasource `source`: what they publish feeds the books
    /// on its way.
    pub fn observe(&self, bus: Arc<dyn Bus>, source: &str) -> Arc<dyn Bus> {
        Arc::new(feed::Feed::new(self.clone(), Arc::from(source), bus))
    }

    /// The declared streams are now `streams`: snapshots are served for the symbols that have
    /// a diff-depth stream among them.
    pub fn declare<'a>(&self, streams: impl IntoIterator<Item = &'a str>) {
        let symbols = streams
            .into_iter()
            .filter_map(diff_depth_symbol)
            .map(Box::from)
            .collect();
        *self.inner.declared.write() = symbols;
    }

    /// Drops the books `source` fed: it stopped, and whoever runs it next starts them again.
    pub fn source_stopped(&self, source: &str) {
        self.inner
            .kept
            .write()
            .retain(|_, kept| &*kept.source != source);
    }

    /// Applies `message` to its symbol's book if it is a diff-depth event; `source` feeds it.
    pub(crate) fn feed(&self, source: &Arc<str>, message: &BusMessage) {
        let Some(symbol) = diff_depth_symbol(&message.stream) else {
            return;
        };
        let Some(update) = DepthUpdate::parse(&message.payload) else {
            return;
        };
        let kept = self.kept_or_new(symbol, source);
        let mut book = kept.book.lock();
        let was_complete = book.is_complete();
        if book.apply(&update) == Applied::Gap && was_complete {
            tracing::warn!(
                symbol,
                book_id = book.last_update_id(),
                first = update.first,
                last = update.last,
                "depth gap: the book is unavailable until an event continues it"
            );
        }
    }

    fn kept_or_new(&self, symbol: &str, source: &Arc<str>) -> Arc<Kept> {
        if let Some(kept) = self.inner.kept.read().get(symbol) {
            return Arc::clone(kept);
        }
        let mut all = self.inner.kept.write();
        let kept = all.entry(symbol.into()).or_insert_with(|| {
            tracing::info!(symbol, source = %source, "keeping the order book");
            Arc::new_cyclic(|this| Kept {
                source: Arc::clone(source),
                book: Mutex::new(OrderBook::new()),
                _responder: self
                    .inner
                    .cluster
                    .as_ref()
                    .map(|link| link.respond(symbol, this.clone())),
            })
        });
        Arc::clone(kept)
    }

    /// The local book of `symbol` at most `limit` levels a side, if this node keeps it.
    pub fn local(&self, symbol: &str, limit: usize) -> Option<Result<Snapshot, SnapshotError>> {
        let kept = self.inner.kept.read().get(symbol).cloned()?;
        let book = kept.book.lock();
        Some(book.snapshot(limit).ok_or(SnapshotError::Unavailable))
    }

    /// The book of `symbol` (lower case) at most `limit` levels a side: this node's, or in a
    /// cluster the one of the node that keeps it.
    pub async fn snapshot(&self, symbol: &str, limit: usize) -> Result<Snapshot, SnapshotError> {
        if !self.inner.declared.read().contains(symbol) {
            return Err(SnapshotError::UnknownSymbol);
        }
        if let Some(local) = self.local(symbol, limit) {
            return local;
        }
        match &self.inner.cluster {
            Some(link) => link
                .request(symbol)
                .await
                .map(|snapshot| snapshot.truncated(limit)),
            None => Err(SnapshotError::Unavailable),
        }
    }

    /// Counts a snapshot request's outcome (`ok`, or the error's label).
    pub fn count(&self, result: &Result<Snapshot, SnapshotError>) {
        let label = match result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.inner.served.with_label_values(&[label]).inc();
    }

    /// Symbols whose book this node keeps.
    pub fn kept(&self) -> Vec<String> {
        let mut symbols: Vec<String> = self
            .inner
            .kept
            .read()
            .keys()
            .map(|s| s.to_string())
            .collect();
        symbols.sort();
        symbols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> IntCounterVec {
        IntCounterVec::new(prometheus::Opts::new("served", "served"), &["result"]).unwrap()
    }

    fn message(stream: &str, first: u64, last: u64, bid: &str) -> BusMessage {
        let payload = serde_json::json!({
            "e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": first, "u": last,
            "b": [[bid, "1.0"]], "a": [],
        });
        BusMessage::for_tests(stream, 1, payload.to_string())
    }

    #[test]
    fn diff_depth_streams_are_told_from_the_others() {
        assert_eq!(diff_depth_symbol("btcusdt@depth"), Some("btcusdt"));
        assert_eq!(diff_depth_symbol("btcusdt@depth@100ms"), Some("btcusdt"));
        for other in [
            "btcusdt@depth20",
            "btcusdt@depth5@100ms",
            "@depth",
            "btcusdt@trade",
            "hashkey:btcusdt@depth",
            "futures:btcusdt@depth@100ms",
        ] {
            assert_eq!(diff_depth_symbol(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn both_series_feed_one_book_and_other_streams_none() {
        let books = Books::new(counter(), None);
        books.declare(["btcusdt@depth", "btcusdt@depth@100ms", "ethusdt@trade"]);
        let source: Arc<str> = Arc::from("demo");
        books.feed(&source, &message("btcusdt@depth@100ms", 1, 3, "10"));
        books.feed(&source, &message("btcusdt@depth@100ms", 4, 5, "11"));
        // The 1000 ms event covering both: already in the book.
        books.feed(&source, &message("btcusdt@depth", 1, 5, "12"));
        books.feed(&source, &message("btcusdt@depth20", 6, 9, "13"));
        let snapshot = books.snapshot("btcusdt", 10).await.unwrap();
        assert_eq!(snapshot.last_update_id, 5);
        assert_eq!(snapshot.bids.len(), 2);
        assert_eq!(
            books.snapshot("ethusdt", 10).await,
            Err(SnapshotError::UnknownSymbol)
        );
        assert_eq!(
            books.snapshot("nosuch", 10).await,
            Err(SnapshotError::UnknownSymbol)
        );
    }

    #[tokio::test]
    async fn a_declared_symbol_without_a_book_or_with_a_gap_is_unavailable() {
        let books = Books::new(counter(), None);
        books.declare(["btcusdt@depth", "ethusdt@depth"]);
        let source: Arc<str> = Arc::from("demo");
        assert_eq!(
            books.snapshot("btcusdt", 10).await,
            Err(SnapshotError::Unavailable)
        );
        books.feed(&source, &message("ethusdt@depth", 1, 1, "1"));
        books.feed(&source, &message("ethusdt@depth", 3, 3, "2"));
        assert_eq!(
            books.snapshot("ethusdt", 10).await,
            Err(SnapshotError::Unavailable)
        );
    }

    #[tokio::test]
    async fn a_stopped_source_takes_its_books_along() {
        let books = Books::new(counter(), None);
        books.declare(["btcusdt@depth", "ethusdt@depth"]);
        books.feed(&Arc::from("a"), &message("btcusdt@depth", 1, 1, "1"));
        books.feed(&Arc::from("b"), &message("ethusdt@depth", 1, 1, "1"));
        books.source_stopped("a");
        assert_eq!(books.kept(), ["ethusdt"]);
        // Its next run starts the book from scratch: update id 1 continues it again.
        books.feed(&Arc::from("a"), &message("btcusdt@depth", 1, 2, "1"));
        assert_eq!(
            books.snapshot("btcusdt", 5).await.unwrap().last_update_id,
            2
        );
    }
}
