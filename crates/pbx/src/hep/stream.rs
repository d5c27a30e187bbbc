//! HEP v3 over TCP: back-to-back packets self-delimited by their 16-bit length.
//!
//! There is no resynchronisation: after a framing error the caller closes the
//! connection, as heplify-server does.

use bytes::BytesMut;

use super::decode::{decode_bytes, packet_length};
use super::error::HepError;
use super::HepPacket;

/// Splits a TCP byte stream into HEP packets (several per read, or one split across reads).
///
/// Follows the `decode(&mut BytesMut) -> Result<Option<_>, _>` contract of
/// `tokio_util::codec::Decoder`: the caller appends what it reads to `buf` and
/// calls [`HepStreamDecoder::decode`] until it returns `Ok(None)`.
#[derive(Debug, Default, Clone)]
pub struct HepStreamDecoder {
    /// Packets handed out so far, for diagnostics.
    packets: u64,
}

impl HepStreamDecoder {
    /// A decoder for a fresh connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next complete packet off the front of `buf`.
    ///
    /// `Ok(None)`: more bytes are needed (`buf` is left as is, with room reserved
    /// for the rest of the packet). `Err`: the stream is malformed; when
    /// [`HepError::breaks_framing`] is false, the bad packet was consumed and the
    /// stream is still in sync, otherwise the connection must be closed. A packet
    /// never exceeds [`super::HEP_MAX_PACKET`] bytes, which bounds the buffer.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<HepPacket>, HepError> {
        let Some(total) = packet_length(buf)? else {
            return Ok(None);
        };
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let packet = buf.split_to(total).freeze();
        self.packets = self.packets.saturating_add(1);
        decode_bytes(packet).map(Some)
    }

    /// Packets taken off the stream so far, malformed ones included.
    pub fn packets(&self) -> u64 {
        self.packets
    }
}
