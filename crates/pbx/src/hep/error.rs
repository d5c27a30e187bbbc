//! Why a HEP packet was refused; every message names the chunk, offset and length at fault.

use std::fmt;

use super::chunk;

/// A HEP packet that cannot be decoded.
///
/// On a TCP stream, errors for which [`HepError::breaks_framing`] is true leave
/// the stream unusable (close the connection); the others concern one complete
/// packet that has already been consumed, so the stream stays in sync.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HepError {
    /// The first byte is a HEP v1/v2 version number.
    #[error("HEP v{0} packet: the sender is misconfigured (set hep_version=3)")]
    LegacyVersion(u8),
    /// The packet does not start with `"HEP3"`.
    #[error("not a HEP v3 packet: it does not start with \"HEP3\"")]
    BadMagic,
    /// Fewer bytes arrived than the header needs or declares.
    #[error("HEP packet truncated: {needed} bytes needed, {available} received")]
    Truncated {
        /// Bytes the header needs (6) or declares.
        needed: usize,
        /// Bytes actually received.
        available: usize,
    },
    /// The header's length field is below the header's own size.
    #[error(
        "HEP header declares a packet length of {declared} bytes, less than the 6-byte header"
    )]
    BadLength {
        /// The declared total length.
        declared: u16,
    },
    /// Fewer than 6 bytes are left for the next chunk header.
    #[error("HEP chunk header at offset {offset} truncated: {remaining} bytes left, 6 needed")]
    TruncatedChunkHeader {
        /// Offset of the chunk in the packet.
        offset: usize,
        /// Bytes left before the end of the packet.
        remaining: usize,
    },
    /// A chunk is malformed.
    #[error(
        "bad HEP chunk {name} (vendor 0x{vendor_id:04x}, type 0x{chunk_type:04x}) at offset {offset}, length {length}: {fault}",
        name = chunk_label(*vendor_id, *chunk_type)
    )]
    BadChunk {
        /// Vendor id of the chunk (0 = generic).
        vendor_id: u16,
        /// Type id of the chunk.
        chunk_type: u16,
        /// Offset of the chunk header in the packet.
        offset: usize,
        /// Declared chunk length, header included.
        length: u16,
        /// What is wrong with it.
        fault: ChunkFault,
    },
    /// The compressed payload inflates beyond the bound.
    #[error("HEP compressed payload chunk (0x0010) at offset {offset}, length {length}: inflates to more than {limit} bytes")]
    PayloadTooLarge {
        /// Offset of the chunk header in the packet.
        offset: usize,
        /// Declared chunk length, header included.
        length: u16,
        /// The bound, [`super::HEP_MAX_PAYLOAD`].
        limit: usize,
    },
    /// The compressed payload is not a valid zlib stream.
    #[error("HEP compressed payload chunk (0x0010) at offset {offset}, length {length}: not a valid zlib stream: {source}")]
    Inflate {
        /// Offset of the chunk header in the packet.
        offset: usize,
        /// Declared chunk length, header included.
        length: u16,
        /// The decompressor's complaint.
        source: std::io::Error,
    },
    /// Neither a payload (0x000f) nor a compressed payload (0x0010) chunk.
    #[error("HEP packet carries no payload chunk (0x000f or 0x0010)")]
    MissingPayload,
}

impl HepError {
    /// Whether a byte stream can no longer be split into packets after this error.
    pub fn breaks_framing(&self) -> bool {
        matches!(
            self,
            HepError::LegacyVersion(_) | HepError::BadMagic | HepError::BadLength { .. }
        )
    }
}

/// What is wrong with a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkFault {
    /// The chunk length is below the 6-byte chunk header.
    LengthBelowHeader,
    /// The chunk runs past the end of the packet.
    PastEnd {
        /// Bytes left in the packet from the chunk header on.
        remaining: usize,
    },
    /// A fixed-size value has the wrong size.
    ValueLength {
        /// Value bytes received.
        actual: usize,
        /// Value sizes accepted.
        expected: &'static str,
    },
    /// A second payload chunk: which one is the message would be a guess.
    DuplicatePayload,
}

impl fmt::Display for ChunkFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkFault::LengthBelowHeader => {
                f.write_str("chunk length is below the 6-byte chunk header")
            }
            ChunkFault::PastEnd { remaining } => write!(
                f,
                "chunk runs past the end of the packet ({remaining} bytes left)"
            ),
            ChunkFault::ValueLength { actual, expected } => {
                write!(f, "value is {actual} bytes, expected {expected}")
            }
            ChunkFault::DuplicatePayload => f.write_str("the packet already has a payload chunk"),
        }
    }
}

fn chunk_label(vendor_id: u16, chunk_type: u16) -> &'static str {
    if vendor_id == chunk::VENDOR_GENERIC {
        chunk::name(chunk_type)
    } else {
        "vendor"
    }
}
