//! Command-line options and the small parsers behind them (durations, source-address ranges).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

/// Connections one process may hold before `--procs` is chosen automatically.
pub const AUTO_PROCS_THRESHOLD: usize = 15_000;

/// Hard ceiling of open files per process on the target machine (cannot be raised).
pub const MAX_FILES_PER_PROC: usize = 20_000;

/// Load generator and latency meter for Binance-compatible WebSocket stream servers.
///
/// Opens `--connections` WebSocket connections (spread over the `--url`s and the source
/// addresses), subscribes each to `--streams-per-conn` streams, ramps at `--ramp-per-sec`,
/// waits `--warmup`, then measures end-to-end latency (now − event time `E`, in µs) and
/// sequence gaps for `--duration`. With `--subscribe hashkey` the connections speak HashKey's
/// public streams (v2) instead, whose event times are milliseconds: latency then has 1 ms
/// resolution.
#[derive(Parser, Debug, Clone)]
#[command(name = "wsgate-bench", version, about)]
pub struct Args {
    /// Gateway base URL (repeat or comma-separate for several processes), e.g. ws://127.0.0.1:8080;
    /// wss:// connects over TLS (give --ca-cert).
    #[arg(long = "url", required = true, value_delimiter = ',')]
    pub urls: Vec<String>,

    /// CA certificates (PEM) that wss:// servers are verified against; the name checked is
    /// the URL's host. Every connection makes a full TLS handshake (no session resumption).
    #[arg(long)]
    pub ca_cert: Option<std::path::PathBuf>,

    /// TLS key exchange groups offered, most preferred first (a TLS 1.3 client sends its key
    /// share for the first; the server takes the first it supports). The default is what
    /// browsers and OpenSSL prefer; rustls' own ring provider puts secp384r1 first.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "x25519,secp256r1,secp384r1"
    )]
    pub tls_groups: Vec<KxGroup>,

    /// Total number of WebSocket connections to open.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,

    /// Stream names, comma-separated; connections take them in rotation.
    #[arg(long, value_delimiter = ',', default_value = "btcusdt@trade")]
    pub streams: Vec<String>,

    /// Streams subscribed by each connection (taken in rotation from --streams).
    #[arg(long, default_value_t = 1)]
    pub streams_per_conn: usize,

    /// How to subscribe: in the URL (/stream?streams=..), with a SUBSCRIBE message,
    /// raw /ws/<stream> (one stream per connection, unwrapped payloads), or HashKey's
    /// /quote/ws/v2 (one `sub` per stream; event times in ms, so latency has 1 ms resolution).
    /// Streams are named as Binance names them in every mode (btcusdt@trade is HashKey's
    /// symbol BTCUSDT, topic trade).
    #[arg(long, value_enum, default_value_t = SubscribeMode::Url)]
    pub subscribe: SubscribeMode,

    /// Length of the measurement window (e.g. 30s, 2m, 500ms).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub duration: Duration,

    /// Time to wait after the ramp before measuring.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub warmup: Duration,

    /// New connections per second (over all processes).
    #[arg(long, default_value_t = 5000)]
    pub ramp_per_sec: u32,

    /// Source addresses to bind, e.g. 127.0.0.2-127.0.0.250 or 127.0.0.2,127.0.0.3.
    /// Default: let the kernel choose (loopback targets above 25K connections per URL
    /// get 127.0.0.2-127.0.0.254 automatically).
    #[arg(long, value_parser = parse_ip_list)]
    pub source_ips: Option<IpList>,

    /// Worker processes (each holds at most ~19K sockets). Default: 1, or
    /// ceil(connections / 15000) above 15K connections.
    #[arg(long)]
    pub procs: Option<usize>,

    /// Tokio worker threads per process (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Gateway process ids whose VmRSS is summed (comma-separated).
    #[arg(long = "gateway-pid", value_delimiter = ',')]
    pub gateway_pids: Vec<u32>,

    /// Also write the final report as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,

    /// Idle mode: hold subscribed connections through the window, expect no data,
    /// report memory.
    #[arg(long)]
    pub idle: bool,

    /// At most this many connections (over all processes) in their connect + handshake
    /// (+ SUBSCRIBE) at once; the others wait for a turn (0: no limit, the ramp alone paces
    /// them). With a
    /// very high --ramp-per-sec this connects as fast as the server completes handshakes,
    /// without overflowing its listen queue.
    #[arg(long, default_value_t = 0)]
    pub max_connecting: usize,

    /// Connect attempts per connection before it counts as failed.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,

    /// Timeout for TCP connect + WebSocket handshake + SUBSCRIBE reply.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,

    /// Fraction of connections allowed to fail before the exit code is non-zero.
    #[arg(long, default_value_t = 0.01)]
    pub fail_tolerance: f64,

    /// Give up waiting for the ramp to settle after this long.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub ramp_timeout: Duration,

    /// Suppress the per-second progress lines.
    #[arg(long)]
    pub quiet: bool,

    /// Internal: run as child `i/K` of a multi-process run.
    #[arg(long, hide = true, value_parser = parse_child)]
    pub child: Option<(usize, usize)>,
}

