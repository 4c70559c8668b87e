//! Every Prometheus metric a node exports, registered in one place.
//!
//! Components receive an `Arc<Metrics>` and update the handles directly; hot paths update per
//! batch (per socket write, per mapper call), never per subscriber.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

/// The node's metrics and the registry that exports them.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Open client WebSocket connections.
    pub connections: IntGauge,
    /// Open connections that are idle without a task of their own (parked: the lanes write
    /// their sockets, and a client message, a timer or news wakes them).
    pub connections_parked: IntGauge,
    /// Client WebSocket connections accepted since start.
    pub connections_opened: IntCounter,
    /// Connections closed by the gateway or the client, by close code.
    pub closes: IntCounterVec,
    /// Connections refused before their upgrade, by reason (node_full, address_cap,
    /// address_rate, origin, url_too_long, handshake_timeout, tls).
    pub connections_refused: IntCounterVec,
    /// TLS certificate reloads, by result (swapped, failed).
    pub tls_reloads: IntCounterVec,
    /// Current subscriptions per stream.
    pub subscriptions: IntGaugeVec,
    /// Messages that reached the hub from the bus.
    pub messages_in: IntCounter,
    /// Frames written to client sockets.
    pub messages_out: IntCounter,
    /// Messages not delivered, by reason.
    pub messages_dropped: IntCounterVec,
    /// `write` system calls made for client sockets (each may carry many frames).
    pub socket_writes: IntCounter,
    /// Frames received from clients (text, binary, ping, pong).
    pub client_messages: IntCounter,
    /// Error replies sent to clients, by protocol error code.
    pub client_errors: IntCounterVec,
    /// Time from bus publish to the socket write that carried the message (the oldest frame of
    /// each write is observed), by stream kind ([`crate::config::stream_kind`]) and datasource.
    pub delivery_latency: HistogramVec,
    /// 1 while the node is ready for clients (0 while starting and draining).
    pub ready: IntGauge,
    /// 1 from SIGTERM until the node exits: unready, then closing its clients.
    pub draining: IntGauge,
    /// Mapper batch calls, by mapper version.
    pub mapper_calls: IntCounterVec,
    /// Events mapped, by mapper version.
    pub mapper_events: IntCounterVec,
    /// Events dropped by a mapper failure, by mapper version and kind (error, trap, timeout,
    /// bad_output).
    pub mapper_errors: IntCounterVec,
    /// Duration of mapper batch calls, by mapper version.
    pub mapper_duration: HistogramVec,
    /// Events received from upstream, by datasource.
    pub source_events: IntCounterVec,
    /// Events a route's mapping mapped, by datasource (once per mapping).
    pub source_mapped: IntCounterVec,
    /// Events a route's mapping dropped (mapper failure, or an output for no declared stream),
    /// by datasource.
    pub source_errors: IntCounterVec,
    /// 1 while a datasource is connected and consuming, by datasource.
    pub source_up: IntGaugeVec,
    /// Upstream connections lost, and reconnect attempts that failed, by datasource (librdkafka
    /// reconnects on its own, so a Kafka outage counts once).
    pub source_reconnects: IntCounterVec,
    /// Upstream events not yet acknowledged, by datasource.
    pub source_lag: IntGaugeVec,
    /// 1 while a datasource's source stands by because another region consumes it.
    pub source_standby: IntGaugeVec,
    /// Time from an upstream event's timestamp to the bus publish of its outputs.
    pub publish_lag: Histogram,
    /// Bus subjects this node subscribes to for its clients (cluster mode).
    pub bus_subscriptions: IntGauge,
    /// 1 while the bus answers this node's probes (cluster mode).
    pub bus_up: IntGauge,
    /// 1 while a region's nodes are heard on the bus, by region (`--region`).
    pub region_up: IntGaugeVec,
    /// 1 while the leader region's config store answers (`--config-leader`).
    pub config_leader_up: IntGauge,
    /// Changes copied from the leader region's config store, by what (`config`, `mapper`, `key`).
    pub region_follows: IntCounterVec,
    /// Config version the node runs.
    pub config_version: IntGauge,
    /// Store revision the node runs.
    pub store_revision: IntGauge,
    /// Reloads after a config or mapper change, by result (`applied`, `failed`).
    pub config_reloads: IntCounterVec,
    /// Route mapping swaps that took effect (new mapper versions or mappings).
    pub mapper_swaps: IntCounter,
    /// Automatic mapper rollbacks this node performed.
    pub mapper_auto_rollbacks: IntCounter,
    /// 1 while the config store answers and holds a config (0: unreachable, or empty).
    pub config_store_up: IntGauge,
    /// Restores of an emptied config store from what the nodes run, by result (`restored`:
    /// this node wrote it back; `followed`: another node did and this one checked it; `failed`).
    pub store_restores: IntCounterVec,
    /// What a restore could not bring back, by kind (`config_version`, `module`, `audit`,
    /// `listen_key`).
    pub store_restore_lost: IntCounterVec,
    /// API keys in the config store, as last counted (every 2 s while it serves).
    pub api_keys: IntGauge,
    /// Subscriptions dropped because a config change removed their stream.
    pub subscriptions_removed: IntCounter,
    /// Flow-control actions on slow or rate-limited subscribers, by reason (`coalesced`,
    /// `dropped`, `closed`) and stream.
    pub slow_consumer: IntCounterVec,
    /// Events replayed to resuming clients, by where they came from (`ring`, `jetstream`).
    pub resume_replayed: IntCounterVec,
    /// Resumes, by outcome (`replayed`: every missed event was replayed; `resync`: some were
    /// beyond retention and the client was told; `live`: nothing was missed).
    pub resumes: IntCounterVec,
    /// Depth snapshots served over REST, by result (`ok`, `unknown_symbol`, `unavailable`).
    pub depth_snapshots: IntCounterVec,
    /// Bytes held by the compiled-mapper cache, by tier (`memory`, `disk`).
    pub mapper_cache_bytes: IntGaugeVec,
    /// Entries of the compiled-mapper cache, by tier (`memory`, `disk`).
    pub mapper_cache_entries: IntGaugeVec,
    /// Compiled mappers evicted from the cache, by tier (`memory`, `disk`).
    pub mapper_cache_evictions: IntCounterVec,
    /// Disk cache entries refused because their tag did not verify.
    pub mapper_cache_rejected: IntCounter,
}

