//! Decoding one complete HEP v3 packet: header check, chunk walk, payload inflation.
//!
//! Every read goes through `get()` or a fixed-size conversion, so no input can
//! make it panic; lengths are bounded by the 16-bit length fields.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use bytes::Bytes;
use chrono::DateTime;
use flate2::{Decompress, FlushDecompress, Status};

use super::chunk::{self, HEADER_LEN, VENDOR_GENERIC};
use super::error::{ChunkFault, HepError};
use super::{HepPacket, HEP_MAX_PAYLOAD};
use crate::model::Timestamp;

const MAGIC: &[u8; 4] = b"HEP3";
/// AF_INET6 on Linux, the value agents put in the IP family chunk.
const FAMILY_IPV6: u8 = 10;

/// Decodes one UDP datagram holding one HEP v3 packet.
///
/// Bytes after the length the header declares are ignored; a datagram shorter
/// than that length is [`HepError::Truncated`]. The packet is copied once; use
/// [`decode_bytes`] to share an existing buffer instead.
pub fn decode(datagram: &[u8]) -> Result<HepPacket, HepError> {
    let total = datagram_length(datagram)?;
    let packet = datagram.get(..total).ok_or(HepError::Truncated {
        needed: total,
        available: datagram.len(),
    })?;
    decode_packet(Bytes::copy_from_slice(packet))
}

/// Like [`decode`], but the packet's byte fields share `datagram`'s buffer instead of copying it.
pub fn decode_bytes(mut datagram: Bytes) -> Result<HepPacket, HepError> {
    let total = datagram_length(&datagram)?;
    datagram.truncate(total);
    decode_packet(datagram)
}

/// The declared length of the packet at the start of `datagram`, checked against what arrived.
fn datagram_length(datagram: &[u8]) -> Result<usize, HepError> {
    match packet_length(datagram)? {
        None => Err(HepError::Truncated {
            needed: HEADER_LEN,
            available: datagram.len(),
        }),
        Some(total) if total > datagram.len() => Err(HepError::Truncated {
            needed: total,
            available: datagram.len(),
        }),
        Some(total) => Ok(total),
    }
}

/// Reads the packet header at the start of `buf`: `Ok(None)` when fewer than 6
/// bytes are there yet, else the declared total length (at least 6).
///
/// Checks the bytes already present against the magic so that a stream of
/// garbage (TLS sent to a plain TCP port, HEP v1) fails on its first bytes.
pub(super) fn packet_length(buf: &[u8]) -> Result<Option<usize>, HepError> {
    if let Some(&version @ (1 | 2)) = buf.first() {
        return Err(HepError::LegacyVersion(version));
    }
    let present = buf.len().min(MAGIC.len());
    if buf.get(..present) != MAGIC.get(..present) {
        return Err(HepError::BadMagic);
    }
    let Some(&[high, low]) = buf.get(4..HEADER_LEN) else {
        return Ok(None);
    };
    let declared = u16::from_be_bytes([high, low]);
    if usize::from(declared) < HEADER_LEN {
        return Err(HepError::BadLength { declared });
    }
    Ok(Some(usize::from(declared)))
}

/// Where the payload sits in the packet.
enum PayloadChunk {
    Plain(Range<usize>),
    Zlib {
        value: Range<usize>,
        offset: usize,
        length: u16,
    },
}

/// Chunk values collected during the walk, before they become a [`HepPacket`].
#[derive(Default)]
struct Fields {
    ip_family: Option<u8>,
    ip_protocol: Option<u8>,
    ipv4_src: Option<Ipv4Addr>,
    ipv4_dst: Option<Ipv4Addr>,
    ipv6_src: Option<Ipv6Addr>,
    ipv6_dst: Option<Ipv6Addr>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    seconds: Option<u32>,
    micros: Option<u32>,
    proto_type: Option<u8>,
    capture_id: Option<u32>,
    auth_key: Option<Range<usize>>,
    correlation_id: Option<Range<usize>>,
    node_name: Option<Range<usize>>,
    payload: Option<PayloadChunk>,
}

