//! The `wsgate` command line.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use wsgate::auth::listen_keys::ListenKeySettings;
use wsgate::auth::DelegatedSettings;
use wsgate::cli;
use wsgate::hub::RingLimits;
use wsgate::mapper::{self, MapperLimits};
use wsgate::node::{self, AutoRollback, Drain, NodeSettings};
use wsgate::region::RegionSettings;
use wsgate::trade::TradeSettings;
use wsgate::ws::dialect::{self, echo::Echo};
use wsgate::ws::WsSettings;

mod edge_args;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// WebSocket gateway streaming exchange market data in the Binance Spot protocol.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, global = true, env = "WSGATE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway node (embedded mode without --redis: in-memory config and bus, demo market).
    Serve(Box<ServeArgs>),
    /// Read, change, diff and roll back the cluster's config (through a node's admin API).
    Config {
        #[command(flatten)]
        admin: cli::AdminArgs,
        #[command(subcommand)]
        command: cli::ConfigCommand,
    },
    /// Push, list, promote and roll back mappers; test a module locally.
    Mapper {
        #[command(flatten)]
        admin: cli::AdminArgs,
        #[command(subcommand)]
        command: cli::MapperCommand,
    },
    /// Create, list and revoke API keys.
    Key {
        #[command(flatten)]
        admin: cli::AdminArgs,
        #[command(subcommand)]
        command: cli::KeyCommand,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// This node's id (status, audit entries of automatic changes). Default: host name and pid.
    #[arg(long, env = "WSGATE_NODE_ID")]
    node_id: Option<String>,
    /// Redis URL of the cluster's config store (e.g. redis://127.0.0.1:6379). Without it the
    /// store is in memory, seeded from --config and --mappers-dir.
    #[arg(long, env = "WSGATE_REDIS")]
    redis: Option<String>,
    /// Prefix of every Redis key.
    #[arg(long, env = "WSGATE_REDIS_PREFIX", default_value = "wsgate:")]
    redis_prefix: String,
    /// NATS URL of the cluster's bus (e.g. nats://127.0.0.1:4222). With it the node joins a
    /// cluster: it consumes only the routes assigned to its node id, publishes their outputs on
    /// NATS, and receives the streams its clients watch from there. Needs --redis.
    #[arg(long, env = "WSGATE_NATS", requires = "redis")]
    nats: Option<String>,
    /// How often a cluster node heartbeats into Redis.
    #[arg(long, env = "WSGATE_HEARTBEAT", default_value = "1s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// After how long without a heartbeat a node counts as gone and its datasources move.
    #[arg(long, env = "WSGATE_PEER_TTL", default_value = "3s", value_parser = humantime::parse_duration)]
    peer_ttl: Duration,
    /// How often a cluster node sends itself a probe through the bus; two unanswered probes
    /// make it not ready and force a reconnect.
    #[arg(long, env = "WSGATE_BUS_PROBE_EVERY", default_value = "1s", value_parser = humantime::parse_duration)]
    bus_probe_every: Duration,
    /// This node's region in a multi-region deployment: datasources are consumed in one region
    /// at a time (their `regions` list), told apart over the bus. Needs --nats.
    #[arg(long, env = "WSGATE_REGION", requires = "nats", value_parser = region_name)]
    region: Option<String>,
    /// After how long without a word from any of its nodes a region counts as lost and another
    /// region takes its datasources.
    #[arg(long, env = "WSGATE_REGION_TTL", default_value = "3s", value_parser = humantime::parse_duration)]
    region_ttl: Duration,
    /// Redis URL of the leader region's config store: this region's store follows its config,
    /// mappers and API keys (same --redis-prefix). Needs --region.
    #[arg(
        long,
        env = "WSGATE_CONFIG_LEADER",
        requires = "region",
        hide_env_values = true
    )]
    config_leader: Option<String>,
    /// How long a cluster keeps every fanout message in JetStream for replay (0s: none).
    #[arg(long, env = "WSGATE_REPLAY_RETENTION", default_value = "5m", value_parser = humantime::parse_duration)]
    replay_retention: Duration,
    /// Payload bytes of each stream's latest messages a node keeps in memory for clients that
    /// resume (0: no ring; replays then come from the cluster's capture only).
    #[arg(long, env = "WSGATE_REPLAY_RING_BYTES", default_value_t = RingLimits::default().bytes)]
    replay_ring_bytes: usize,
    /// Messages of each stream a node keeps in memory for clients that resume, at most.
    #[arg(long, env = "WSGATE_REPLAY_RING_MESSAGES", default_value_t = RingLimits::default().messages)]
    replay_ring_messages: usize,
    /// Bearer token of the admin API (/api/v1); without it the API is disabled.
    #[arg(long, env = "WSGATE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Directory of compiled mappers kept across restarts ("" disables it).
    #[arg(
        long,
        env = "WSGATE_MAPPER_CACHE_DIR",
        default_value = "target/mapper-cache",
        value_parser = possibly_empty_path
    )]
    mapper_cache_dir: PathBuf,
    /// Bytes of compiled mapper code kept in memory; beyond it the least recently used versions
    /// no route runs are evicted (versions in use are kept even past it).
    #[arg(long, env = "WSGATE_MAPPER_CACHE_MEMORY", default_value_t = mapper::DEFAULT_CACHE_MEMORY_BYTES)]
    mapper_cache_memory: u64,
    /// Bytes of compiled mappers kept in --mapper-cache-dir; the least recently used are
    /// removed beyond it.
    #[arg(long, env = "WSGATE_MAPPER_CACHE_DISK", default_value_t = mapper::DEFAULT_CACHE_DISK_BYTES)]
    mapper_cache_disk: u64,
    /// Capabilities a mapper's manifest may be granted: `clock`, `env:NAME` (comma-separated).
    #[arg(long, env = "WSGATE_MAPPER_ALLOW", value_delimiter = ',')]
    mapper_allow: Vec<String>,
    /// Roll back a promoted mapper version when this share of its events fails in a window
    /// (e.g. 0.5); off when unset.
    #[arg(long, env = "WSGATE_MAPPER_AUTO_ROLLBACK")]
    mapper_auto_rollback: Option<f64>,
    /// Fewest events in a window before the auto-rollback judges it.
    #[arg(
        long,
        env = "WSGATE_MAPPER_AUTO_ROLLBACK_MIN_EVENTS",
        default_value_t = 100
    )]
    mapper_auto_rollback_min_events: u64,
    /// Length of an auto-rollback window.
    #[arg(long, env = "WSGATE_MAPPER_AUTO_ROLLBACK_WINDOW", default_value = "10s", value_parser = humantime::parse_duration)]
    mapper_auto_rollback_window: Duration,
    /// Address clients connect to.
    #[arg(long, env = "WSGATE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of the admin endpoints (/metrics, /healthz, /readyz).
    #[arg(long, env = "WSGATE_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    admin_listen: SocketAddr,
    /// Share the client address with other processes (SO_REUSEPORT), to spread connections.
    #[arg(long, env = "WSGATE_REUSE_PORT")]
    reuse_port: bool,
    /// Gateway config (datasources, topics, routes).
    #[arg(long, env = "WSGATE_CONFIG", default_value = "config/gateway.json")]
    config: PathBuf,
    /// Directory of mapper modules; each `<name>.wasm` is mapper `<name>`.
    #[arg(long, env = "WSGATE_MAPPERS_DIR", default_value = "target/mappers")]
    mappers_dir: PathBuf,
    /// Interval between server pings.
    #[arg(long, env = "WSGATE_PING_INTERVAL", default_value = "20s", value_parser = humantime::parse_duration)]
    ping_interval: Duration,
    /// Close a connection whose ping stays unanswered this long.
    #[arg(long, env = "WSGATE_PONG_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pong_timeout: Duration,
    /// Connection lifetime, ended with `serverShutdown` and close 1001.
    #[arg(long, env = "WSGATE_MAX_LIFETIME", default_value = "24h", value_parser = humantime::parse_duration)]
    max_lifetime: Duration,
    /// Largest client message, in bytes (close 1009 above).
    #[arg(long, env = "WSGATE_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    max_message_bytes: usize,
    /// Streams per connection.
    #[arg(long, env = "WSGATE_MAX_STREAMS", default_value_t = 1024)]
    max_streams: usize,
    /// Client messages allowed in any one-second window (close 1008 beyond).
    #[arg(long, env = "WSGATE_MESSAGES_PER_SEC", default_value_t = 5)]
    messages_per_sec: usize,
    /// Outbound bytes queued per connection before it is closed as a slow consumer (4100).
    #[arg(long, env = "WSGATE_OUTBOX_BYTES", default_value_t = 4 * 1024 * 1024)]
    outbox_bytes: usize,
    /// The kernel's send buffer per client socket (SO_SNDBUF; the kernel doubles it). Unset,
    /// the kernel sizes it, up to megabytes a slow reader's stale messages can sit in; small,
    /// a slow reader's backlog stays in the outbox, where its streams' overflow policies apply.
    #[arg(long, env = "WSGATE_SOCKET_SEND_BUFFER")]
    socket_send_buffer: Option<usize>,
    /// Bytes of replies (answers, pongs) queued per connection before it is closed as a slow
    /// consumer: bounds what a client that sends requests and never reads can make the node hold.
    #[arg(long, env = "WSGATE_REPLY_BYTES", default_value_t = 256 * 1024)]
    reply_bytes: usize,
    /// Accept well-formed streams no topic serves, silently, as Binance does.
    #[arg(long, env = "WSGATE_ACCEPT_UNKNOWN_STREAMS")]
    accept_unknown_streams: bool,
    /// Open client connections per node; more get HTTP 503.
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS", default_value_t = 200_000)]
    max_connections: usize,
    /// How long a listen key lives after its creation or last keepalive.
    #[arg(long, env = "WSGATE_LISTEN_KEY_VALIDITY", default_value = "60m", value_parser = humantime::parse_duration)]
    listen_key_validity: Duration,
    /// Let a listen key be used from any address (by default it works only from the address
    /// that created it).
    #[arg(long, env = "WSGATE_LISTEN_KEY_UNBOUND")]
    listen_key_unbound: bool,
    /// How often the node checks the listen keys its connections hold (revocations and expiries
    /// are seen within this interval).
    #[arg(long, env = "WSGATE_LISTEN_KEY_CHECK_EVERY", default_value = "500ms", value_parser = humantime::parse_duration)]
    listen_key_check_every: Duration,
    /// `/api/v3/userDataStream` requests allowed per client address per minute.
    #[arg(long, env = "WSGATE_LISTEN_KEY_REQUESTS_PER_IP", default_value_t = 60)]
    listen_key_requests_per_ip: u32,
    /// Listen key creations allowed per API key per minute.
    #[arg(long, env = "WSGATE_LISTEN_KEY_CREATES_PER_KEY", default_value_t = 10)]
    listen_key_creates_per_key: u32,
    /// WebSocket API methods forwarded to the trade backend, comma-separated.
    #[arg(
        long,
        env = "WSGATE_TRADE_METHODS",
        value_delimiter = ',',
        default_value = "order.place,order.cancel,order.status,openOrders.status,account.status"
    )]
    trade_methods: Vec<String>,
    /// Trade actions are NATS requests on `<prefix>.<method>`.
    #[arg(
        long,
        env = "WSGATE_TRADE_SUBJECT_PREFIX",
        default_value = "wsgate.trade"
    )]
    trade_subject_prefix: String,
    /// How long the trade backend may take before the client gets -1007.
    #[arg(long, env = "WSGATE_TRADE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    trade_timeout: Duration,
    /// The NATS server the trade backend answers on (default: the cluster's, `--nats`).
    #[arg(long, env = "WSGATE_TRADE_NATS")]
    trade_nats: Option<String>,
    /// Look API keys up through the exchange's auth service, NATS requests on this subject
    /// (instead of the config store); see docs/private.md.
    #[arg(long, env = "WSGATE_AUTH_SUBJECT")]
    auth_subject: Option<String>,
    /// How long the auth service may take; past it the request is refused (fails closed).
    #[arg(long, env = "WSGATE_AUTH_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    auth_timeout: Duration,
    /// Keys whose answers the node caches at most.
    #[arg(long, env = "WSGATE_AUTH_CACHE_KEYS", default_value_t = 100_000)]
    auth_cache_keys: usize,
    /// How long a cached answer is trusted (a key revoked by the service stops working within it).
    #[arg(long, env = "WSGATE_AUTH_CACHE_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    auth_cache_ttl: Duration,
    /// Client messages per second on a WebSocket API connection (`/ws-api/v3`).
    #[arg(long, env = "WSGATE_API_MESSAGES_PER_SEC", default_value_t = 200)]
    api_messages_per_sec: usize,
    /// On SIGTERM, how long the node stays unready (`/readyz` 503) but serving, so load
    /// balancers stop sending it clients, before it closes any.
    #[arg(long, env = "WSGATE_DRAIN_GRACE", default_value = "0s", value_parser = humantime::parse_duration)]
    drain_grace: Duration,
    /// Then the time over which its clients are closed (`serverShutdown`, 1001), evenly, so
    /// they do not all reconnect to the other nodes at once; 0s closes them all at once.
    #[arg(long, env = "WSGATE_DRAIN_WINDOW", default_value = "0s", value_parser = humantime::parse_duration)]
    drain_window: Duration,
    /// Longest the clients may take to close after the drain window, before the node exits.
    #[arg(long, env = "WSGATE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,
    /// The dashboard's files (the build of `dashboard/`), served on the admin listener at
    /// `/dashboard/`; "" serves no dashboard.
    #[arg(long, env = "WSGATE_DASHBOARD_DIR", default_value = "target/dashboard", value_parser = possibly_empty_path)]
    dashboard_dir: PathBuf,
    /// CPU time per mapper call (plus the per-event allowance).
    #[arg(long, env = "WSGATE_MAPPER_TIMEOUT", default_value = "20ms", value_parser = humantime::parse_duration)]
    mapper_timeout: Duration,
    /// Extra CPU time per event in a mapper batch.
    #[arg(long, env = "WSGATE_MAPPER_EVENT_TIMEOUT", default_value = "2ms", value_parser = humantime::parse_duration)]
    mapper_event_timeout: Duration,
    /// Linear memory cap per mapper instance, in bytes.
    #[arg(long, env = "WSGATE_MAPPER_MEMORY_BYTES", default_value_t = 64 << 20)]
    mapper_memory_bytes: usize,
    #[command(flatten)]
    edge: edge_args::EdgeArgs,
    /// Tokio worker threads (default: one per core).
    #[arg(long, env = "WSGATE_WORKER_THREADS")]
    worker_threads: Option<usize>,
    /// Tests only: also serve an echo endpoint on this path (every message sent back), through
    /// the same session as every client, for conformance suites (docs/autobahn.md).
    #[arg(long, hide = true)]
    test_echo_path: Option<String>,
}

