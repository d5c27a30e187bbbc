//! Fuzzes the HEP v3 decoder: one datagram, and the same bytes as a TCP stream cut into random reads.
//!
//! Besides "never panics", it checks two properties a crash would reveal:
//! a decoded packet survives encode → decode unchanged, and the stream decoder
//! yields the same packets however the stream is cut into reads.

#![no_main]

use bytes::{Bytes, BytesMut};
use fiche_pbx::hep::{self, HepPacket, HepStreamDecoder, PayloadEncoding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_datagram(data);
    // The first two bytes choose the read sizes; the rest is the stream.
    if let [a, b, stream @ ..] = data {
        let whole = read_stream(stream, &mut std::iter::repeat(stream.len().max(1)));
        let mut sizes = ReadSizes::new(u16::from_be_bytes([*a, *b]));
        let pieces = read_stream(stream, &mut sizes);
        assert_eq!(whole, pieces, "stream results depend on how reads are cut");
    }
});

fn check_datagram(data: &[u8]) {
    let decoded = hep::decode(data);
    let shared = hep::decode_bytes(Bytes::copy_from_slice(data));
    assert_eq!(
        decoded.as_ref().ok(),
        shared.as_ref().ok(),
        "decode and decode_bytes disagree"
    );
    let Ok(packet) = decoded else { return };
    for encoding in [PayloadEncoding::Plain, PayloadEncoding::Zlib] {
        // Packets HEP cannot carry (e.g. an inflated payload above 65529 bytes) are skipped.
        if let Ok(bytes) = hep::try_encode(&packet, encoding) {
            let again = hep::decode(&bytes);
            assert_eq!(
                again.ok().as_ref(),
                Some(&packet),
                "encode/decode round trip"
            );
        }
    }
}

/// What a connection sees: each packet or packet error in order, and the bytes
/// left over at the end (`None` when a framing error closed the connection, as
/// bytes not yet read then differ with the read sizes).
#[derive(Debug, PartialEq)]
struct StreamOutcome {
    results: Vec<Result<HepPacket, String>>,
    left_over: Option<usize>,
}

fn read_stream(stream: &[u8], sizes: &mut dyn Iterator<Item = usize>) -> StreamOutcome {
    let mut decoder = HepStreamDecoder::new();
    let mut buf = BytesMut::new();
    let mut results = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (read, after) = rest.split_at(size);
        rest = after;
        buf.extend_from_slice(read);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => results.push(Ok(packet)),
                Ok(None) => break,
                Err(error) => {
                    results.push(Err(error.to_string()));
                    if error.breaks_framing() {
                        // The caller closes the connection here.
                        return StreamOutcome {
                            results,
                            left_over: None,
                        };
                    }
                }
            }
        }
        assert!(
            buf.len() <= hep::HEP_MAX_PACKET,
            "stream buffer above one packet"
        );
    }
    StreamOutcome {
        results,
        left_over: Some(buf.len()),
    }
}

/// Read sizes from a small xorshift generator: mostly tiny reads, some large ones.
struct ReadSizes(u16);

impl ReadSizes {
    fn new(seed: u16) -> Self {
        Self(seed | 1)
    }
}

impl Iterator for ReadSizes {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let mut x = self.0;
        x ^= x << 7;
        x ^= x >> 9;
        x ^= x << 8;
        self.0 = x;
        let size = usize::from(x);
        Some(if x & 0x8000 == 0 {
            size % 16 + 1
        } else {
            size % 2048 + 1
        })
    }
}
