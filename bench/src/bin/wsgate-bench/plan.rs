//! Assignment of connections to gateway URLs, source addresses and streams.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio_rustls::TlsConnector;

use crate::args::{parse_ip_list, split_slice, Args, SubscribeMode};
use crate::tls::TlsDialer;

/// Ephemeral ports usable per (source address, destination) pair, with some headroom
/// below the 28,232 that `ip_local_port_range` gives on the target machine.
pub const PORTS_PER_PAIR: usize = 28_000;

/// Above this many connections per (source, destination) pair without `--source-ips`,
/// loopback targets get a default source range.
const AUTO_SOURCE_THRESHOLD: usize = 25_000;

/// Default source range for loopback targets.
const AUTO_SOURCE_RANGE: &str = "127.0.0.2-127.0.0.254";

/// One gateway endpoint: its base URL and the resolved socket address.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL without trailing slash, e.g. `ws://127.0.0.1:8080`.
    pub base: String,
    /// Resolved address to connect to.
    pub addr: SocketAddr,
    /// For `wss://`: how its connections start TLS.
    pub tls: Option<TlsDialer>,
}

/// What one connection does: where it connects from and to, and which streams it takes.
#[derive(Debug, Clone)]
pub struct ConnPlan {
    /// Global connection number (0-based over all processes); used as SUBSCRIBE id.
    pub id: u64,
    /// Index into the target list.
    pub target: usize,
    /// Source address to bind, if any.
    pub source: Option<IpAddr>,
    /// Stream names this connection subscribes to.
    pub streams: Vec<Arc<str>>,
}

impl Target {
    /// Parses a `ws://` or `wss://host[:port][/prefix]` base URL and resolves it; `wss://`
    /// needs `tls` (the client configuration of `--ca-cert`).
    pub async fn resolve(url: &str, tls: Option<&TlsConnector>) -> Result<Target> {
        let base = url.trim_end_matches('/').to_string();
        let uri: http::Uri = base.parse().with_context(|| format!("bad URL {url:?}"))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => bail!("URL must start with ws:// or wss://: {url}"),
        };
        if uri.query().is_some() {
            bail!("give the base URL without a query: {url}");
        }
        let host = uri.host().context("URL has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tls = match (secure, tls) {
            (false, _) => None,
            (true, Some(connector)) => Some(TlsDialer::new(connector.clone(), host)?),
            (true, None) => bail!("{url}: wss:// needs --ca-cert"),
        };
        let host_port = format!("{host}:{port}");
        let addr = tokio::net::lookup_host(&host_port)
            .await
            .with_context(|| format!("cannot resolve {host_port}"))?
            .next()
            .with_context(|| format!("no address for {host_port}"))?;
        Ok(Target { base, addr, tls })
    }

    /// Full request URL for a connection taking `streams` in the given mode.
    pub fn request_url(&self, mode: SubscribeMode, streams: &[Arc<str>]) -> String {
        match mode {
            SubscribeMode::Url => {
                let joined: Vec<&str> = streams.iter().map(|s| &**s).collect();
                format!(
                    "{}/stream?streams={}&timeUnit=MICROSECOND",
                    self.base,
                    joined.join("/")
                )
            }
            SubscribeMode::Message => format!("{}/stream?timeUnit=MICROSECOND", self.base),
            SubscribeMode::Raw => {
                format!("{}/ws/{}?timeUnit=MICROSECOND", self.base, streams[0])
            }
            SubscribeMode::Hashkey => format!("{}{}", self.base, crate::hashkey::PATH),
        }
    }
}

/// Picks the source address list for the whole run: `--source-ips`, or a loopback default
/// when there are too many connections per destination, or none (the kernel chooses).
pub fn source_ips(args: &Args, targets: &[Target]) -> Result<Vec<IpAddr>> {
    if let Some(list) = &args.source_ips {
        return Ok(list.0.clone());
    }
    let per_target = args.connections.div_ceil(targets.len());
    if per_target <= AUTO_SOURCE_THRESHOLD {
        return Ok(Vec::new());
    }
    if targets
        .iter()
        .all(|t| t.addr.ip().is_loopback() && t.addr.is_ipv4())
    {
        if args.child.is_none() {
            eprintln!(
                "note: {per_target} connections per URL; binding sources {AUTO_SOURCE_RANGE}"
            );
        }
        return Ok(parse_ip_list(AUTO_SOURCE_RANGE)?.0);
    }
    bail!(
        "{per_target} connections per URL exceed the {PORTS_PER_PAIR} ports of one source \
         address; give --source-ips"
    )
}

/// Builds the plans of process `proc_idx` of `procs`: global connections
/// `g ≡ proc_idx (mod procs)`, URL `g mod U`, streams rotating from `g·spc`, and source
/// addresses from this process's disjoint slice, balanced per URL.
pub fn build_plans(
    args: &Args,
    n_targets: usize,
    all_sources: &[IpAddr],
    proc_idx: usize,
    procs: usize,
) -> Vec<ConnPlan> {
    let streams: Vec<Arc<str>> = args.streams.iter().map(|s| Arc::from(s.as_str())).collect();
    let spc = args.effective_streams_per_conn();
    let sources = split_slice(all_sources, proc_idx, procs);
    let mut per_target = vec![0usize; n_targets];
    let mut plans = Vec::new();
    for g in (proc_idx..args.connections).step_by(procs) {
        let target = g % n_targets;
        let nth = per_target[target];
        per_target[target] += 1;
        let source = (!sources.is_empty()).then(|| sources[nth % sources.len()]);
        let first = g * spc;
        let conn_streams = (0..spc)
            .map(|k| streams[(first + k) % streams.len()].clone())
            .collect();
        plans.push(ConnPlan {
            id: g as u64,
            target,
            source,
            streams: conn_streams,
        });
    }
    plans
}

