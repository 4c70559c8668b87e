//! WebSocket framing: decoding client frames, encoding server frames.
//!
//! Header parsing and formatting come from `tungstenite`; this module adds what a fan-out server
//! needs on top: a reader that buffers only while a frame is incomplete (an idle connection holds
//! no buffer), and server frames built once as `header + payload` in one shared allocation.

use std::io::Cursor;

use bytes::{Buf, Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// A complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// A text message (validated UTF-8).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping with its payload.
    Ping(Bytes),
    /// A pong with its payload.
    Pong(Bytes),
    /// A close, with its code and reason if the client sent one.
    Close(Option<(u16, String)>),
}

/// A violation that ends the connection, with the close code to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// RFC 6455 violation (unmasked frame, reserved bits, bad fragmentation): close 1002.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// Message larger than the configured maximum: close 1009.
    #[error("message too big")]
    TooBig,
    /// Text that is not UTF-8: close 1007.
    #[error("invalid UTF-8 in text message")]
    BadUtf8,
}

impl FrameError {
    /// The close code this error calls for.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => 1002,
            FrameError::TooBig => 1009,
            FrameError::BadUtf8 => 1007,
        }
    }
}

/// Reassembles client frames from the bytes read off the socket.
pub struct FrameReader {
    buf: BytesMut,
    fragments: Option<(Data, BytesMut)>,
    max_message: usize,
    /// The client sent a close frame, valid or not.
    saw_close: bool,
}

impl FrameReader {
    /// A reader refusing messages above `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        FrameReader {
            buf: BytesMut::new(),
            fragments: None,
            max_message,
            saw_close: false,
        }
    }

    /// True once the client has sent a close frame, valid or not: it sends no other, so the
    /// close the gateway answers with (1002 for a bad code, 1007 for a bad reason) completes
    /// the closing handshake without waiting for another.
    pub fn saw_close(&self) -> bool {
        self.saw_close
    }

    /// Appends bytes read from the socket.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of memory the reader's buffers hold (capacity, not contents).
    pub fn held_bytes(&self) -> usize {
        self.buf.capacity() + self.fragments.as_ref().map_or(0, |(_, b)| b.capacity())
    }

    /// Frees the buffers when nothing partial is held, so an idle connection costs nothing.
    pub fn release_idle_buffers(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// The next complete message, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<ClientFrame>, FrameError> {
        loop {
            let mut cursor = Cursor::new(&self.buf[..]);
            let (header, length) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok(None),
                Err(_) => return Err(FrameError::Protocol("malformed frame header")),
            };
            let header_len = cursor.position() as usize;
            self.saw_close |= header.opcode == OpCode::Control(Control::Close);
            let Some(mask) = header.mask else {
                return Err(FrameError::Protocol("client frames must be masked"));
            };
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(FrameError::Protocol(
                    "reserved bits set without an extension",
                ));
            }
            let assembled = self.fragments.as_ref().map_or(0, |(_, b)| b.len()) as u64;
            if length.saturating_add(assembled) > self.max_message as u64 {
                return Err(FrameError::TooBig);
            }
            let length = length as usize;
            if self.buf.len() < header_len + length {
                // No reserve for the declared length: the buffer grows with the bytes that
                // arrive, so a header alone cannot make the node hold 64 KiB.
                return Ok(None);
            }
            self.buf.advance(header_len);
            let mut payload = self.buf.split_to(length);
            unmask(&mut payload, mask);
            if let Some(message) = self.assemble(header.opcode, header.is_final, payload)? {
                return Ok(Some(message));
            }
        }
    }

    fn assemble(
        &mut self,
        opcode: OpCode,
        is_final: bool,
        payload: BytesMut,
    ) -> Result<Option<ClientFrame>, FrameError> {
        match opcode {
            OpCode::Control(control) => {
                if !is_final || payload.len() > 125 {
                    return Err(FrameError::Protocol(
                        "control frames must be final and short",
                    ));
                }
                let payload = payload.freeze();
                Ok(Some(match control {
                    Control::Ping => ClientFrame::Ping(payload),
                    Control::Pong => ClientFrame::Pong(payload),
                    Control::Close => ClientFrame::Close(parse_close(&payload)?),
                    Control::Reserved(_) => return Err(FrameError::Protocol("reserved opcode")),
                }))
            }
            OpCode::Data(Data::Continue) => {
                let Some((kind, mut assembled)) = self.fragments.take() else {
                    return Err(FrameError::Protocol("continuation without a first frame"));
                };
                assembled.extend_from_slice(&payload);
                if is_final {
                    complete(kind, assembled).map(Some)
                } else {
                    self.fragments = Some((kind, assembled));
                    Ok(None)
                }
            }
            OpCode::Data(kind @ (Data::Text | Data::Binary)) => {
                if self.fragments.is_some() {
                    return Err(FrameError::Protocol("new message inside a fragmented one"));
                }
                if is_final {
                    complete(kind, payload).map(Some)
                } else {
                    self.fragments = Some((kind, payload));
                    Ok(None)
                }
            }
            OpCode::Data(Data::Reserved(_)) => Err(FrameError::Protocol("reserved opcode")),
        }
    }
}

