//! The PROXY protocol (version 2, binary) a load balancer such as HAProxy (`send-proxy-v2`) puts
//! before a connection's first byte, naming the client it passes through: how a node that
//! terminates TLS itself behind a TCP balancer sees client addresses.

use std::io;
use std::net::IpAddr;

use ppp::v2::{Addresses, Command, Header};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The fixed part of a v2 header: signature, version and command, family and protocol, length.
const FIXED: usize = 16;

/// Reads the PROXY v2 header at the start of `stream` (exactly its bytes, nothing after) and
/// returns the client address it names; `None` for a `LOCAL` header (the balancer's own health
/// check) or an address family without an IP. Anything that is not a v2 header is an error.
pub async fn read_client_address(stream: &mut TcpStream) -> io::Result<Option<IpAddr>> {
    let mut header = vec![0u8; FIXED];
    stream.read_exact(&mut header).await?;
    if !header.starts_with(ppp::v2::PROTOCOL_PREFIX) {
        return Err(invalid("no PROXY protocol v2 header"));
    }
    let length = u16::from_be_bytes([header[14], header[15]]) as usize;
    header.resize(FIXED + length, 0);
    stream.read_exact(&mut header[FIXED..]).await?;
    let parsed = Header::try_from(header.as_slice())
        .map_err(|e| invalid(&format!("bad PROXY protocol v2 header: {e}")))?;
    if parsed.command == Command::Local {
        return Ok(None);
    }
    Ok(match parsed.addresses {
        Addresses::IPv4(v4) => Some(IpAddr::V4(v4.source_address)),
        Addresses::IPv6(v6) => Some(IpAddr::V6(v6.source_address)),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

fn invalid(text: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, Protocol, Version};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn read(bytes: Vec<u8>) -> (io::Result<Option<IpAddr>>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(&bytes).await.unwrap();
            client.write_all(b"GET /").await.unwrap();
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let result = read_client_address(&mut stream).await;
        writer.await.unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        (result, rest)
    }

    fn header(command: Command, client: &str) -> Vec<u8> {
        let local = if client.starts_with('[') {
            "[2001:db8::1]:443"
        } else {
            "10.0.0.1:443"
        };
        let addresses = (
            client.parse::<std::net::SocketAddr>().unwrap(),
            local.parse::<std::net::SocketAddr>().unwrap(),
        );
        let version_command = Version::Two as u8 | command as u8;
        Builder::with_addresses(version_command, Protocol::Stream, addresses)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn reads_the_client_and_leaves_the_rest() {
        let (client, rest) = read(header(Command::Proxy, "203.0.113.7:50000")).await;
        assert_eq!(client.unwrap(), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(rest, b"GET /");
        let (client, _) = read(header(Command::Proxy, "[2001:db8::7]:50000")).await;
        assert_eq!(client.unwrap(), Some("2001:db8::7".parse().unwrap()));
        let (client, _) = read(header(Command::Local, "203.0.113.7:50000")).await;
        assert_eq!(client.unwrap(), None);
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        let (client, _) = read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
        assert_eq!(client.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