impl Metrics {
    /// Creates and registers every metric, plus the process collector (RSS, CPU, fds).
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("wsgate".into()), None).expect("valid prefix");
        let latency_buckets = exponential_buckets(0.000_05, 2.0, 18).expect("valid buckets");
        let mapper_buckets = exponential_buckets(0.000_001, 2.0, 24).expect("valid buckets");
        let metrics = Metrics {
            connections: IntGauge::new("connections", "Open client connections").unwrap(),
            connections_parked: IntGauge::new(
                "connections_parked",
                "Open client connections idle without a task (their sockets written by the lanes)",
            )
            .unwrap(),
            connections_opened: IntCounter::new(
                "connections_opened_total",
                "Client connections accepted",
            )
            .unwrap(),
            closes: IntCounterVec::new(
                Opts::new("closes_total", "Client connections closed, by close code"),
                &["code"],
            )
            .unwrap(),
            connections_refused: IntCounterVec::new(
                Opts::new(
                    "connections_refused_total",
                    "Client connections refused before their upgrade, by reason",
                ),
                &["reason"],
            )
            .unwrap(),
            tls_reloads: IntCounterVec::new(
                Opts::new("tls_reloads_total", "TLS certificate reloads, by result"),
                &["result"],
            )
            .unwrap(),
            subscriptions: IntGaugeVec::new(
                Opts::new("subscriptions", "Current subscriptions per stream"),
                &["stream"],
            )
            .unwrap(),
            messages_in: IntCounter::new("messages_in_total", "Messages received by the hub")
                .unwrap(),
            messages_out: IntCounter::new("messages_out_total", "Frames written to clients")
                .unwrap(),
            messages_dropped: IntCounterVec::new(
                Opts::new(
                    "messages_dropped_total",
                    "Messages not delivered, by reason",
                ),
                &["reason"],
            )
            .unwrap(),
            socket_writes: IntCounter::new("socket_writes_total", "Socket write calls").unwrap(),
            client_messages: IntCounter::new(
                "client_messages_total",
                "Frames received from clients",
            )
            .unwrap(),
            client_errors: IntCounterVec::new(
                Opts::new(
                    "client_errors_total",
                    "Error replies sent to clients, by code",
                ),
                &["code"],
            )
            .unwrap(),
            delivery_latency: HistogramVec::new(
                HistogramOpts::new(
                    "delivery_latency_seconds",
                    "Bus publish to socket write, oldest frame of each write, by stream kind and datasource",
                )
                .buckets(latency_buckets),
                &["kind", "datasource"],
            )
            .unwrap(),
            ready: IntGauge::new("ready", "1 while the node is ready for clients").unwrap(),
            draining: IntGauge::new(
                "draining",
                "1 while the node drains: unready, closing its clients",
            )
            .unwrap(),
            mapper_calls: IntCounterVec::new(
                Opts::new("mapper_calls_total", "Mapper batch calls"),
                &["mapper"],
            )
            .unwrap(),
            mapper_events: IntCounterVec::new(
                Opts::new("mapper_events_total", "Events passed to mappers"),
                &["mapper"],
            )
            .unwrap(),
            mapper_errors: IntCounterVec::new(
                Opts::new("mapper_errors_total", "Events dropped by mapper failures"),
                &["mapper", "kind"],
            )
            .unwrap(),
            mapper_duration: HistogramVec::new(
                HistogramOpts::new("mapper_duration_seconds", "Mapper batch call duration")
                    .buckets(mapper_buckets),
                &["mapper"],
            )
            .unwrap(),
            source_events: IntCounterVec::new(
                Opts::new("source_events_total", "Events received from upstream"),
                &["datasource"],
            )
            .unwrap(),
            source_mapped: IntCounterVec::new(
                Opts::new("source_mapped_total", "Events a route's mapping mapped"),
                &["datasource"],
            )
            .unwrap(),
            source_errors: IntCounterVec::new(
                Opts::new(
                    "source_errors_total",
                    "Events a route's mapping dropped: mapper failure or undeclared stream",
                ),
                &["datasource"],
            )
            .unwrap(),
            bus_up: IntGauge::new("bus_up", "1 while the bus answers this node's probes").unwrap(),
            region_up: IntGaugeVec::new(
                Opts::new("region_up", "1 while a region's nodes are heard on the bus"),
                &["region"],
            )
            .unwrap(),
            config_leader_up: IntGauge::new(
                "config_leader_up",
                "1 while the leader region's config store answers",
            )
            .unwrap(),
            region_follows: IntCounterVec::new(
                Opts::new(
                    "region_follows_total",
                    "Changes copied from the leader region's config store",
                ),
                &["what"],
            )
            .unwrap(),
            bus_subscriptions: IntGauge::new(
                "bus_subscriptions",
                "Bus subjects subscribed to for this node's clients",
            )
            .unwrap(),
            publish_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "publish_lag_seconds",
                    "Upstream event time to bus publish of its outputs",
                )
                .buckets(exponential_buckets(0.000_05, 2.0, 18).expect("valid buckets")),
            )
            .unwrap(),
            source_up: IntGaugeVec::new(
                Opts::new(
                    "source_up",
                    "1 while a datasource is connected and consuming",
                ),
                &["datasource"],
            )
            .unwrap(),
            source_reconnects: IntCounterVec::new(
                Opts::new(
                    "source_reconnects_total",
                    "Upstream connections lost or failed reconnect attempts, by datasource",
                ),
                &["datasource"],
            )
            .unwrap(),
            source_lag: IntGaugeVec::new(
                Opts::new(
                    "source_lag",
                    "Upstream events not yet acknowledged (pending plus undelivered)",
                ),
                &["datasource"],
            )
            .unwrap(),
            source_standby: IntGaugeVec::new(
                Opts::new(
                    "source_standby",
                    "1 while the source stands by because another region consumes the datasource",
                ),
                &["datasource"],
            )
            .unwrap(),
            config_version: IntGauge::new("config_version", "Config version this node runs")
                .unwrap(),
            store_revision: IntGauge::new("store_revision", "Config store revision this node runs")
                .unwrap(),
            config_reloads: IntCounterVec::new(
                Opts::new(
                    "config_reloads_total",
                    "Reloads after config or mapper changes, by result",
                ),
                &["result"],
            )
            .unwrap(),
            mapper_swaps: IntCounter::new(
                "mapper_swaps_total",
                "Route mapping swaps that took effect",
            )
            .unwrap(),
            mapper_auto_rollbacks: IntCounter::new(
                "mapper_auto_rollbacks_total",
                "Mapper versions this node rolled back automatically",
            )
            .unwrap(),
            config_store_up: IntGauge::new(
                "config_store_up",
                "1 while the config store answers and holds a config",
            )
            .unwrap(),
            store_restores: IntCounterVec::new(
                Opts::new(
                    "store_restores_total",
                    "Restores of an emptied config store, by result",
                ),
                &["result"],
            )
            .unwrap(),
            store_restore_lost: IntCounterVec::new(
                Opts::new(
                    "store_restore_lost_total",
                    "What a restore of the config store could not bring back, by kind",
                ),
                &["kind"],
            )
            .unwrap(),
            api_keys: IntGauge::new("api_keys", "API keys in the config store, as last counted")
                .unwrap(),
            subscriptions_removed: IntCounter::new(
                "subscriptions_removed_total",
                "Subscriptions dropped because a config change removed their stream",
            )
            .unwrap(),
            slow_consumer: IntCounterVec::new(
                Opts::new(
                    "slow_consumer_total",
                    "Flow-control actions on slow or rate-limited subscribers, by reason and stream",
                ),
                &["reason", "stream"],
            )
            .unwrap(),
            resume_replayed: IntCounterVec::new(
                Opts::new(
                    "resume_replayed_total",
                    "Events replayed to resuming clients, by where they came from",
                ),
                &["from"],
            )
            .unwrap(),
            resumes: IntCounterVec::new(
                Opts::new("resumes_total", "Stream resumes, by outcome"),
                &["outcome"],
            )
            .unwrap(),
            depth_snapshots: IntCounterVec::new(
                Opts::new(
                    "depth_snapshots_total",
                    "Depth snapshots served over REST, by result",
                ),
                &["result"],
            )
            .unwrap(),
            mapper_cache_bytes: IntGaugeVec::new(
                Opts::new(
                    "mapper_cache_bytes",
                    "Bytes held by the compiled-mapper cache, by tier",
                ),
                &["tier"],
            )
            .unwrap(),
            mapper_cache_entries: IntGaugeVec::new(
                Opts::new(
                    "mapper_cache_entries",
                    "Entries of the compiled-mapper cache, by tier",
                ),
                &["tier"],
            )
            .unwrap(),
            mapper_cache_evictions: IntCounterVec::new(
                Opts::new(
                    "mapper_cache_evictions_total",
                    "Compiled mappers evicted from the cache, by tier",
                ),
                &["tier"],
            )
            .unwrap(),
            mapper_cache_rejected: IntCounter::new(
                "mapper_cache_rejected_total",
                "Disk cache entries refused because their tag did not verify",
            )
            .unwrap(),
            registry,
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&self) {
        let r = &self.registry;
        r.register(Box::new(self.connections.clone())).unwrap();
        r.register(Box::new(self.connections_parked.clone()))
            .unwrap();
        r.register(Box::new(self.connections_opened.clone()))
            .unwrap();
        r.register(Box::new(self.closes.clone())).unwrap();
        r.register(Box::new(self.connections_refused.clone()))
            .unwrap();
        r.register(Box::new(self.tls_reloads.clone())).unwrap();
        r.register(Box::new(self.subscriptions.clone())).unwrap();
        r.register(Box::new(self.messages_in.clone())).unwrap();
        r.register(Box::new(self.messages_out.clone())).unwrap();
        r.register(Box::new(self.messages_dropped.clone())).unwrap();
        r.register(Box::new(self.socket_writes.clone())).unwrap();
        r.register(Box::new(self.client_messages.clone())).unwrap();
        r.register(Box::new(self.client_errors.clone())).unwrap();
        r.register(Box::new(self.delivery_latency.clone())).unwrap();
        r.register(Box::new(self.ready.clone())).unwrap();
        r.register(Box::new(self.draining.clone())).unwrap();
        r.register(Box::new(self.mapper_calls.clone())).unwrap();
        r.register(Box::new(self.mapper_events.clone())).unwrap();
        r.register(Box::new(self.mapper_errors.clone())).unwrap();
        r.register(Box::new(self.mapper_duration.clone())).unwrap();
        r.register(Box::new(self.source_events.clone())).unwrap();
        r.register(Box::new(self.source_mapped.clone())).unwrap();
        r.register(Box::new(self.source_errors.clone())).unwrap();
        r.register(Box::new(self.publish_lag.clone())).unwrap();
        r.register(Box::new(self.bus_subscriptions.clone()))
            .unwrap();
        r.register(Box::new(self.bus_up.clone())).unwrap();
        r.register(Box::new(self.region_up.clone())).unwrap();
        r.register(Box::new(self.config_leader_up.clone())).unwrap();
        r.register(Box::new(self.region_follows.clone())).unwrap();
        r.register(Box::new(self.source_up.clone())).unwrap();
        r.register(Box::new(self.source_reconnects.clone()))
            .unwrap();
        r.register(Box::new(self.source_lag.clone())).unwrap();
        r.register(Box::new(self.source_standby.clone())).unwrap();
        r.register(Box::new(self.config_version.clone())).unwrap();
        r.register(Box::new(self.store_revision.clone())).unwrap();
        r.register(Box::new(self.config_reloads.clone())).unwrap();
        r.register(Box::new(self.mapper_swaps.clone())).unwrap();
        r.register(Box::new(self.mapper_auto_rollbacks.clone()))
            .unwrap();
        r.register(Box::new(self.config_store_up.clone())).unwrap();
        r.register(Box::new(self.store_restores.clone())).unwrap();
        r.register(Box::new(self.store_restore_lost.clone()))
            .unwrap();
        r.register(Box::new(self.api_keys.clone())).unwrap();
        r.register(Box::new(self.subscriptions_removed.clone()))
            .unwrap();
        r.register(Box::new(self.slow_consumer.clone())).unwrap();
        r.register(Box::new(self.resume_replayed.clone())).unwrap();
        r.register(Box::new(self.resumes.clone())).unwrap();
        r.register(Box::new(self.depth_snapshots.clone())).unwrap();
        r.register(Box::new(self.mapper_cache_bytes.clone()))
            .unwrap();
        r.register(Box::new(self.mapper_cache_entries.clone()))
            .unwrap();
        r.register(Box::new(self.mapper_cache_evictions.clone()))
            .unwrap();
        r.register(Box::new(self.mapper_cache_rejected.clone()))
            .unwrap();
        let process = prometheus::process_collector::ProcessCollector::for_self();
        r.register(Box::new(process)).unwrap();
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