/// Where a connection puts its stream list.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscribeMode {
    /// `/stream?streams=a/b&timeUnit=MICROSECOND`
    Url,
    /// `/stream?timeUnit=MICROSECOND` then `{"method":"SUBSCRIBE",..}`
    Message,
    /// `/ws/<stream>?timeUnit=MICROSECOND` (bare payloads, one stream per connection)
    Raw,
    /// `/quote/ws/v2` then one `{"topic":..,"event":"sub","params":{"symbol":..}}` per stream
    /// (HashKey's public streams: trade id `data.v`, event time `data.t` in ms, taken as
    /// `t × 1000` µs, so latency reads up to 1 ms high)
    Hashkey,
}

/// A TLS key exchange group.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum KxGroup {
    /// X25519 (Curve25519 ECDH).
    X25519,
    /// ECDH on NIST P-256.
    Secp256r1,
    /// ECDH on NIST P-384.
    Secp384r1,
}

/// An ordered list of source addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpList(pub Vec<IpAddr>);

impl Args {
    /// Number of worker processes for this run (explicit `--procs` or automatic).
    pub fn effective_procs(&self) -> usize {
        match self.procs {
            Some(k) => k.max(1),
            None if self.connections > AUTO_PROCS_THRESHOLD => {
                self.connections.div_ceil(AUTO_PROCS_THRESHOLD)
            }
            None => 1,
        }
    }

    /// Streams per connection after clamping to the number of distinct streams.
    pub fn effective_streams_per_conn(&self) -> usize {
        match self.subscribe {
            SubscribeMode::Raw => 1,
            _ => self.streams_per_conn.clamp(1, self.streams.len().max(1)),
        }
    }

    /// Checks option combinations that clap cannot express.
    pub fn validate(&self) -> Result<()> {
        if self.streams.iter().any(|s| s.is_empty()) || self.streams.is_empty() {
            bail!("--streams must list at least one non-empty stream name");
        }
        if self.connections == 0 {
            bail!("--connections must be at least 1");
        }
        if self.ramp_per_sec == 0 {
            bail!("--ramp-per-sec must be at least 1");
        }
        if self.subscribe == SubscribeMode::Raw && self.streams_per_conn > 1 {
            bail!("--subscribe raw takes exactly one stream per connection");
        }
        if self.subscribe == SubscribeMode::Hashkey {
            if let Some(s) = self
                .streams
                .iter()
                .find(|s| crate::hashkey::split_stream(s).is_none())
            {
                bail!("--subscribe hashkey takes streams as symbol@topic (btcusdt@trade): {s}");
            }
        }
        let procs = self.effective_procs();
        let per_proc = self.connections.div_ceil(procs);
        if per_proc > MAX_FILES_PER_PROC - 500 {
            bail!(
                "{per_proc} connections per process exceed the {MAX_FILES_PER_PROC}-file limit; \
                 raise --procs to at least {}",
                self.connections.div_ceil(AUTO_PROCS_THRESHOLD)
            );
        }
        if let Some(ips) = &self.source_ips {
            if ips.0.len() < procs {
                bail!(
                    "{} source addresses cannot be split over {procs} processes",
                    ips.0.len()
                );
            }
        }
        Ok(())
    }
}

