//! `wss://`: TLS over a connection's TCP socket, with the gateway's own stack (rustls and its
//! ring provider), trusting only the CA certificates given with `--ca-cert`.
//!
//! Every connection makes a full handshake: the client keeps no sessions to resume, so a run
//! measures what a crowd of new clients costs the server.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::client::Resumption;
use rustls::crypto::ring::kx_group;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::args::KxGroup;

/// The client configuration of a run: the CA certificates of `path` (PEM, one or more), and
/// the key exchange groups offered, in order.
pub fn connector(path: &Path, groups: &[KxGroup]) -> Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading --ca-cert {}", path.display()))?
    {
        let cert = cert.with_context(|| format!("parsing --ca-cert {}", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("a certificate of {} is not usable", path.display()))?;
    }
    if roots.is_empty() {
        bail!("no certificate in --ca-cert {}", path.display());
    }
    // ring offers no post-quantum key exchange (hence the deprecation); it is what the gateway
    // serves with.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = groups
        .iter()
        .map(|g| match g {
            KxGroup::X25519 => kx_group::X25519,
            KxGroup::Secp256r1 => kx_group::SECP256R1,
            KxGroup::Secp384r1 => kx_group::SECP384R1,
        })
        .collect();
    if provider.kx_groups.is_empty() {
        bail!("--tls-groups names no group");
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .context("the ring provider supports the default protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// How the connections of one `wss://` URL start TLS: the client configuration and the name
/// the server's certificate must carry (the URL's host, a DNS name or an IP address).
#[derive(Clone)]
pub struct TlsDialer {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl fmt::Debug for TlsDialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsDialer")
            .field("name", &self.name)
            .finish()
    }
}

impl TlsDialer {
    /// A dialer for `host` (brackets of an IPv6 literal already removed).
    pub fn new(connector: TlsConnector, host: &str) -> Result<TlsDialer> {
        let name = ServerName::try_from(host.to_string())
            .with_context(|| format!("{host:?} is not a valid TLS server name"))?;
        Ok(TlsDialer { connector, name })
    }

    /// Runs the TLS handshake over `tcp`.
    pub async fn connect(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>> {
        match self.connector.connect(self.name.clone(), tcp).await {
            Ok(tls) => Ok(tls),
            // rustls' own errors (certificate, alert, protocol) come as InvalidData; I/O
            // errors (reset, eof) keep their kind for the bench's connect-error table.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                bail!("tls: {e}")
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let groups = [KxGroup::X25519];
        let Err(missing) = connector(Path::new("/nonexistent/ca.pem"), &groups) else {
            panic!("a missing file was accepted");
        };
        assert!(
            format!("{missing:#}").contains("/nonexistent/ca.pem"),
            "{missing:#}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").unwrap();
        let Err(e) = connector(&empty, &groups) else {
            panic!("a file without certificates was accepted");
        };
        assert!(e.to_string().contains("no certificate"), "{e}");
    }
}