impl ServeArgs {
    fn settings(&self) -> NodeSettings {
        let node_id = self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let cache = &self.mapper_cache_dir;
        NodeSettings {
            node_id,
            listen: self.listen,
            admin_listen: self.admin_listen,
            admin_token: self.admin_token.clone().filter(|t| !t.is_empty()),
            reuse_port: self.reuse_port,
            redis: self.redis.clone().filter(|r| !r.is_empty()),
            redis_prefix: self.redis_prefix.clone(),
            nats: self.nats.clone().filter(|n| !n.is_empty()),
            heartbeat: self.heartbeat,
            peer_ttl: self.peer_ttl,
            bus_probe_every: self.bus_probe_every,
            replay_retention: self.replay_retention,
            region: self.region.clone().map(|name| RegionSettings {
                name,
                heartbeat: self.heartbeat,
                ttl: self.region_ttl,
            }),
            config_leader: self.config_leader.clone().filter(|l| !l.is_empty()),
            replay_ring: RingLimits {
                messages: self.replay_ring_messages,
                bytes: self.replay_ring_bytes,
            },
            config_path: self.config.clone(),
            mappers_dir: self.mappers_dir.clone(),
            mapper_cache_dir: (!cache.as_os_str().is_empty()).then(|| cache.clone()),
            mapper_allow: self.mapper_allow.clone(),
            auto_rollback: self.mapper_auto_rollback.map(|error_ratio| AutoRollback {
                error_ratio,
                min_events: self.mapper_auto_rollback_min_events,
                window: self.mapper_auto_rollback_window,
            }),
            ws: WsSettings {
                ping_interval: self.ping_interval,
                pong_timeout: self.pong_timeout,
                max_lifetime: self.max_lifetime,
                max_message_bytes: self.max_message_bytes,
                max_streams: self.max_streams,
                messages_per_sec: self.messages_per_sec,
                outbox_bytes: self.outbox_bytes,
                socket_send_buffer: self.socket_send_buffer,
                reply_bytes: self.reply_bytes,
                admission: self.edge.admission(),
                accept_unknown_streams: self.accept_unknown_streams,
                max_connections: self.max_connections,
                api_messages_per_sec: self.api_messages_per_sec,
                ..WsSettings::default()
            },
            tls: self.edge.tls(),
            admin_tls: self.edge.admin_tls(),
            trade: TradeSettings {
                methods: self.trade_methods.clone(),
                subject_prefix: self.trade_subject_prefix.clone(),
                timeout: self.trade_timeout,
            },
            trade_nats: self.trade_nats.clone(),
            delegated_keys: self.auth_subject.clone().map(|subject| DelegatedSettings {
                subject,
                timeout: self.auth_timeout,
                cache_keys: self.auth_cache_keys,
                cache_ttl: self.auth_cache_ttl,
            }),
            listen_keys: ListenKeySettings {
                validity: self.listen_key_validity,
                bind_ip: !self.listen_key_unbound,
                check_every: self.listen_key_check_every,
                requests_per_ip_per_minute: self.listen_key_requests_per_ip,
                creates_per_key_per_minute: self.listen_key_creates_per_key,
            },
            mapper_limits: MapperLimits {
                call_timeout: self.mapper_timeout,
                per_event_timeout: self.mapper_event_timeout,
                max_memory_bytes: self.mapper_memory_bytes,
                cache_memory_bytes: self.mapper_cache_memory,
                cache_disk_bytes: self.mapper_cache_disk,
                ..MapperLimits::default()
            },
            drain: Drain {
                grace: self.drain_grace,
                window: self.drain_window,
            },
            shutdown_timeout: self.shutdown_timeout,
            dashboard_dir: (!self.dashboard_dir.as_os_str().is_empty())
                .then(|| self.dashboard_dir.clone()),
        }
    }
}

