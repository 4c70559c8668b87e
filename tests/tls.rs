//! wss against a real node: real clients (python `websockets` with the test CA, and
//! python-binance) stream over TLS, and a certificate swapped on disk is served to new
//! connections while the connections already open keep streaming.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{python, Gateway};
use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;

/// A test CA and the files of the node's certificate.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "wsgate test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Pki {
            ca,
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(pki.ca_path(), pki.ca.pem()).unwrap();
        pki
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// Issues a certificate for localhost and 127.0.0.1 named `name`, written over the node's
    /// files (each replaced whole, as a deployment tool would).
    fn issue(&self, name: &str) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        replace(&self.key_path(), &key.serialize_pem());
        replace(&self.cert_path(), &cert.pem());
        cert.der().clone()
    }

    fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        // ring offers no post-quantum key exchange (hence the deprecation); aws-lc-rs would need
        // cmake and a longer build for every node and test run.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

fn replace(path: &Path, contents: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, contents).unwrap();
    std::fs::rename(partial, path).unwrap();
}

type WssClient = WebSocketStream<TlsStream<TcpStream>>;

/// Connects over TLS to `path`; returns the client and the certificate the node presented.
async fn connect(pki: &Pki, gateway: &Gateway, path: &str) -> (WssClient, CertificateDer<'static>) {
    let tcp = TcpStream::connect(gateway.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = pki.connector().connect(name, tcp).await.unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let url = format!("wss://localhost:{}{path}", gateway.addr.port());
    let (client, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    (client, leaf)
}

async fn next_trade(client: &mut WssClient) -> serde_json::Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("a trade within 10 s")
            .expect("the stream goes on")
            .expect("a message");
        if message.is_text() {
            return serde_json::from_str(message.to_text().unwrap()).unwrap();
        }
    }
}

/// Runs `wss_clients.py` with `args` (and `env`); returns its output lines.
fn run_python(args: &[&str], env: &[(&str, &Path)]) -> Vec<serde_json::Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/wss_clients.py");
    let mut command = Command::new(python());
    command.arg(script).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("running the client script");
    assert!(
        output.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn real_clients_stream_over_tls_and_a_swapped_certificate_reaches_new_connections() {
    let pki = Pki::new();
    let first = pki.issue("wsgate first");
    let (cert, key) = (pki.cert_path(), pki.key_path());
    let gateway = Gateway::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let port = gateway.addr.port();

    // python `websockets`, trusting the test CA.
    let url = format!("wss://localhost:{port}/ws/btcusdt@trade");
    let lines = run_python(
        &["websockets", &url, pki.ca_path().to_str().unwrap(), "3"],
        &[],
    );
    assert_eq!(lines.len(), 3);
    assert!(lines
        .iter()
        .all(|l| l["event"] == "trade" && l["symbol"] == "BTCUSDT"));

    // python-binance, its stream URL pointed at the node, the CA from SSL_CERT_FILE.
    let stream_url = format!("wss://localhost:{port}/");
    let lines = run_python(
        &["python-binance", &stream_url, "3"],
        &[("SSL_CERT_FILE", &pki.ca_path())],
    );
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["event"] == "trade"));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut open, leaf) = connect(&pki, &gateway, "/ws/btcusdt@trade").await;
        assert_eq!(leaf, first);
        next_trade(&mut open).await;

        // A plain WebSocket on the TLS port is refused; the node goes on.
        let plain =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws/btcusdt@trade"));
        assert!(tokio::time::timeout(Duration::from_secs(15), plain)
            .await
            .map(|r| r.is_err())
            .unwrap_or(true));

        std::thread::sleep(Duration::from_millis(20));
        let second = pki.issue("wsgate second");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (mut fresh, leaf) = connect(&pki, &gateway, "/ws/btcusdt@trade").await;
            if leaf == second {
                next_trade(&mut fresh).await;
                break;
            }
            assert_eq!(leaf, first);
            assert!(
                Instant::now() < deadline,
                "the new certificate was never served"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The connection opened before the swap streams on.
        for _ in 0..3 {
            assert_eq!(next_trade(&mut open).await["e"], "trade");
        }
    });
    assert!(gateway.metric("wsgate_tls_reloads_total{result=\"swapped\"}") >= 1.0);
}

#[test]
fn the_cli_speaks_https_to_an_admin_listener_with_a_private_ca() {
    let pki = Pki::new();
    pki.issue("wsgate admin");
    let (cert, key) = (pki.cert_path(), pki.key_path());
    let gateway = Gateway::start(&[
        "--admin-token",
        common::TEST_TOKEN,
        "--admin-tls-cert",
        cert.to_str().unwrap(),
        "--admin-tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("https://localhost:{}", gateway.admin.port());
    let cli = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .args(["config", "--admin-url", &url, "--token", common::TEST_TOKEN])
            .args(extra)
            .arg("get")
            .output()
            .unwrap()
    };
    let trusted = cli(&["--admin-ca", pki.ca_path().to_str().unwrap()]);
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&trusted.stdout).unwrap();
    assert!(config.get("version").is_some(), "{config}");

    // Without the CA, the node's certificate is not trusted, and nothing is sent in clear.
    let untrusted = cli(&[]);
    assert!(!untrusted.status.success());
    let plain = common::http_get(gateway.admin, "/readyz");
    assert!(plain.map(|(status, _)| status != 200).unwrap_or(true));
}
