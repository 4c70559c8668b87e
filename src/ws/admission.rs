//! Who may open a connection, decided before any WebSocket state exists: a bound on
//! connections still in their handshake, the node's connection limit (exact: a connection
//! holds a [`Ticket`] from the moment it is admitted until its session ends), a per-address
//! cap and connect rate, an optional Origin allow-list, and the real client address behind
//! trusted proxies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{header, HeaderMap, StatusCode};
use ipnet::IpNet;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits applied before a connection is upgraded.
#[derive(Debug, Clone)]
pub struct AdmissionSettings {
    /// Open connections per client address (0: no cap).
    pub max_per_ip: u32,
    /// New connections per client address per second, sustained (0: no limit).
    pub connects_per_ip_per_sec: u32,
    /// New connections a client address may open at once before the rate applies.
    pub connect_burst: u32,
    /// Connections accepted but not yet upgraded (TLS and HTTP handshakes); further
    /// connections wait in the listen queue.
    pub max_handshakes: usize,
    /// How long a connection may take from accept to its request head (TLS included).
    pub handshake_timeout: Duration,
    /// Longest request target (path and query), in bytes (HTTP 414 above).
    pub max_url_bytes: usize,
    /// Largest request head, in bytes (HTTP 431 above).
    pub max_header_bytes: usize,
    /// Browser origins allowed to connect; empty: any. Requests without `Origin` (not from a
    /// browser) are always allowed.
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client (e.g. HAProxy with `option forwardfor`).
    pub trusted_proxies: Vec<IpNet>,
    /// Connections from the trusted proxies begin with a PROXY protocol v2 header naming the
    /// client (HAProxy's `send-proxy-v2`, for TLS passed through to the node).
    pub proxy_protocol: bool,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        AdmissionSettings {
            max_per_ip: 0,
            connects_per_ip_per_sec: 0,
            connect_burst: 300,
            max_handshakes: 1024,
            handshake_timeout: Duration::from_secs(10),
            max_url_bytes: 8 * 1024,
            max_header_bytes: 16 * 1024,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
        }
    }
}

/// Why a connection was refused before its upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The node holds its maximum of connections.
    NodeFull,
    /// The client address holds its maximum of connections.
    TooManyFromAddress,
    /// The client address connects faster than its rate.
    TooFast,
}

impl Refused {
    /// The HTTP status of the refusal.
    pub fn status(self) -> StatusCode {
        match self {
            Refused::NodeFull => StatusCode::SERVICE_UNAVAILABLE,
            Refused::TooManyFromAddress | Refused::TooFast => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The text of the refusal.
    pub fn message(self) -> &'static str {
        match self {
            Refused::NodeFull => "Node at connection limit",
            Refused::TooManyFromAddress => "Too many connections from this address",
            Refused::TooFast => "Too many connection attempts from this address",
        }
    }

    /// The `reason` label it is counted under.
    pub fn label(self) -> &'static str {
        match self {
            Refused::NodeFull => "node_full",
            Refused::TooManyFromAddress => "address_cap",
            Refused::TooFast => "address_rate",
        }
    }
}

const SHARDS: usize = 64;

/// The node's admission state.
pub struct Admission {
    settings: AdmissionSettings,
    max_connections: usize,
    /// Connections admitted and not yet ended (upgrading or in session).
    open: AtomicUsize,
    per_ip: Box<[Mutex<HashMap<IpAddr, u32>>]>,
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    admits: AtomicU64,
    handshakes: Arc<Semaphore>,
}