fn complete(kind: Data, payload: BytesMut) -> Result<ClientFrame, FrameError> {
    let payload = payload.freeze();
    match kind {
        Data::Text => {
            std::str::from_utf8(&payload).map_err(|_| FrameError::BadUtf8)?;
            Ok(ClientFrame::Text(payload))
        }
        _ => Ok(ClientFrame::Binary(payload)),
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(FrameError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::BadUtf8)?;
            Ok(Some((code, reason.to_string())))
        }
    }
}

/// True for a close code an endpoint may send (RFC 6455 §7.4): the defined codes except those
/// reserved for reporting (1004, 1005, 1006, 1015), the registered 1012–1014, and the ranges
/// for libraries (3000–3999) and applications (4000–4999).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Encodes one unmasked server frame: header and payload in a single buffer.
pub fn encode(opcode: OpCode, parts: &[&[u8]]) -> Bytes {
    let length: usize = parts.iter().map(|p| p.len()).sum();
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let mut out = Vec::with_capacity(header.len(length as u64) + length);
    header
        .format(length as u64, &mut out)
        .expect("writing to a Vec cannot fail");
    for part in parts {
        out.extend_from_slice(part);
    }
    Bytes::from(out)
}

/// A text frame holding the concatenation of `parts`.
pub fn text(parts: &[&[u8]]) -> Bytes {
    encode(OpCode::Data(Data::Text), parts)
}

/// A ping frame.
pub fn ping(payload: &[u8]) -> Bytes {
    encode(OpCode::Control(Control::Ping), &[payload])
}

/// A pong frame echoing `payload`.
pub fn pong(payload: &[u8]) -> Bytes {
    encode(OpCode::Control(Control::Pong), &[payload])
}

/// A close frame with `code` and a reason (truncated to fit a control frame).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    encode(
        OpCode::Control(Control::Close),
        &[&code.to_be_bytes(), &reason.as_bytes()[..end]],
    )
}

