//! TLS for the node's listeners: a certificate and key read from PEM files, served through
//! rustls, and read again without a restart when the files change or the process gets SIGHUP.
//!
//! New handshakes get the new certificate; connections already open keep the session they
//! negotiated. A file that cannot be read or parsed (a half-written copy, a key that does not
//! match) leaves the current certificate in place and is logged and counted, never served.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// Where a listener's certificate chain and private key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The certificate a listener serves, swapped in place when its files change.
pub struct CertStore {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
    /// Modification times of the files the current certificate was read from.
    seen: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish()
    }
}

/// What [`CertStore::reload_if_changed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The files did not change.
    Unchanged,
    /// The new certificate is served from now on.
    Swapped,
    /// The files changed but could not be used; the previous certificate stays.
    Failed,
}

impl CertStore {
    /// Reads `files`; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> anyhow::Result<Arc<Self>> {
        let seen = (modified(&files.cert), modified(&files.key));
        let current = read_certified_key(&files)?;
        Ok(Arc::new(CertStore {
            files,
            current: ArcSwap::from_pointee(current),
            seen: Mutex::new(seen),
        }))
    }

    /// The files this store reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The leaf certificate served now (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.load().cert[0].clone()
    }

    /// Reads the files again and serves them from now on; on error the current certificate
    /// stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let seen = (modified(&self.files.cert), modified(&self.files.key));
        let result = read_certified_key(&self.files);
        // Remember the times even on failure, so a broken file is reported once, not on every
        // poll; the next change is tried again.
        *self.seen.lock() = seen;
        self.current.store(Arc::new(result?));
        Ok(())
    }

    /// Reloads when either file's modification time changed since the last read.
    pub fn reload_if_changed(&self) -> Reload {
        let now = (modified(&self.files.cert), modified(&self.files.key));
        if *self.seen.lock() == now {
            return Reload::Unchanged;
        }
        match self.reload() {
            Ok(()) => Reload::Swapped,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "TLS certificate not reloaded; the previous one is still served");
                Reload::Failed
            }
        }
    }

    /// A rustls server configuration that serves this store's current certificate (HTTP/1.1
    /// only: WebSocket upgrades are HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        // ring offers no post-quantum key exchange (hence the deprecation); aws-lc-rs would need
        // cmake and a longer build for every node and test run.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Watches the files (every `every`) and SIGHUP until `stop`, reloading on change;
    /// `on_reload` is told each outcome other than [`Reload::Unchanged`].
    pub fn watch(
        self: &Arc<Self>,
        every: Duration,
        stop: CancellationToken,
        on_reload: impl Fn(Reload) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let mut hangups = hangup_signals();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let outcome = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => store.reload_if_changed(),
                    Some(()) = recv(&mut hangups) => match store.reload() {
                        Ok(()) => Reload::Swapped,
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "TLS certificate not reloaded on SIGHUP; the previous one is still served");
                            Reload::Failed
                        }
                    },
                };
                if outcome == Reload::Swapped {
                    tracing::info!(cert = %store.files.cert.display(), "TLS certificate reloaded");
                }
                if outcome != Reload::Unchanged {
                    on_reload(outcome);
                }
            }
        })
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn hangup_signals() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

async fn recv(signals: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signals {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_certified_key(files: &TlsFiles) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("TLS certificate {}", files.cert.display()))?;
    if chain.is_empty() {
        return Err(anyhow!(
            "TLS certificate {}: no certificate in the file",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("TLS key {}", files.key.display()))?;
    let signing =
        any_supported_type(&key).map_err(|e| anyhow!("TLS key {}: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        anyhow!(
            "TLS key {} does not belong to certificate {}: {e}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(certified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let issued = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, issued.cert.pem()).unwrap();
        std::fs::write(&files.key, issued.signing_key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn a_changed_pair_is_swapped_and_a_broken_one_keeps_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "first.test");
        let store = CertStore::load(files.clone()).unwrap();
        let first = store.leaf();
        assert_eq!(store.reload_if_changed(), Reload::Unchanged);

        std::thread::sleep(Duration::from_millis(20));
        write_pair(dir.path(), "second.test");
        assert_eq!(store.reload_if_changed(), Reload::Swapped);
        let second = store.leaf();
        assert_ne!(first, second);

        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&files.key, "not a key").unwrap();
        assert_eq!(store.reload_if_changed(), Reload::Failed);
        assert_eq!(store.leaf(), second, "a broken file is never served");
        assert_eq!(store.reload_if_changed(), Reload::Unchanged);
    }

    #[test]
    fn load_names_the_file_that_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "a.test");
        let other = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
        std::fs::write(&files.key, other.signing_key.serialize_pem()).unwrap();
        let error = format!("{:#}", CertStore::load(files.clone()).unwrap_err());
        assert!(error.contains("does not belong"), "{error}");
        let missing = TlsFiles {
            cert: dir.path().join("missing.pem"),
            key: files.key,
        };
        let error = format!("{:#}", CertStore::load(missing).unwrap_err());
        assert!(error.contains("missing.pem"), "{error}");
    }
}