/// Decodes a packet whose header was checked and whose length is exactly the declared one.
fn decode_packet(packet: Bytes) -> Result<HepPacket, HepError> {
    let mut fields = Fields::default();
    let mut offset = HEADER_LEN;
    while let Some(rest) = packet.get(offset..).filter(|rest| !rest.is_empty()) {
        let Some(&[v0, v1, t0, t1, l0, l1]) = rest.get(..HEADER_LEN) else {
            return Err(HepError::TruncatedChunkHeader {
                offset,
                remaining: rest.len(),
            });
        };
        let vendor_id = u16::from_be_bytes([v0, v1]);
        let chunk_type = u16::from_be_bytes([t0, t1]);
        let length = u16::from_be_bytes([l0, l1]);
        let bad_chunk = |fault| HepError::BadChunk {
            vendor_id,
            chunk_type,
            offset,
            length,
            fault,
        };
        let chunk_len = usize::from(length);
        if chunk_len < HEADER_LEN {
            return Err(bad_chunk(ChunkFault::LengthBelowHeader));
        }
        let Some(value) = rest.get(HEADER_LEN..chunk_len) else {
            return Err(bad_chunk(ChunkFault::PastEnd {
                remaining: rest.len(),
            }));
        };
        // Both terms are below 2^16 (the packet length is a u16), so no overflow.
        let value_start = offset + HEADER_LEN;
        let value_range = value_start..value_start + value.len();
        if vendor_id == VENDOR_GENERIC {
            fields
                .take(chunk_type, value, value_range, offset, length)
                .map_err(bad_chunk)?;
        }
        offset += chunk_len;
    }
    fields.into_packet(&packet)
}