/// A client frame as a browser builds it (masked), for tests and fuzzing: `opcode` (0x1 text,
/// 0x8 close, ...), final or not, and its payload.
#[doc(hidden)]
pub fn masked_client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        masked_client_frame(opcode, fin, payload)
    }

    #[test]
    fn reads_a_frame_split_across_reads() {
        let mut reader = FrameReader::new(1024);
        let bytes = client_frame(0x1, true, b"{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":1}");
        reader.feed(&bytes[..5]);
        assert_eq!(reader.next_frame().unwrap(), None);
        reader.feed(&bytes[5..]);
        let got = reader.next_frame().unwrap().unwrap();
        assert_eq!(
            got,
            ClientFrame::Text(Bytes::from_static(
                b"{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":1}"
            ))
        );
        assert_eq!(reader.buffered(), 0);
        reader.release_idle_buffers();
    }

    #[test]
    fn reassembles_fragments_with_interleaved_ping() {
        let mut reader = FrameReader::new(1024);
        reader.feed(&client_frame(0x1, false, b"hel"));
        reader.feed(&client_frame(0x9, true, b"p"));
        reader.feed(&client_frame(0x0, true, b"lo"));
        assert_eq!(
            reader.next_frame().unwrap(),
            Some(ClientFrame::Ping(Bytes::from_static(b"p")))
        );
        assert_eq!(
            reader.next_frame().unwrap(),
            Some(ClientFrame::Text(Bytes::from_static(b"hello")))
        );
    }

    #[test]
    fn refuses_unmasked_oversized_and_bad_utf8() {
        let mut reader = FrameReader::new(1024);
        reader.feed(&[0x81, 0x01, b'x']);
        assert_eq!(reader.next_frame().unwrap_err().close_code(), 1002);

        let mut reader = FrameReader::new(16);
        reader.feed(&client_frame(0x1, true, &[b'a'; 17])[..8]);
        assert_eq!(reader.next_frame().unwrap_err(), FrameError::TooBig);

        let mut reader = FrameReader::new(16);
        reader.feed(&client_frame(0x1, true, &[0xff, 0xfe]));
        assert_eq!(reader.next_frame().unwrap_err(), FrameError::BadUtf8);
    }

    #[test]
    fn parses_close_codes() {
        let mut reader = FrameReader::new(64);
        reader.feed(&client_frame(0x8, true, &[0x03, 0xe8, b'o', b'k']));
        assert_eq!(
            reader.next_frame().unwrap(),
            Some(ClientFrame::Close(Some((1000, "ok".into()))))
        );
    }

    #[test]
    fn refuses_close_codes_an_endpoint_may_not_send() {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let mut reader = FrameReader::new(64);
            reader.feed(&client_frame(0x8, true, &code.to_be_bytes()));
            assert_eq!(
                reader.next_frame().unwrap_err().close_code(),
                1002,
                "code {code}"
            );
        }
        for code in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            let mut reader = FrameReader::new(64);
            reader.feed(&client_frame(0x8, true, &code.to_be_bytes()));
            assert_eq!(
                reader.next_frame().unwrap(),
                Some(ClientFrame::Close(Some((code, String::new()))))
            );
        }
    }

    #[test]
    fn remembers_a_malformed_close() {
        let mut reader = FrameReader::new(64);
        reader.feed(&client_frame(0x8, true, &[0x03]));
        assert!(reader.next_frame().is_err());
        assert!(reader.saw_close());
    }

    #[test]
    fn a_declared_length_reserves_nothing_before_its_bytes_arrive() {
        let mut reader = FrameReader::new(64 * 1024);
        let frame = client_frame(0x2, true, &vec![7u8; 60 * 1024]);
        reader.feed(&frame[..14]);
        assert_eq!(reader.next_frame().unwrap(), None);
        assert!(
            reader.held_bytes() < 1024,
            "holds {} bytes for a 14-byte header",
            reader.held_bytes()
        );
        reader.feed(&frame[14..]);
        assert!(matches!(
            reader.next_frame().unwrap(),
            Some(ClientFrame::Binary(_))
        ));
    }

    #[test]
    fn encodes_server_frames_unmasked() {
        assert_eq!(&text(&[b"ab", b"c"])[..], &[0x81, 3, b'a', b'b', b'c']);
        let long = text(&[&[b'x'; 300]]);
        assert_eq!(&long[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(
            &close(1008, "Too many requests")[..4],
            &[0x88, 19, 0x03, 0xf0]
        );
        assert_eq!(&ping(b"1")[..], &[0x89, 1, b'1']);
    }
}
