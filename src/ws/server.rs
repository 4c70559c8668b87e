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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::server::TlsStream;
use tungstenite::handshake::derive_accept_key;

use super::admission::canonical;
use super::dialect::{Handshake, HttpRequest, Refusal, Serving};
use super::proxy_protocol;
use super::session::{Opening, Session};
use super::transport::Transport;
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

/// Accepts clients until the context's shutdown token is cancelled. At most
/// `max_handshakes` connections are between accept and upgrade at once; the others wait in the
/// listen queue, so a reconnect storm is taken in waves rather than all at once.
pub async fn serve(listener: TcpListener, ctx: Arc<WsContext>) {
    loop {
        let slot = tokio::select! {
            slot = ctx.admission.handshake_slot() => slot,
            _ = ctx.shutdown.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = ctx.shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                ctx.tracker
                    .spawn(handle_connection(Arc::clone(&ctx), stream, peer, slot));
            }
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one accepted connection's handshakes (TLS, then HTTP) while it holds `slot`.
async fn handle_connection(
    ctx: Arc<WsContext>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) {
    let mut stream = stream;
    let _ = stream.set_nodelay(true);
    if let Some(bytes) = ctx.settings.socket_send_buffer {
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(bytes);
    }
    let mut peer = canonical(peer.ip());
    let deadline = Instant::now() + ctx.settings.admission.handshake_timeout;
    if ctx.admission.expects_proxy_header(peer) {
        match timeout_at(deadline, proxy_protocol::read_client_address(&mut stream)).await {
            Ok(Ok(client)) => peer = client.map_or(peer, canonical),
            failed => {
                refuse(&ctx, "proxy_protocol");
                if let Ok(Err(e)) = failed {
                    tracing::debug!(error = %e, %peer, "connection from a proxy without its header");
                }
                return;
            }
        }
    }
    match ctx.tls.clone() {
        None => serve_http(ctx, TokioIo::new(stream), peer, deadline).await,
        Some(acceptor) => match timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => serve_http(ctx, TokioIo::new(tls), peer, deadline).await,
            Ok(Err(e)) => {
                ctx.metrics
                    .connections_refused
                    .with_label_values(&["tls"])
                    .inc();
                tracing::debug!(error = %e, %peer, "TLS handshake failed");
            }
            Err(_) => {
                ctx.metrics
                    .connections_refused
                    .with_label_values(&["handshake_timeout"])
                    .inc();
            }
        },
    }
    drop(slot);
}

/// Serves HTTP/1.1 on `io` until it ends or is upgraded; the request head must arrive before
/// `deadline`.
async fn serve_http<I>(ctx: Arc<WsContext>, io: TokioIo<I>, peer: IpAddr, deadline: Instant)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &ctx.settings.admission;
    let head_timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let service_ctx = Arc::clone(&ctx);
    let service = service_fn(move |request| respond(Arc::clone(&service_ctx), request, peer));
    let connection = http.serve_connection(io, service).with_upgrades();
    if let Err(e) = connection.await {
        if e.is_timeout() {
            ctx.metrics
                .connections_refused
                .with_label_values(&["handshake_timeout"])
                .inc();
        }
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

type HttpResponse = Response<Full<Bytes>>;

/// The largest body a plain HTTP request on the client listener may have.
const MAX_BODY: usize = 16 * 1024;

async fn respond(
    ctx: Arc<WsContext>,
    request: Request<Incoming>,
    peer: IpAddr,
) -> Result<HttpResponse, Infallible> {
    let limits = &ctx.settings.admission;
    let target_len = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target_len > limits.max_url_bytes {
        refuse(&ctx, "url_too_long");
        return Ok(error(StatusCode::URI_TOO_LONG, -1, "URL too long"));
    }
    let peer = ctx.admission.client_address(peer, request.headers());
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
    let mut ticket = None;
    if request.headers().contains_key(header::UPGRADE) {
        if !ctx.admission.origin_allowed(request.headers()) {
            refuse(&ctx, "origin");
            return Ok(error(StatusCode::FORBIDDEN, -1, "Origin not allowed"));
        }
        match ctx.admission.admit(peer) {
            Ok(admitted) => ticket = Some(admitted),
            Err(refused) => {
                refuse(&ctx, refused.label());
                return Ok(error(refused.status(), -1, refused.message()));
            }
        }
    }
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
    let Some(ticket) = ticket else {
        // An upgrade request carries `Upgrade`, and was admitted above.
        return Ok(error(
            StatusCode::UPGRADE_REQUIRED,
            -1,
            "Expected a WebSocket upgrade",
        ));
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut request);
    let session_ctx = Arc::clone(&ctx);
    // Boxed: the upgrade task holds it only until the session starts, and a box keeps it out of
    // the task's state, which every connection carries for its whole life.
    let opening = Box::new(Opening::new(&ctx, connect, ticket));
    ctx.tracker.spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                opening.abandon();
                return tracing::debug!(error = %e, "upgrade failed");
            }
        };
        let (transport, early) = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => (Transport::Plain(parts.io.into_inner()), parts.read_buf),
            Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
                Ok(parts) => {
                    let (socket, tls) = parts.io.into_inner().into_inner();
                    (Transport::tls(socket, tls), parts.read_buf)
                }
                Err(_) => {
                    opening.abandon();
                    return tracing::error!("upgraded connection is neither TCP nor TLS");
                }
            },
        };
        // Unboxed in a block of its own, so the box is freed now, not when the connection
        // ends.
        let opening = {
            let boxed = opening;
            *boxed
        };
        let tracker = session_ctx.tracker.clone();
        let session = Session::new(session_ctx, transport, &early, opening);
        // The session runs as a task of its own, whose state is the session's alone (this
        // task's upgrade, boxes and hyper's 8 KiB read buffer end here): every connection
        // carries its task's state for its whole life.
        tracker.spawn(session.run());
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

/// Counts a connection refused before its upgrade.
fn refuse(ctx: &WsContext, reason: &str) {
    ctx.metrics
        .connections_refused
        .with_label_values(&[reason])
        .inc();
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
