//! A connection's byte stream after the upgrade: plain TCP, or TLS over TCP.
//!
//! Both are driven the same way by the session, without waiting: reads and writes are tried,
//! and `WouldBlock` sends the session back to waiting on the socket's readiness. Plain writes
//! go straight from the shared frame buffers to `sendmsg`; TLS writes are encrypted by rustls
//! (sans-I/O) into its buffer, whose records then go out as the socket takes them.
//!
//! Several small frames bound for one plain socket are first gathered into the worker
//! thread's scratch buffer and sent as one contiguous slice: copying a few hundred cache-hot
//! bytes in user space costs less than the kernel's walk over one iovec per frame (measured
//! in `docs/benchmarks.md`, "Against uWebSockets").

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::task::{Context, Poll};

use rustls::ServerConnection;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::hub::{FrameVariant, Wire};

/// The stream a session reads and writes.
pub enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS: the socket and rustls' state for it (boxed: it is large, and only TLS
    /// connections carry it).
    Tls(Box<TlsTransport>),
}

/// A TLS connection's socket and session state.
pub struct TlsTransport {
    socket: TcpStream,
    tls: ServerConnection,
}

impl Transport {
    /// A TLS transport whose handshake is done (e.g. by `tokio-rustls`).
    pub fn tls(socket: TcpStream, tls: ServerConnection) -> Self {
        Transport::Tls(Box::new(TlsTransport { socket, tls }))
    }

    fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(socket) => socket,
            Transport::Tls(tls) => &tls.socket,
        }
    }

    /// True for a TLS transport.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Polls the socket for readability.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket().poll_read_ready(cx)
    }

    /// Polls the socket for writability.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket().poll_write_ready(cx)
    }

    /// Reads what is available into `buf` without waiting: `Ok(0)` at end of stream,
    /// `WouldBlock` when nothing is. A read shorter than `buf` means the socket had no more.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.try_read(buf),
            Transport::Tls(tls) => tls.try_read(buf),
        }
    }

    /// Hands `slices` to the stream without waiting; returns how many bytes were taken
    /// (`WouldBlock` when none could be).
    pub fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => send_on(socket, slices),
            Transport::Tls(tls) => tls.try_write_vectored(slices),
        }
    }

    /// The socket as the fan-out lanes may write it, in frames of `variant`: plain TCP only
    /// (a TLS connection's records are its own to write).
    pub fn wire(&self, variant: FrameVariant) -> Option<Wire> {
        match self {
            Transport::Plain(socket) => Some(Wire::new(socket.as_raw_fd(), send_gathered, variant)),
            Transport::Tls(_) => None,
        }
    }

    /// True when bytes already taken still wait for the socket (TLS records).
    pub fn has_pending(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(tls) => tls.tls.wants_write(),
        }
    }

    /// Writes pending TLS records without waiting; true when none is left.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(tls) => tls.flush(),
        }
    }
}

/// `Read` and `Write` over a non-blocking socket, for rustls' record I/O.
struct Nonblocking<'a>(&'a TcpStream);

impl Read for Nonblocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Nonblocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsTransport {
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.tls.reader().read(&mut buf[filled..]) {
                Ok(0) => return Ok(filled), // close_notify: the end, after what was read
                Ok(n) => {
                    filled += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            // No plaintext left: read records from the socket.
            match self.tls.read_tls(&mut Nonblocking(&self.socket)) {
                Ok(0) => return Ok(filled),
                Ok(_) => {
                    if let Err(e) = self.tls.process_new_packets() {
                        // Tell the peer why (an alert), then end.
                        let _ = self.flush();
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 { Ok(filled) } else { Err(e) };
                }
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }

    fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.flush()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let taken = self.tls.writer().write_vectored(slices)?;
        if taken == 0 && slices.iter().any(|s| !s.is_empty()) {
            // rustls' buffer is full.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.flush()?;
        Ok(taken)
    }

    /// Writes TLS records until none is left (true) or the socket is full (false).
    fn flush(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut Nonblocking(&self.socket)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Most bytes gathered into one contiguous send.
const GATHER_BYTES: usize = 64 * 1024;

thread_local! {
    /// The worker thread's gather buffer (one per thread, never per connection).
    static GATHER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(GATHER_BYTES));
}

/// Sends `slices` on `socket` as [`send_gathered`] does, clearing the socket's write readiness
/// when it takes nothing.
fn send_on(socket: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    socket.try_io(Interest::WRITABLE, || {
        send_gathered(socket.as_raw_fd(), slices)
    })
}

/// Sends the leading slices of `slices` that fit in [`GATHER_BYTES`] (at least the first) on
/// the non-blocking socket `fd` with one `sendmsg` call, without waiting: copied into the
/// thread's gather buffer when there are several, so the kernel copies one contiguous slice.
/// Returns the bytes the socket took, which may end anywhere in the slices, as a vectored
/// write's may. This is how the fan-out lanes write a lent socket ([`crate::hub::Wire`]).
pub fn send_gathered(fd: RawFd, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    let mut total = 0;
    let count = slices
        .iter()
        .take_while(|slice| {
            total += slice.len();
            total <= GATHER_BYTES
        })
        .count()
        .max(1)
        .min(slices.len());
    if count <= 1 {
        return sendmsg(fd, &slices[..count]);
    }
    GATHER.with_borrow_mut(|buffer| {
        buffer.clear();
        for slice in &slices[..count] {
            buffer.extend_from_slice(slice);
        }
        sendmsg(fd, &[IoSlice::new(buffer)])
    })
}

/// One `sendmsg` call on `fd`, without waiting: `sendmsg` on a socket skips the file-position
/// and VFS work `writev` does, which is a measurable share of a fan-out's CPU.
fn sendmsg(fd: RawFd, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: `IoSlice` is guaranteed ABI-compatible with `iovec` on Unix; the header only
    // borrows `slices`, which outlives the call; the caller keeps `fd` open.
    let sent = unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = slices.as_ptr() as *mut libc::iovec;
        header.msg_iovlen = slices.len() as _;
        libc::sendmsg(fd, &header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}