impl Admission {
    /// Admission for a node holding at most `max_connections`.
    pub fn new(settings: AdmissionSettings, max_connections: usize) -> Arc<Self> {
        let rate = NonZeroU32::new(settings.connects_per_ip_per_sec).map(|per_sec| {
            let burst = NonZeroU32::new(settings.connect_burst).unwrap_or(per_sec);
            RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst))
        });
        Arc::new(Admission {
            handshakes: Arc::new(Semaphore::new(settings.max_handshakes.max(1))),
            per_ip: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            open: AtomicUsize::new(0),
            admits: AtomicU64::new(0),
            rate,
            max_connections,
            settings,
        })
    }

    /// The limits.
    pub fn settings(&self) -> &AdmissionSettings {
        &self.settings
    }

    /// Connections admitted and not yet ended.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// A place among the connections in handshake; waits while all are taken.
    pub async fn handshake_slot(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.handshakes)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Admits a connection from `ip`, or says why not. The ticket is the connection's place
    /// until it is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        if let Some(rate) = &self.rate {
            if self.admits.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
                rate.retain_recent();
            }
            if rate.check_key(&ip).is_err() {
                return Err(Refused::TooFast);
            }
        }
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max_connections).then_some(open + 1)
            })
            .map_err(|_| Refused::NodeFull)?;
        if self.settings.max_per_ip > 0 {
            let mut shard = self.shard(ip).lock();
            let count = shard.entry(ip).or_insert(0);
            if *count >= self.settings.max_per_ip {
                drop(shard);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::TooManyFromAddress);
            }
            *count += 1;
        }
        Ok(Ticket {
            admission: Arc::clone(self),
            ip,
        })
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        let spread = match ip {
            IpAddr::V4(v4) => u32::from(v4) as usize,
            IpAddr::V6(v6) => (u128::from(v6) as usize) ^ ((u128::from(v6) >> 64) as usize),
        };
        &self.per_ip[spread.wrapping_mul(0x9E37_79B9) % SHARDS]
    }

    fn release(&self, ip: IpAddr) {
        if self.settings.max_per_ip > 0 {
            let mut shard = self.shard(ip).lock();
            if let Some(count) = shard.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    shard.remove(&ip);
                }
            }
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the last address
    /// in `X-Forwarded-For` that is not one of the trusted proxies.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.is_trusted(ip) => continue,
                Ok(ip) => return canonical(ip),
                // A garbled entry ends the chain the proxies vouch for.
                Err(_) => break,
            }
        }
        peer
    }

    /// True when a connection from `peer` must begin with a PROXY protocol header.
    pub fn expects_proxy_header(&self, peer: IpAddr) -> bool {
        self.settings.proxy_protocol && self.is_trusted(peer)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.settings
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&ip))
    }

    /// True when the request's `Origin` (if any) is allowed.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        if self.settings.allowed_origins.is_empty() {
            return true;
        }
        match headers.get(header::ORIGIN) {
            None => true,
            Some(origin) => self
                .settings
                .allowed_origins
                .iter()
                .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes())),
        }
    }
}

/// An IPv4 client on a dual-stack socket is reported as its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An admitted connection's place; dropping it frees the place.
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn caps_per_address_and_node_exactly() {
        let settings = AdmissionSettings {
            max_per_ip: 2,
            ..AdmissionSettings::default()
        };
        let admission = Admission::new(settings, 3);
        let a1 = admission.admit(ip("10.0.0.1")).unwrap();
        let _a2 = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.1")).err(),
            Some(Refused::TooManyFromAddress)
        );
        let _b1 = admission.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.3")).err(),
            Some(Refused::NodeFull)
        );
        drop(a1);
        assert_eq!(admission.open(), 2);
        let _a3 = admission.admit(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn the_node_limit_holds_when_many_threads_admit_at_once() {
        let admission = Admission::new(AdmissionSettings::default(), 100);
        let tickets: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|t| {
                    let admission = &admission;
                    scope.spawn(move || {
                        (0..50)
                            .filter_map(|i| admission.admit(ip(&format!("10.{t}.0.{i}"))).ok())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert_eq!(tickets.len(), 100);
        assert_eq!(admission.open(), 100);
    }

    #[test]
    fn connect_rate_is_per_address() {
        let settings = AdmissionSettings {
            connects_per_ip_per_sec: 1,
            connect_burst: 2,
            ..AdmissionSettings::default()
        };
        let admission = Admission::new(settings, 100);
        let _t: Vec<_> = (0..2)
            .map(|_| admission.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(
            admission.admit(ip("10.0.0.1")).err(),
            Some(Refused::TooFast)
        );
        assert!(admission.admit(ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let settings = AdmissionSettings {
            trusted_proxies: vec!["10.1.0.0/16".parse().unwrap()],
            ..AdmissionSettings::default()
        };
        let admission = Admission::new(settings, 100);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9, 10.1.0.7".parse().unwrap(),
        );
        assert_eq!(
            admission.client_address(ip("10.1.0.2"), &headers),
            ip("203.0.113.9")
        );
        assert_eq!(
            admission.client_address(ip("192.0.2.1"), &headers),
            ip("192.0.2.1"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            admission.client_address(ip("10.1.0.2"), &HeaderMap::new()),
            ip("10.1.0.2")
        );
    }

    #[test]
    fn origins_are_checked_only_when_listed() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, "https://evil.test".parse().unwrap());
        let open = Admission::new(AdmissionSettings::default(), 1);
        assert!(open.origin_allowed(&headers));
        let listed = Admission::new(
            AdmissionSettings {
                allowed_origins: vec!["https://app.exchange.test".into()],
                ..AdmissionSettings::default()
            },
            1,
        );
        assert!(!listed.origin_allowed(&headers));
        assert!(listed.origin_allowed(&HeaderMap::new()));
        headers.insert(header::ORIGIN, "https://APP.exchange.test".parse().unwrap());
        assert!(listed.origin_allowed(&headers));
    }
}
