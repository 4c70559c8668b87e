//! A blocking client of a node's admin API, turning every error into a readable message.

use anyhow::{anyhow, bail};
use serde_json::Value;

use super::AdminArgs;

/// Talks JSON to `/api/v1`.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    operator: String,
    agent: ureq::Agent,
}

impl AdminClient {
    /// The admin URL as errors show it: without credentials in it.
    fn shown(url: &str) -> String {
        crate::config::secrets::redact_text(url).into_owned()
    }

    /// A client for the node at `args.admin_url` (https:// checked against `args.admin_ca`
    /// when given).
    pub fn new(args: &AdminArgs) -> anyhow::Result<Self> {
        let mut config = ureq::Agent::config_builder()
            // Non-2xx answers carry the API's error text: read them instead of failing.
            .http_status_as_error(false);
        if let Some(ca) = &args.admin_ca {
            config = config.tls_config(ca_roots(ca)?);
        }
        Ok(AdminClient {
            base: args.admin_url.trim_end_matches('/').to_string(),
            token: args.token.clone(),
            operator: args.operator.clone(),
            agent: config.build().into(),
        })
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        if let Some(token) = &self.token {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        let response = request
            .call()
            .map_err(|e| anyhow!(Self::shown(&format!("cannot reach {url}: {e}"))))?;
        Self::answer(&Self::shown(&url), response)
    }

    /// `method path` with a JSON body.
    pub fn send(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let builder = match method {
            "PUT" => self.agent.put(&url),
            "POST" => self.agent.post(&url),
            other => bail!("unsupported method {other}"),
        };
        let mut request = builder.header("x-wsgate-operator", &self.operator);
        if let Some(token) = &self.token {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        let response = request
            .send_json(body)
            .map_err(|e| anyhow!(Self::shown(&format!("cannot reach {url}: {e}"))))?;
        Self::answer(&Self::shown(&url), response)
    }

    fn answer(url: &str, mut response: ureq::http::Response<ureq::Body>) -> anyhow::Result<Value> {
        let status = response.status();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| anyhow!("reading the answer of {url}: {e}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        bail!("{} ({status})", message)
    }
}

/// TLS settings trusting only the CA certificates in the PEM file `path`.
fn ca_roots(path: &std::path::Path) -> anyhow::Result<ureq::tls::TlsConfig> {
    use anyhow::Context;
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no certificate in the file",
        path.display()
    );
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .build())
}