/// Refuses runs where some (source address, destination) pair would need more than
/// [`PORTS_PER_PAIR`] ephemeral ports. Unbound sockets of all processes share one source.
pub fn check_ports(
    args: &Args,
    addrs: &[SocketAddr],
    sources: &[IpAddr],
    procs: usize,
) -> Result<()> {
    let mut pairs: HashMap<(Option<IpAddr>, SocketAddr), usize> = HashMap::new();
    for i in 0..procs {
        for p in build_plans(args, addrs.len(), sources, i, procs) {
            *pairs.entry((p.source, addrs[p.target])).or_default() += 1;
        }
    }
    if let Some(((src, dst), n)) = pairs.into_iter().max_by_key(|e| e.1) {
        if n > PORTS_PER_PAIR {
            let src = src.map_or("(kernel's choice)".to_string(), |s| s.to_string());
            bail!(
                "{n} connections from {src} to {dst} exceed the {PORTS_PER_PAIR} ephemeral \
                 ports of one (source, destination) pair; add --source-ips"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["b", "--url", "ws://a,ws://b"];
        v.extend_from_slice(extra);
        Args::parse_from(v)
    }

    #[test]
    fn streams_rotate_evenly() {
        let a = args(&[
            "--connections",
            "6",
            "--streams",
            "s0,s1,s2",
            "--streams-per-conn",
            "2",
        ]);
        let plans = build_plans(&a, 2, &[], 0, 1);
        let mut count: HashMap<String, usize> = HashMap::new();
        for p in &plans {
            assert_eq!(p.streams.len(), 2);
            assert_ne!(p.streams[0], p.streams[1]);
            for s in &p.streams {
                *count.entry(s.to_string()).or_default() += 1;
            }
        }
        assert!(count.values().all(|&n| n == 4), "{count:?}");
        assert_eq!(plans.iter().filter(|p| p.target == 0).count(), 3);
    }

    #[test]
    fn processes_take_disjoint_connections_and_sources() {
        let a = args(&[
            "--connections",
            "100",
            "--source-ips",
            "127.0.0.2-127.0.0.9",
        ]);
        let ips = a.source_ips.clone().unwrap().0;
        let mut seen_ids = Vec::new();
        let mut seen_ips = Vec::new();
        for i in 0..3 {
            let plans = build_plans(&a, 2, &ips, i, 3);
            let mut mine: Vec<IpAddr> = plans.iter().filter_map(|p| p.source).collect();
            mine.sort();
            mine.dedup();
            assert!(mine.iter().all(|ip| !seen_ips.contains(ip)));
            seen_ips.extend(mine);
            seen_ids.extend(plans.iter().map(|p| p.id));
        }
        seen_ids.sort();
        assert_eq!(seen_ids, (0..100).collect::<Vec<u64>>());
        assert_eq!(seen_ips.len(), 8);
    }

    #[test]
    fn pairs_are_balanced() {
        let a = args(&["--connections", "40", "--source-ips", "127.0.0.2-127.0.0.5"]);
        let ips = a.source_ips.clone().unwrap().0;
        let plans = build_plans(&a, 2, &ips, 0, 1);
        let mut pairs: HashMap<(IpAddr, usize), usize> = HashMap::new();
        for p in &plans {
            *pairs.entry((p.source.unwrap(), p.target)).or_default() += 1;
        }
        assert_eq!(pairs.len(), 8);
        assert!(pairs.values().all(|&n| n == 5));
    }

    #[tokio::test]
    async fn wss_needs_a_ca() {
        let plain = Target::resolve("ws://127.0.0.1:9/", None).await.unwrap();
        assert!(plain.tls.is_none());
        assert_eq!(plain.base, "ws://127.0.0.1:9");
        let e = Target::resolve("wss://127.0.0.1", None).await.unwrap_err();
        assert!(e.to_string().contains("--ca-cert"), "{e}");
        assert!(Target::resolve("http://127.0.0.1", None).await.is_err());
    }

    #[test]
    fn port_exhaustion_is_refused() {
        let a = args(&[
            "--connections",
            "60000",
            "--procs",
            "4",
            "--source-ips",
            "127.0.0.2",
        ]);
        let ips = a.source_ips.clone().unwrap().0;
        let dst: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(check_ports(&a, &[dst], &ips, 4).is_err());
        let ips = parse_ip_list("127.0.0.2-127.0.0.5").unwrap().0;
        assert!(check_ports(&a, &[dst], &ips, 4).is_ok());
        // The same destination twice counts once.
        let a = args(&["--connections", "30000"]);
        assert!(check_ports(&a, &[dst, dst], &[], 1).is_err());
        let other: SocketAddr = "127.0.0.1:81".parse().unwrap();
        assert!(check_ports(&a, &[dst, other], &[], 1).is_ok());
    }
}
