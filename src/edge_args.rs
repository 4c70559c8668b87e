//! The `serve` flags of the connection path: TLS (client and admin listeners) and the limits
//! applied before the upgrade.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ipnet::IpNet;

use wsgate::tls::TlsFiles;
use wsgate::ws::AdmissionSettings;

/// TLS and admission flags of `wsgate serve`.
#[derive(Args)]
pub struct EdgeArgs {
    /// Certificate chain (PEM) of the client listener: with --tls-key it speaks wss only. The
    /// files are read again when they change (checked every 2 s) or on SIGHUP.
    #[arg(long, env = "WSGATE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, env = "WSGATE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Certificate chain (PEM) of the admin listener: with --admin-tls-key it speaks HTTPS only
    /// (reloaded like --tls-cert). The CLI then needs an https:// --admin-url (and --admin-ca
    /// for a private CA).
    #[arg(long, env = "WSGATE_ADMIN_TLS_CERT", requires = "admin_tls_key")]
    admin_tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --admin-tls-cert.
    #[arg(long, env = "WSGATE_ADMIN_TLS_KEY", requires = "admin_tls_cert")]
    admin_tls_key: Option<PathBuf>,
    /// Open connections per client address (0: no cap); more get HTTP 429.
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    max_connections_per_ip: u32,
    /// New connections per client address per second, sustained (0: no limit); faster
    /// attempts get HTTP 429.
    #[arg(long, env = "WSGATE_CONNECTS_PER_IP_PER_SEC", default_value_t = 0)]
    connects_per_ip_per_sec: u32,
    /// New connections a client address may open at once before its rate applies.
    #[arg(long, env = "WSGATE_CONNECT_BURST", default_value_t = 300)]
    connect_burst: u32,
    /// Connections between accept and upgrade at once; the rest wait in the listen queue.
    #[arg(long, env = "WSGATE_MAX_HANDSHAKES", default_value_t = 1024)]
    max_handshakes: usize,
    /// How long a connection may take from accept to a complete request head (TLS included).
    #[arg(long, env = "WSGATE_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// Longest request URL (path and query), in bytes; longer gets HTTP 414.
    #[arg(long, env = "WSGATE_MAX_URL_BYTES", default_value_t = 8 * 1024)]
    max_url_bytes: usize,
    /// Largest request head, in bytes (at least 8192); larger gets HTTP 431.
    #[arg(long, env = "WSGATE_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    max_header_bytes: usize,
    /// Browser origins allowed to connect, comma-separated (default: any). Clients that send
    /// no Origin (not browsers) are always allowed.
    #[arg(long, env = "WSGATE_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Proxies (addresses or CIDR blocks, comma-separated) whose X-Forwarded-For names the
    /// client, for per-address limits and listen-key binding behind a load balancer.
    #[arg(long, env = "WSGATE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    trusted_proxies: Vec<IpNet>,
    /// Connections from --trusted-proxies begin with a PROXY protocol v2 header naming the
    /// client (HAProxy `send-proxy-v2`, for TLS passed through to the node); others without.
    #[arg(long, env = "WSGATE_PROXY_PROTOCOL", requires = "trusted_proxies")]
    proxy_protocol: bool,
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("not an address or CIDR block: {text}"))
}

impl EdgeArgs {
    /// The listener's certificate files, if TLS is on.
    pub fn tls(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
        })
    }

    /// The admin listener's certificate files, if it speaks HTTPS.
    pub fn admin_tls(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.admin_tls_cert.clone()?,
            key: self.admin_tls_key.clone()?,
        })
    }

    /// The limits applied before the upgrade.
    pub fn admission(&self) -> AdmissionSettings {
        AdmissionSettings {
            max_per_ip: self.max_connections_per_ip,
            connects_per_ip_per_sec: self.connects_per_ip_per_sec,
            connect_burst: self.connect_burst,
            max_handshakes: self.max_handshakes,
            handshake_timeout: self.handshake_timeout,
            max_url_bytes: self.max_url_bytes,
            max_header_bytes: self.max_header_bytes,
            allowed_origins: self.allowed_origins.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            proxy_protocol: self.proxy_protocol,
        }
    }
}
