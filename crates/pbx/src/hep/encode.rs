//! Encoding a [`HepPacket`] as HEP v3, for tests, benchmarks and the load tool.
//!
//! Chunks go out in the order Kamailio's `siptrace` uses (addresses, ports,
//! timestamp, protocol type, capture id, then the byte fields and the payload
//! last). Only the fields that are `Some` are written, exactly as they are.

use std::io::Write;
use std::net::SocketAddr;

use flate2::write::ZlibEncoder;
use flate2::Compression;

use super::chunk::{self, HEADER_LEN, VENDOR_GENERIC};
use super::{HepPacket, HEP_MAX_PACKET};
use crate::model::Timestamp;

/// How the payload is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadEncoding {
    /// As is, in a payload chunk (0x000f).
    #[default]
    Plain,
    /// zlib-compressed, in a compressed payload chunk (0x0010).
    Zlib,
}

/// A packet that HEP v3 cannot carry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HepEncodeError {
    /// The whole packet exceeds the 16-bit length field.
    #[error("HEP packet would be {size} bytes, above the {HEP_MAX_PACKET}-byte maximum")]
    PacketTooLarge {
        /// Encoded size.
        size: usize,
    },
    /// One chunk value exceeds the 16-bit chunk length field.
    #[error("HEP {name} chunk (0x{chunk_type:04x}) value is {size} bytes, above the 65529-byte maximum", name = chunk::name(*chunk_type))]
    ChunkTooLarge {
        /// Type id of the chunk.
        chunk_type: u16,
        /// Value size.
        size: usize,
    },
    /// The timestamp is before 1970 or after 2106 (32-bit seconds).
    #[error("timestamp {0} does not fit the HEP 32-bit seconds chunk")]
    TimestampOutOfRange(Timestamp),
    /// zlib compression failed.
    #[error("zlib compression of the payload failed: {0}")]
    Compress(#[from] std::io::Error),
}

/// Encodes `packet` with a plain payload chunk.
///
/// # Panics
///
/// When the packet cannot be encoded (larger than [`HEP_MAX_PACKET`], timestamp
/// outside 32-bit seconds); use [`try_encode`] for packets of unchecked size.
pub fn encode(packet: &HepPacket) -> Vec<u8> {
    encode_or_panic(packet, PayloadEncoding::Plain)
}

/// Encodes `packet` with a zlib-compressed payload chunk (0x0010).
///
/// # Panics
///
/// Like [`encode`].
pub fn encode_compressed(packet: &HepPacket) -> Vec<u8> {
    encode_or_panic(packet, PayloadEncoding::Zlib)
}

fn encode_or_panic(packet: &HepPacket, encoding: PayloadEncoding) -> Vec<u8> {
    match try_encode(packet, encoding) {
        Ok(bytes) => bytes,
        // Documented panic: test and load-tool packets are built by the caller.
        Err(e) => panic!("cannot encode HEP packet: {e}"),
    }
}

/// Encodes `packet`, or says why HEP v3 cannot carry it.
pub fn try_encode(
    packet: &HepPacket,
    encoding: PayloadEncoding,
) -> Result<Vec<u8>, HepEncodeError> {
    let mut out = Writer {
        bytes: Vec::with_capacity(128 + packet.payload.len()),
    };
    out.bytes.extend_from_slice(b"HEP3\0\0");
    if let Some(family) = packet.ip_family {
        out.chunk(chunk::IP_FAMILY, &[family])?;
    }
    if let Some(protocol) = packet.ip_protocol {
        out.chunk(chunk::IP_PROTOCOL, &[protocol])?;
    }
    out.address(packet.src, chunk::IPV4_SRC, chunk::IPV6_SRC)?;
    out.address(packet.dst, chunk::IPV4_DST, chunk::IPV6_DST)?;
    if let Some(src) = packet.src {
        out.chunk(chunk::SRC_PORT, &src.port().to_be_bytes())?;
    }
    if let Some(dst) = packet.dst {
        out.chunk(chunk::DST_PORT, &dst.port().to_be_bytes())?;
    }
    if let Some(timestamp) = packet.timestamp {
        let seconds = u32::try_from(timestamp.timestamp())
            .map_err(|_| HepEncodeError::TimestampOutOfRange(timestamp))?;
        // A leap second shows as 1_000_000 and more microseconds in chrono.
        let micros = timestamp.timestamp_subsec_micros().min(999_999);
        out.chunk(chunk::TIMESTAMP_SECONDS, &seconds.to_be_bytes())?;
        out.chunk(chunk::TIMESTAMP_MICROS, &micros.to_be_bytes())?;
    }
    if let Some(proto_type) = packet.proto_type {
        out.chunk(chunk::PROTO_TYPE, &[proto_type])?;
    }
    if let Some(capture_id) = packet.capture_id {
        out.chunk(chunk::CAPTURE_ID, &capture_id.to_be_bytes())?;
    }
    if let Some(auth_key) = &packet.auth_key {
        out.chunk(chunk::AUTH_KEY, auth_key)?;
    }
    if let Some(correlation_id) = &packet.correlation_id {
        out.chunk(chunk::CORRELATION_ID, correlation_id)?;
    }
    if let Some(node_name) = &packet.node_name {
        out.chunk(chunk::NODE_NAME, node_name)?;
    }
    match encoding {
        PayloadEncoding::Plain => out.chunk(chunk::PAYLOAD, &packet.payload)?,
        PayloadEncoding::Zlib => {
            let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
            zlib.write_all(&packet.payload)?;
            out.chunk(chunk::PAYLOAD_ZLIB, &zlib.finish()?)?;
        }
    }
    let size = out.bytes.len();
    let total = u16::try_from(size).map_err(|_| HepEncodeError::PacketTooLarge { size })?;
    if let Some(length) = out.bytes.get_mut(4..HEADER_LEN) {
        length.copy_from_slice(&total.to_be_bytes());
    }
    Ok(out.bytes)
}

struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn chunk(&mut self, chunk_type: u16, value: &[u8]) -> Result<(), HepEncodeError> {
        let length =
            u16::try_from(HEADER_LEN + value.len()).map_err(|_| HepEncodeError::ChunkTooLarge {
                chunk_type,
                size: value.len(),
            })?;
        self.bytes.extend_from_slice(&VENDOR_GENERIC.to_be_bytes());
        self.bytes.extend_from_slice(&chunk_type.to_be_bytes());
        self.bytes.extend_from_slice(&length.to_be_bytes());
        self.bytes.extend_from_slice(value);
        Ok(())
    }

    fn address(
        &mut self,
        address: Option<SocketAddr>,
        ipv4_type: u16,
        ipv6_type: u16,
    ) -> Result<(), HepEncodeError> {
        match address {
            Some(SocketAddr::V4(v4)) => self.chunk(ipv4_type, &v4.ip().octets()),
            Some(SocketAddr::V6(v6)) => self.chunk(ipv6_type, &v6.ip().octets()),
            None => Ok(()),
        }
    }
}
