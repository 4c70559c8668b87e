//! A TCP proxy that can go silent: after [`StallingProxy::stall`], the connections open at that
//! moment stay open but nothing more passes through them, in either direction — what a peer
//! sees when a connection dies without a reset (a failover behind a NAT, a half-dead link).
//! Connections opened afterwards pass normally.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A proxy to one target on a free port of the loopback interface; stops when dropped.
pub struct StallingProxy {
    addr: SocketAddr,
    /// Connections with an id below this pass nothing.
    stalled_below: Arc<AtomicU64>,
    next_id: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl StallingProxy {
    /// Starts proxying to `target`. Must be called inside a tokio runtime.
    pub async fn start(target: SocketAddr) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled_below = Arc::new(AtomicU64::new(0));
        let next_id = Arc::new(AtomicU64::new(0));
        let (stalled, ids) = (Arc::clone(&stalled_below), Arc::clone(&next_id));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let id = ids.fetch_add(1, Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, id, Arc::clone(&stalled)));
                tokio::spawn(pump(server_read, client_write, id, Arc::clone(&stalled)));
            }
        });
        StallingProxy {
            addr,
            stalled_below,
            next_id,
            task,
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes every connection open now go silent.
    pub fn stall(&self) {
        self.stalled_below
            .store(self.next_id.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    id: u64,
    stalled_below: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if id < stalled_below.load(Ordering::SeqCst) {
            // Silent from now on, holding both sockets open.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