/// Parses `30s`, `500ms`, `2m`, `1h`, `1.5s`, `250us` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => bail!("unknown duration unit {other:?} in {s:?} (use us, ms, s, m, h)"),
    };
    if !secs.is_finite() || secs < 0.0 {
        bail!("invalid duration {s:?}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `--child i/K`.
fn parse_child(s: &str) -> Result<(usize, usize)> {
    let (i, k) = s.split_once('/').context("expected i/K")?;
    let (i, k): (usize, usize) = (i.parse()?, k.parse()?);
    if k == 0 || i >= k {
        bail!("child index {i} out of range for {k} processes");
    }
    Ok((i, k))
}

/// Parses a comma-separated list of addresses and inclusive IPv4 ranges (`a-b`).
pub fn parse_ip_list(s: &str) -> Result<IpList> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: Ipv4Addr = a
                    .trim()
                    .parse()
                    .with_context(|| format!("bad IPv4 {a:?}"))?;
                let b: Ipv4Addr = b
                    .trim()
                    .parse()
                    .with_context(|| format!("bad IPv4 {b:?}"))?;
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a {
                    bail!("empty address range {part:?}");
                }
                if b - a >= 1 << 16 {
                    bail!("address range {part:?} is too large (max 65536 addresses)");
                }
                out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
            }
            None => out.push(
                part.parse()
                    .with_context(|| format!("bad address {part:?}"))?,
            ),
        }
    }
    if out.is_empty() {
        bail!("no source addresses in {s:?}");
    }
    Ok(IpList(out))
}

/// Disjoint, contiguous slice `i` of `k` of a list (sizes differ by at most one).
pub fn split_slice<T: Clone>(items: &[T], i: usize, k: usize) -> Vec<T> {
    let n = items.len();
    let (start, end) = (i * n / k, (i + 1) * n / k);
    items[start..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn ip_ranges() {
        let l = parse_ip_list("127.0.0.2-127.0.0.5").unwrap();
        assert_eq!(l.0.len(), 4);
        assert_eq!(l.0[0], "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(l.0[3], "127.0.0.5".parse::<IpAddr>().unwrap());
        let l = parse_ip_list("127.0.0.9, 127.0.0.255-127.0.1.1,::1").unwrap();
        let s: Vec<String> = l.0.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            s,
            ["127.0.0.9", "127.0.0.255", "127.0.1.0", "127.0.1.1", "::1"]
        );
        assert!(parse_ip_list("127.0.0.5-127.0.0.2").is_err());
        assert!(parse_ip_list("nope").is_err());
        assert!(parse_ip_list("").is_err());
        assert!(parse_ip_list("10.0.0.0-10.2.0.0").is_err());
    }

    #[test]
    fn slices_are_disjoint_and_cover() {
        let items: Vec<u32> = (0..10).collect();
        let parts: Vec<Vec<u32>> = (0..3).map(|i| split_slice(&items, i, 3)).collect();
        assert_eq!(parts.concat(), items);
        assert!(parts.iter().all(|p| p.len() == 3 || p.len() == 4));
        assert_eq!(split_slice(&items, 0, 1), items);
    }

    #[test]
    fn child_arg() {
        assert_eq!(parse_child("1/4").unwrap(), (1, 4));
        assert!(parse_child("4/4").is_err());
        assert!(parse_child("x").is_err());
    }

    #[test]
    fn hashkey_streams_are_symbol_at_topic() {
        let a = |streams: &str| {
            Args::parse_from([
                "b",
                "--url",
                "ws://x",
                "--subscribe",
                "hashkey",
                "--streams",
                streams,
            ])
        };
        assert!(a("btcusdt@trade,ethusdt@depth").validate().is_ok());
        assert!(a("btcusdt@depth@100ms").validate().is_err());
        assert!(a("btcusdt").validate().is_err());
    }

    #[test]
    fn auto_procs() {
        let mut a = Args::parse_from(["b", "--url", "ws://x", "--connections", "15000"]);
        assert_eq!(a.effective_procs(), 1);
        a.connections = 15_001;
        assert_eq!(a.effective_procs(), 2);
        a.connections = 100_000;
        assert_eq!(a.effective_procs(), 7);
        a.procs = Some(3);
        assert_eq!(a.effective_procs(), 3);
        assert!(a.validate().is_err()); // 33K per process is over the file limit
    }
}