impl Fields {
    /// Records one generic chunk; unknown types are skipped.
    fn take(
        &mut self,
        chunk_type: u16,
        value: &[u8],
        range: Range<usize>,
        offset: usize,
        length: u16,
    ) -> Result<(), ChunkFault> {
        match chunk_type {
            chunk::IP_FAMILY => self.ip_family = Some(u8::from_be_bytes(fixed(value, "1 byte")?)),
            chunk::IP_PROTOCOL => {
                self.ip_protocol = Some(u8::from_be_bytes(fixed(value, "1 byte")?));
            }
            chunk::IPV4_SRC => self.ipv4_src = Some(Ipv4Addr::from(fixed(value, "4 bytes")?)),
            chunk::IPV4_DST => self.ipv4_dst = Some(Ipv4Addr::from(fixed(value, "4 bytes")?)),
            chunk::IPV6_SRC => self.ipv6_src = Some(Ipv6Addr::from(fixed(value, "16 bytes")?)),
            chunk::IPV6_DST => self.ipv6_dst = Some(Ipv6Addr::from(fixed(value, "16 bytes")?)),
            chunk::SRC_PORT => self.src_port = Some(u16::from_be_bytes(fixed(value, "2 bytes")?)),
            chunk::DST_PORT => self.dst_port = Some(u16::from_be_bytes(fixed(value, "2 bytes")?)),
            chunk::TIMESTAMP_SECONDS => {
                self.seconds = Some(u32::from_be_bytes(fixed(value, "4 bytes")?));
            }
            chunk::TIMESTAMP_MICROS => {
                self.micros = Some(u32::from_be_bytes(fixed(value, "4 bytes")?));
            }
            chunk::PROTO_TYPE => self.proto_type = Some(u8::from_be_bytes(fixed(value, "1 byte")?)),
            chunk::CAPTURE_ID => self.capture_id = Some(capture_id(value)?),
            chunk::AUTH_KEY => self.auth_key = Some(range),
            chunk::CORRELATION_ID => self.correlation_id = Some(range),
            chunk::NODE_NAME => self.node_name = Some(range),
            chunk::PAYLOAD | chunk::PAYLOAD_ZLIB => {
                if self.payload.is_some() {
                    return Err(ChunkFault::DuplicatePayload);
                }
                self.payload = Some(if chunk_type == chunk::PAYLOAD {
                    PayloadChunk::Plain(range)
                } else {
                    PayloadChunk::Zlib {
                        value: range,
                        offset,
                        length,
                    }
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn into_packet(self, packet: &Bytes) -> Result<HepPacket, HepError> {
        let payload = match self.payload {
            None => return Err(HepError::MissingPayload),
            Some(PayloadChunk::Plain(range)) => sub_bytes(packet, range),
            Some(PayloadChunk::Zlib {
                value,
                offset,
                length,
            }) => inflate(packet.get(value).unwrap_or_default(), offset, length)?,
        };
        Ok(HepPacket {
            ip_family: self.ip_family,
            ip_protocol: self.ip_protocol,
            src: socket_addr(self.ip_family, self.ipv4_src, self.ipv6_src, self.src_port),
            dst: socket_addr(self.ip_family, self.ipv4_dst, self.ipv6_dst, self.dst_port),
            timestamp: timestamp(self.seconds, self.micros),
            proto_type: self.proto_type,
            capture_id: self.capture_id,
            auth_key: self.auth_key.map(|range| sub_bytes(packet, range)),
            correlation_id: self.correlation_id.map(|range| sub_bytes(packet, range)),
            node_name: self.node_name.map(|range| sub_bytes(packet, range)),
            payload,
        })
    }
}

fn fixed<const N: usize>(value: &[u8], expected: &'static str) -> Result<[u8; N], ChunkFault> {
    value.try_into().map_err(|_| ChunkFault::ValueLength {
        actual: value.len(),
        expected,
    })
}

/// HEP v3 defines a 32-bit capture id; a few agents still send the 16-bit one of HEP v2.
fn capture_id(value: &[u8]) -> Result<u32, ChunkFault> {
    match *value {
        [high, low] => Ok(u32::from(u16::from_be_bytes([high, low]))),
        [b0, b1, b2, b3] => Ok(u32::from_be_bytes([b0, b1, b2, b3])),
        _ => Err(ChunkFault::ValueLength {
            actual: value.len(),
            expected: "2 or 4 bytes",
        }),
    }
}

/// A shared slice of the packet; the range comes from the bounded chunk walk.
fn sub_bytes(packet: &Bytes, range: Range<usize>) -> Bytes {
    if range.start <= range.end && range.end <= packet.len() {
        packet.slice(range)
    } else {
        Bytes::new()
    }
}

/// The address family chunk says which address to prefer when a sender puts both.
fn socket_addr(
    family: Option<u8>,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    port: Option<u16>,
) -> Option<SocketAddr> {
    let ipv4 = ipv4.map(IpAddr::V4);
    let ipv6 = ipv6.map(IpAddr::V6);
    let ip = if family == Some(FAMILY_IPV6) {
        ipv6.or(ipv4)
    } else {
        ipv4.or(ipv6)
    };
    ip.map(|ip| SocketAddr::new(ip, port.unwrap_or(0)))
}

fn timestamp(seconds: Option<u32>, micros: Option<u32>) -> Option<Timestamp> {
    let seconds = seconds?;
    let micros = micros.unwrap_or(0);
    if seconds == 0 && micros == 0 {
        return None;
    }
    // A sloppy agent may send a microsecond count of a second or more: carry it
    // into the seconds rather than drop the SIP message it carries.
    let whole = i64::from(seconds) + i64::from(micros / 1_000_000);
    let nanos = (micros % 1_000_000) * 1_000;
    DateTime::from_timestamp(whole, nanos)
}

/// Inflates a zlib payload into at most [`HEP_MAX_PAYLOAD`] bytes.
fn inflate(compressed: &[u8], offset: usize, length: u16) -> Result<Bytes, HepError> {
    let inflate_error = |source| HepError::Inflate {
        offset,
        length,
        source,
    };
    // The output never grows past this capacity: one byte more than the bound
    // tells "too large" from "exactly the bound".
    let mut out = Vec::with_capacity(HEP_MAX_PAYLOAD + 1);
    let mut inflater = Decompress::new(true);
    loop {
        let before = (inflater.total_in(), inflater.total_out());
        let consumed = usize::try_from(inflater.total_in()).unwrap_or(usize::MAX);
        let input = compressed.get(consumed..).unwrap_or_default();
        let status = inflater
            .decompress_vec(input, &mut out, FlushDecompress::Finish)
            .map_err(|e| inflate_error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        if status == Status::StreamEnd {
            return if out.len() > HEP_MAX_PAYLOAD {
                Err(HepError::PayloadTooLarge {
                    offset,
                    length,
                    limit: HEP_MAX_PAYLOAD,
                })
            } else {
                Ok(Bytes::from(out))
            };
        }
        if out.len() > HEP_MAX_PAYLOAD {
            return Err(HepError::PayloadTooLarge {
                offset,
                length,
                limit: HEP_MAX_PAYLOAD,
            });
        }
        if (inflater.total_in(), inflater.total_out()) == before {
            return Err(inflate_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the zlib stream ends before its end marker",
            )));
        }
    }
}