fn main() -> anyhow::Result<()> {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes no pointers; it fails harmlessly (EINVAL)
    // on kernels without it.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve(args) => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = args.worker_threads {
                runtime.worker_threads(threads);
            }
            let runtime = runtime.enable_all().build()?;
            runtime.block_on(async {
                let stop = CancellationToken::new();
                tokio::spawn(cancel_on_signal(stop.clone()));
                let Some(echo_path) = args.test_echo_path.clone() else {
                    return node::run(args.settings(), stop).await;
                };
                let node = node::start(args.settings(), |variants, services| {
                    let standard = dialect::standard(variants, services);
                    standard.with(Echo::new(variants, echo_path))
                })
                .await?;
                stop.cancelled().await;
                node.shut_down().await;
                anyhow::Ok(())
            })?;
            // Route and source threads may be blocked on a queue: do not wait for them.
            runtime.shutdown_timeout(Duration::from_millis(100));
            Ok(())
        }
        Command::Config { admin, command } => exit_on_error(cli::config(&admin, command)),
        Command::Mapper { admin, command } => exit_on_error(cli::mapper(&admin, command)),
        Command::Key { admin, command } => exit_on_error(cli::key(&admin, command)),
    }
}

/// A path flag whose empty value means "none" (clap's path parser refuses an empty value).
/// A valid `--region` name (as in a datasource's `regions`).
fn region_name(value: &str) -> Result<String, String> {
    if wsgate::config::is_region_name(value) {
        Ok(value.to_string())
    } else {
        Err("a region name is 1 to 32 of a-z, 0-9, `-` and `_`".to_string())
    }
}

fn possibly_empty_path(value: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(value))
}

/// Operator commands print a one-line error and exit with 1 instead of a debug dump.
fn exit_on_error(result: anyhow::Result<()>) -> anyhow::Result<()> {
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("WSGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn cancel_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    stop.cancel();
}
