//! The client listener: accepts TCP connections, answers the HTTP upgrade and starts a session.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tungstenite::handshake::derive_accept_key;

use super::dialect::{Handshake, HttpRequest, Refusal, Serving};
use super::session::{Opening, Session};
use super::WsContext;

/// Binds a listener; with `reuse_port`, several processes can share the address.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// Accepts clients until the context's shutdown token is cancelled.
pub async fn serve(listener: TcpListener, ctx: Arc<WsContext>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = ctx.shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                ctx.tracker
                    .spawn(handle_connection(Arc::clone(&ctx), stream, peer));
            }
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle_connection(ctx: Arc<WsContext>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let peer = canonical(peer.ip());
    let service = service_fn(move |request| respond(Arc::clone(&ctx), request, peer));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

type HttpResponse = Response<Full<Bytes>>;

/// The largest body a plain HTTP request on the client listener may have.
const MAX_BODY: usize = 16 * 1024;

/// An IPv4 client on a dual-stack socket is reported as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

async fn respond(
    ctx: Arc<WsContext>,
    request: Request<Incoming>,
    peer: IpAddr,
) -> Result<HttpResponse, Infallible> {
    if !request.headers().contains_key(header::UPGRADE) {
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, -1, "Body too large")),
        };
        let plain = HttpRequest {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers.clone(),
            body,
            peer,
        };
        if let Some(answer) = ctx.dialects.answer(&plain).await {
            return Ok(json(answer.status, &answer.body));
        }
        let request = Request::from_parts(parts, ());
        return upgrade(ctx, request, peer).await;
    }
    upgrade(ctx, request, peer).await
}

async fn upgrade<B: Send + 'static>(
    ctx: Arc<WsContext>,
    mut request: Request<B>,
    peer: IpAddr,
) -> Result<HttpResponse, Infallible>
where
    Request<B>: Send,
{
    let handshake = Handshake {
        path: request.uri().path(),
        query: request.uri().query(),
        headers: request.headers(),
        peer,
    };
    let serving = Serving {
        catalog: ctx.catalog(),
        settings: &ctx.settings,
    };
    let connect = match ctx.dialects.route(&handshake, &serving).await {
        None => return Ok(error(StatusCode::NOT_FOUND, -1, "Not found")),
        Some(Err(refusal)) => return Ok(refused(refusal)),
        Some(Ok(connect)) => connect,
    };
    let Some(key) = websocket_key(request.method(), request.headers()) else {
        return Ok(error(
            StatusCode::UPGRADE_REQUIRED,
            -1,
            "Expected a WebSocket upgrade",
        ));
    };
    if ctx.metrics.connections.get() as usize >= ctx.settings.max_connections {
        return Ok(error(
            StatusCode::SERVICE_UNAVAILABLE,
            -1,
            "Node at connection limit",
        ));
    }
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut request);
    let session_ctx = Arc::clone(&ctx);
    // Boxed: the upgrade task holds it only until the session starts, and a box keeps it out of
    // the task's state, which every connection carries for its whole life.
    let opening = Box::new(Opening::new(&ctx, connect));
    ctx.tracker.spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                opening.abandon();
                return tracing::debug!(error = %e, "upgrade failed");
            }
        };
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let socket = parts.io.into_inner();
                // Unboxed in a block of its own, so the box is freed now, not when the
                // connection ends.
                let opening = {
                    let boxed = opening;
                    *boxed
                };
                let session = Session::new(session_ctx, socket, &parts.read_buf, opening);
                // The leftover bytes may share hyper's 8 KiB read buffer: free it before the
                // session's lifetime, not after.
                drop(parts.read_buf);
                session.run().await
            }
            Err(_) => {
                opening.abandon();
                tracing::error!("upgraded connection is not a TCP stream")
            }
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    Ok(response)
}

/// The `Sec-WebSocket-Key` of a valid upgrade request.
fn websocket_key<'a>(method: &Method, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    let upgrade = method == Method::GET
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(|v| v.as_bytes())
            == Some(b"13");
    upgrade
        .then(|| headers.get(header::SEC_WEBSOCKET_KEY))
        .flatten()
}

fn refused(refusal: Refusal) -> HttpResponse {
    error(refusal.status, refusal.code, &refusal.msg)
}

fn error(status: StatusCode, code: i32, msg: &str) -> HttpResponse {
    json(status, &serde_json::json!({ "code": code, "msg": msg }))
}

fn json(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
