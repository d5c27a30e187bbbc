//! HEP v3 (Homer Encapsulation Protocol): bytes in, typed packet out, no sockets.
//!
//! PBXs and proxies (Kamailio `siptrace`, Asterisk `res_hep`, FreeSWITCH, heplify)
//! mirror every SIP message they see to a collector, wrapped in a HEP v3 packet
//! that adds the capture addresses, a timestamp and a few tags. This module turns
//! one UDP datagram ([`decode`]) or a TCP byte stream ([`HepStreamDecoder`]) into
//! [`HepPacket`]s, and encodes packets back ([`encode`]) for tests, benchmarks and
//! the load tool.
//!
//! Wire format (all integers big-endian): `"HEP3"`, a 16-bit total length that
//! counts the 6-byte header, then chunks `vendor_id:u16 type:u16 length:u16 value`
//! whose length counts the 6-byte chunk header too. Chunk order is free; vendor
//! and unknown chunks are skipped by length.
//!
//! **Invariant:** decoding never panics and never allocates from a length an
//! attacker chose beyond [`HEP_MAX_PACKET`] (packet) or [`HEP_MAX_PAYLOAD`]
//! (inflated payload); malformed input is a [`HepError`] that names the chunk,
//! offset and length at fault.

pub mod chunk;
mod decode;
mod encode;
mod error;
mod stream;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use std::net::SocketAddr;

use crate::model::Timestamp;

pub use decode::{decode, decode_bytes};
pub use encode::{encode, encode_compressed, try_encode, HepEncodeError, PayloadEncoding};
pub use error::{ChunkFault, HepError};
pub use stream::HepStreamDecoder;

/// Largest HEP packet: the header's length field is 16 bits and counts the whole packet.
pub const HEP_MAX_PACKET: usize = 65535;

/// Largest payload a compressed payload chunk (0x0010) may inflate to.
///
/// A SIP message mirrored over UDP cannot exceed a datagram, so anything larger is
/// a broken sender or a decompression bomb.
pub const HEP_MAX_PAYLOAD: usize = 64 * 1024;

/// HEP protocol type (chunk 0x000b) of a SIP message.
pub const PROTO_TYPE_SIP: u8 = 1;

/// A decoded HEP v3 packet.
///
/// Fields are `None` when the sender did not send the chunk. Byte fields share
/// the received buffer when decoded with [`decode_bytes`] or [`HepStreamDecoder`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HepPacket {
    /// IP protocol family (chunk 0x0001): 2 = IPv4, 10 = IPv6.
    pub ip_family: Option<u8>,
    /// IP protocol id (chunk 0x0002): 17 = UDP, 6 = TCP (also TLS and WebSocket), 132 = SCTP.
    pub ip_protocol: Option<u8>,
    /// Source address of the captured message (chunk 0x0003 or 0x0005, port from 0x0007;
    /// port 0 when the port chunk is absent).
    pub src: Option<SocketAddr>,
    /// Destination address of the captured message (chunk 0x0004 or 0x0006, port from 0x0008).
    pub dst: Option<SocketAddr>,
    /// Capture time (chunks 0x0009 seconds and 0x000a microseconds); `None` when the
    /// seconds chunk is absent or both are 0 (some agents send zeros: use receive time).
    pub timestamp: Option<Timestamp>,
    /// What the payload is (chunk 0x000b): 1 = SIP, 5 = RTCP JSON, 100 = log line, …
    pub proto_type: Option<u8>,
    /// Capture agent id (chunk 0x000c), sent as 32 bits by HEP v3 agents, 16 bits by a few.
    pub capture_id: Option<u32>,
    /// Plaintext authentication key (chunk 0x000e); may be empty.
    pub auth_key: Option<Bytes>,
    /// Correlation id (chunk 0x0011): the SIP Call-ID, an Asterisk channel name, …
    pub correlation_id: Option<Bytes>,
    /// Capture agent name (chunk 0x0013).
    pub node_name: Option<Bytes>,
    /// The captured message as sent on the wire (chunk 0x000f, or 0x0010 inflated).
    pub payload: Bytes,
}

impl HepPacket {
    /// Whether the payload is a SIP message (protocol type 1), the only kind the call tracker reads.
    pub fn is_sip(&self) -> bool {
        self.proto_type == Some(PROTO_TYPE_SIP)
    }
}
