//! Decoder tests on byte vectors built by hand (hex, or chunk by chunk), not only through the encoder.

use std::io::Write;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};

use super::*;

/// Bytes from hex text; `#` starts a comment, whitespace is ignored.
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.bytes().filter(|b| !b.is_ascii_whitespace()))
        .collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// One chunk, header written by hand.
fn chunk(vendor_id: u16, chunk_type: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&vendor_id.to_be_bytes());
    out.extend_from_slice(&chunk_type.to_be_bytes());
    out.extend_from_slice(&u16::try_from(6 + value.len()).unwrap().to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// A packet of the given chunks, in that order.
fn packet(chunks: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = chunks.concat();
    let mut out = b"HEP3".to_vec();
    out.extend_from_slice(&u16::try_from(6 + body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn time(seconds: i64, micros: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, micros * 1000).unwrap()
}

fn addr(text: &str) -> Option<SocketAddr> {
    Some(text.parse().unwrap())
}

const RINGING: &str = "SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK776asdhds\r\n\
From: \"Elodie\" <sip:0612345678@pbx.example>;tag=1928301774\r\n\
To: <sip:201@pbx.example>;tag=a6c85cf\r\n\
Call-ID: a84b4c76e66710@192.168.1.20\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n";

/// What Kamailio 5.6 `siptrace` (hep_version=3, hep_capture_id=101, auth_key) sends
/// for a 180 Ringing from a phone at 192.168.1.20 to the proxy at 10.0.0.1.
const KAMAILIO_IPV4: &str = "
48455033 0173                         # HEP3, total length 371
0000 0001 0007 02                     # IP family: AF_INET
0000 0002 0007 11                     # IP protocol: UDP
0000 0003 000a c0a80114               # IPv4 source 192.168.1.20
0000 0004 000a 0a000001               # IPv4 destination 10.0.0.1
0000 0007 0008 13c4                   # source port 5060
0000 0008 0008 13c4                   # destination port 5060
0000 0009 000a 67426c80               # seconds 1732406400 (2024-11-24T00:00:00Z)
0000 000a 000a 0001e240               # microseconds 123456
0000 000b 0007 01                     # protocol type: SIP
0000 000c 000a 00000065               # capture id 101
0000 000e 000c 733363726574           # auth key \"s3cret\"
0000 000f 010a                        # payload, 260 bytes:
5349502f322e30203138302052696e67
696e670d0a5669613a205349502f322e
302f554450203139322e3136382e312e
32303a353036303b6272616e63683d7a
39684734624b3737366173646864730d
0a46726f6d3a2022456c6f6469652220
3c7369703a3036313233343536373840
7062782e6578616d706c653e3b746167
3d313932383330313737340d0a546f3a
203c7369703a323031407062782e6578
616d706c653e3b7461673d6136633835
63660d0a43616c6c2d49443a20613834
6234633736653636373130403139322e
3136382e312e32300d0a435365713a20
33313431353920494e564954450d0a43
6f6e74656e742d4c656e6774683a2030
0d0a0d0a
";

const BYE: &str = "BYE sip:201@[2001:db8::1]:5061 SIP/2.0\r\n\
Via: SIP/2.0/UDP [2001:db8::20]:5060;branch=z9hG4bK-1\r\n\
Call-ID: 7f3a@2001:db8::20\r\n\
CSeq: 2 BYE\r\n\
Content-Length: 0\r\n\r\n";

/// Asterisk `res_hep` order (addresses after the capture id), IPv6, an empty auth
/// key, a channel-name correlation id, a node name and an Asterisk vendor chunk.
const ASTERISK_IPV6: &str = "
48455033 014a                                     # HEP3, total length 330
0000 0001 0007 0a                                 # IP family: AF_INET6
0000 0002 0007 11                                 # IP protocol: UDP
0000 0007 0008 13c4                               # source port 5060
0000 0008 0008 13c5                               # destination port 5061
0000 0009 000a 67426c80                           # seconds 1732406400
0000 000a 000a 000f423f                           # microseconds 999999
0000 000b 0007 01                                 # protocol type: SIP
0000 000c 000a 000004d2                           # capture id 1234
0000 0005 0016 20010db8000000000000000000000020   # IPv6 source 2001:db8::20
0000 0006 0016 20010db8000000000000000000000001   # IPv6 destination 2001:db8::1
0000 000e 0006                                    # auth key, empty
0000 0011 0018 504a5349502f3230312d3030303030303031  # correlation id PJSIP/201-00000001
0000 0013 000a 70627831                           # node name pbx1
0004 0001 000a 00000007                           # Asterisk vendor chunk: skipped
0000 000f 00a3                                    # payload, 157 bytes:
425945207369703a323031405b323030
313a6462383a3a315d3a353036312053
49502f322e300d0a5669613a20534950
2f322e302f554450205b323030313a64
62383a3a32305d3a353036303b627261
6e63683d7a39684734624b2d310d0a43
616c6c2d49443a203766336140323030
313a6462383a3a32300d0a435365713a
2032204259450d0a436f6e74656e742d
4c656e6774683a20300d0a0d0a
";

fn kamailio_packet() -> HepPacket {
    HepPacket {
        ip_family: Some(2),
        ip_protocol: Some(17),
        src: addr("192.168.1.20:5060"),
        dst: addr("10.0.0.1:5060"),
        timestamp: Some(time(1_732_406_400, 123_456)),
        proto_type: Some(1),
        capture_id: Some(101),
        auth_key: Some(Bytes::from_static(b"s3cret")),
        correlation_id: None,
        node_name: None,
        payload: Bytes::from_static(RINGING.as_bytes()),
    }
}

fn asterisk_packet() -> HepPacket {
    HepPacket {
        ip_family: Some(10),
        ip_protocol: Some(17),
        src: addr("[2001:db8::20]:5060"),
        dst: addr("[2001:db8::1]:5061"),
        timestamp: Some(time(1_732_406_400, 999_999)),
        proto_type: Some(1),
        capture_id: Some(1234),
        auth_key: Some(Bytes::new()),
        correlation_id: Some(Bytes::from_static(b"PJSIP/201-00000001")),
        node_name: Some(Bytes::from_static(b"pbx1")),
        payload: Bytes::from_static(BYE.as_bytes()),
    }
}

/// The chunks of a small SIP packet, each built by hand, for order and error tests.
fn sample_chunks() -> Vec<Vec<u8>> {
    vec![
        chunk(0, 0x0001, &[2]),
        chunk(0, 0x0002, &[17]),
        chunk(0, 0x0003, &[127, 0, 0, 1]),
        chunk(0, 0x0004, &[127, 0, 0, 2]),
        chunk(0, 0x0007, &5060u16.to_be_bytes()),
        chunk(0, 0x0008, &5070u16.to_be_bytes()),
        chunk(0, 0x0009, &1_700_000_000u32.to_be_bytes()),
        chunk(0, 0x000a, &42u32.to_be_bytes()),
        chunk(0, 0x000b, &[1]),
        chunk(0, 0x000c, &7u32.to_be_bytes()),
        chunk(0, 0x0011, b"call-1@host"),
        chunk(0, 0x000f, b"OPTIONS sip:201@127.0.0.2 SIP/2.0\r\n\r\n"),
    ]
}

fn sample_packet() -> HepPacket {
    HepPacket {
        ip_family: Some(2),
        ip_protocol: Some(17),
        src: addr("127.0.0.1:5060"),
        dst: addr("127.0.0.2:5070"),
        timestamp: Some(time(1_700_000_000, 42)),
        proto_type: Some(1),
        capture_id: Some(7),
        correlation_id: Some(Bytes::from_static(b"call-1@host")),
        payload: Bytes::from_static(b"OPTIONS sip:201@127.0.0.2 SIP/2.0\r\n\r\n"),
        ..HepPacket::default()
    }
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn kamailio_ipv4_vector_decodes_every_field() {
    let bytes = hex(KAMAILIO_IPV4);
    assert_eq!(bytes.len(), 371);
    let decoded = decode(&bytes).unwrap();
    assert_eq!(decoded, kamailio_packet());
    assert!(decoded.is_sip());
    assert_eq!(
        decoded.timestamp.unwrap().to_rfc3339(),
        "2024-11-24T00:00:00.123456+00:00"
    );
}

#[test]
fn asterisk_ipv6_vector_decodes_every_field_and_skips_the_vendor_chunk() {
    let bytes = hex(ASTERISK_IPV6);
    assert_eq!(bytes.len(), 330);
    assert_eq!(decode(&bytes).unwrap(), asterisk_packet());
}

#[test]
fn chunk_order_does_not_matter() {
    let chunks = sample_chunks();
    for rotation in 0..chunks.len() {
        let mut rotated = chunks.clone();
        rotated.rotate_left(rotation);
        assert_eq!(
            decode(&packet(&rotated)).unwrap(),
            sample_packet(),
            "rotation {rotation}"
        );
        rotated.reverse();
        assert_eq!(
            decode(&packet(&rotated)).unwrap(),
            sample_packet(),
            "reversed rotation {rotation}"
        );
    }
}

#[test]
fn vendor_and_unknown_chunks_are_skipped_by_length() {
    let mut chunks = sample_chunks();
    // A vendor chunk reusing a generic type id with a value of the wrong size:
    // it must not be read as an IPv4 address.
    chunks.insert(0, chunk(0x0004, 0x0003, b"not an address"));
    chunks.insert(3, chunk(0x0002, 0x000f, b"vendor payload, not ours"));
    chunks.insert(5, chunk(0, 0x0024, b"call"));
    chunks.insert(6, chunk(0, 0x7fff, &[0xff; 300]));
    chunks.push(chunk(0, 0x0012, &[0, 5])); // VLAN id, known but not kept
    chunks.push(chunk(0xffff, 0xffff, &[]));
    assert_eq!(decode(&packet(&chunks)).unwrap(), sample_packet());
}

#[test]
fn compressed_payload_is_inflated() {
    let sip = RINGING.repeat(3);
    let mut chunks = sample_chunks();
    chunks.pop();
    chunks.push(chunk(0, 0x0010, &zlib(sip.as_bytes())));
    let decoded = decode(&packet(&chunks)).unwrap();
    assert_eq!(decoded.payload, sip.as_bytes());
    assert!(decoded.is_sip());
}

#[test]
fn compressed_payload_up_to_the_bound_is_accepted_and_beyond_is_refused() {
    let mut chunks = sample_chunks();
    chunks.pop();
    chunks.push(chunk(0, 0x0010, &zlib(&vec![b'a'; HEP_MAX_PAYLOAD])));
    assert_eq!(
        decode(&packet(&chunks)).unwrap().payload.len(),
        HEP_MAX_PAYLOAD
    );

    // A decompression bomb: 10 MB of zeros compress to about 10 KB.
    let bomb = zlib(&vec![0; 10_000_000]);
    assert!(bomb.len() < 60_000);
    chunks.pop();
    let offset = 6 + chunks.iter().map(Vec::len).sum::<usize>();
    chunks.push(chunk(0, 0x0010, &bomb));
    let error = decode(&packet(&chunks)).unwrap_err();
    assert!(
        matches!(error, HepError::PayloadTooLarge { offset: o, limit: HEP_MAX_PAYLOAD, .. } if o == offset),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&format!("offset {offset}")),
        "{error}"
    );
}

#[test]
fn corrupt_or_cut_zlib_payload_is_an_inflate_error() {
    let compressed = zlib(RINGING.as_bytes());
    let mut chunks = sample_chunks();
    chunks.pop();
    for cut in 0..compressed.len() {
        let mut bad = chunks.clone();
        bad.push(chunk(0, 0x0010, compressed.get(..cut).unwrap()));
        let error = decode(&packet(&bad)).unwrap_err();
        assert!(
            matches!(error, HepError::Inflate { .. }),
            "cut at {cut}: {error:?}"
        );
    }
    let mut bad = chunks.clone();
    bad.push(chunk(0, 0x0010, b"this is not zlib at all"));
    assert!(matches!(
        decode(&packet(&bad)),
        Err(HepError::Inflate { .. })
    ));
}

#[test]
fn every_truncated_prefix_is_refused_without_panic() {
    for vector in [
        hex(KAMAILIO_IPV4),
        hex(ASTERISK_IPV6),
        packet(&sample_chunks()),
    ] {
        for cut in 0..vector.len() {
            let prefix = vector.get(..cut).unwrap();
            assert!(decode(prefix).is_err(), "datagram cut at {cut} decoded");
            let mut buf = BytesMut::from(prefix);
            assert!(
                matches!(HepStreamDecoder::new().decode(&mut buf), Ok(None)),
                "stream cut at {cut} was not 'need more bytes'"
            );
            assert_eq!(buf.len(), cut, "stream decoder consumed a partial packet");
        }
    }
}

#[test]
fn truncated_datagram_names_declared_and_received_sizes() {
    let bytes = hex(KAMAILIO_IPV4);
    let error = decode(bytes.get(..200).unwrap()).unwrap_err();
    assert!(
        matches!(
            error,
            HepError::Truncated {
                needed: 371,
                available: 200
            }
        ),
        "{error:?}"
    );
    assert!(decode(&[]).is_err());
}

#[test]
fn trailing_bytes_after_the_declared_length_are_ignored() {
    let mut bytes = hex(KAMAILIO_IPV4);
    bytes.extend_from_slice(b"\0\0garbage after the packet");
    assert_eq!(decode(&bytes).unwrap(), kamailio_packet());
    assert_eq!(decode_bytes(Bytes::from(bytes)).unwrap(), kamailio_packet());
}

#[test]
fn oversized_declared_lengths_are_refused() {
    let mut bytes = packet(&sample_chunks());
    let real = bytes.len();
    bytes.splice(4..6, [0xff, 0xff]);
    let error = decode(&bytes).unwrap_err();
    assert!(
        matches!(error, HepError::Truncated { needed: 65535, available } if available == real),
        "{error:?}"
    );

    // The last chunk (the payload) claims more bytes than the packet holds.
    let mut chunks = sample_chunks();
    let payload = chunks.pop().unwrap();
    let offset = 6 + chunks.iter().map(Vec::len).sum::<usize>();
    let mut long = payload.clone();
    long.splice(4..6, 0xfff0u16.to_be_bytes());
    chunks.push(long);
    let error = decode(&packet(&chunks)).unwrap_err();
    assert!(
        matches!(
            error,
            HepError::BadChunk { vendor_id: 0, chunk_type: 0x000f, offset: o, length: 0xfff0, fault: ChunkFault::PastEnd { remaining } }
                if o == offset && remaining == payload.len()
        ),
        "{error:?}"
    );
    let message = error.to_string();
    for part in [
        "payload",
        "0x000f",
        &format!("offset {offset}"),
        "length 65520",
    ] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

#[test]
fn chunk_length_below_six_is_refused() {
    for length in 0u16..6 {
        let mut chunks = sample_chunks();
        let mut short = chunk(0, 0x0011, b"abc");
        short.splice(4..6, length.to_be_bytes());
        chunks.insert(2, short);
        let offset = 6 + chunks.iter().take(2).map(Vec::len).sum::<usize>();
        let error = decode(&packet(&chunks)).unwrap_err();
        assert!(
            matches!(
                error,
                HepError::BadChunk { chunk_type: 0x0011, offset: o, length: l, fault: ChunkFault::LengthBelowHeader, .. }
                    if o == offset && l == length
            ),
            "length {length}: {error:?}"
        );
        assert!(error.to_string().contains("correlation id"), "{error}");
    }
}

#[test]
fn packet_length_below_header_is_refused() {
    for declared in 0u16..6 {
        let mut bytes = b"HEP3".to_vec();
        bytes.extend_from_slice(&declared.to_be_bytes());
        assert!(
            matches!(decode(&bytes), Err(HepError::BadLength { declared: d }) if d == declared)
        );
        let mut buf = BytesMut::from(bytes.as_slice());
        let error = HepStreamDecoder::new().decode(&mut buf).unwrap_err();
        assert!(error.breaks_framing());
    }
}

#[test]
fn a_partial_chunk_header_at_the_end_is_refused() {
    let mut bytes = packet(&sample_chunks());
    let end = bytes.len();
    bytes.extend_from_slice(&[0, 0, 0]);
    let total = u16::try_from(bytes.len()).unwrap();
    bytes.splice(4..6, total.to_be_bytes());
    assert!(matches!(
        decode(&bytes),
        Err(HepError::TruncatedChunkHeader { offset, remaining: 3 }) if offset == end
    ));
}

#[test]
fn fixed_size_values_of_the_wrong_size_are_refused() {
    let cases: [(u16, &[u8], &str); 6] = [
        (0x0001, &[2, 0], "1 byte"),
        (0x0003, &[127, 0, 0], "4 bytes"),
        (0x0006, &[0; 4], "16 bytes"),
        (0x0007, &[0x13], "2 bytes"),
        (0x0009, &[0; 8], "4 bytes"),
        (0x000c, &[0; 3], "2 or 4 bytes"),
    ];
    for (chunk_type, value, expected) in cases {
        let mut chunks = sample_chunks();
        chunks.push(chunk(0, chunk_type, value));
        let error = decode(&packet(&chunks)).unwrap_err();
        assert!(
            matches!(
                error,
                HepError::BadChunk { chunk_type: t, fault: ChunkFault::ValueLength { actual, expected: e }, .. }
                    if t == chunk_type && actual == value.len() && e == expected
            ),
            "type {chunk_type:#06x}: {error:?}"
        );
    }
}

#[test]
fn sixteen_bit_capture_id_and_empty_auth_key_are_accepted() {
    let mut chunks = sample_chunks();
    chunks.retain(|c| c.get(2..4) != Some(&[0, 0x0c]));
    chunks.push(chunk(0, 0x000c, &[0x04, 0xd2]));
    chunks.push(chunk(0, 0x000e, &[]));
    let decoded = decode(&packet(&chunks)).unwrap();
    assert_eq!(decoded.capture_id, Some(1234));
    assert_eq!(decoded.auth_key, Some(Bytes::new()));
}

#[test]
fn zero_or_missing_timestamp_is_none() {
    let mut chunks = sample_chunks();
    chunks.retain(|c| !matches!(c.get(2..4), Some([0, 0x09 | 0x0a])));
    assert_eq!(decode(&packet(&chunks)).unwrap().timestamp, None);
    chunks.push(chunk(0, 0x0009, &[0; 4]));
    chunks.push(chunk(0, 0x000a, &[0; 4]));
    assert_eq!(decode(&packet(&chunks)).unwrap().timestamp, None);
}

#[test]
fn microseconds_of_a_second_or_more_carry_into_the_seconds() {
    let mut chunks = sample_chunks();
    chunks.retain(|c| c.get(2..4) != Some(&[0, 0x0a]));
    chunks.push(chunk(0, 0x000a, &2_500_000u32.to_be_bytes()));
    assert_eq!(
        decode(&packet(&chunks)).unwrap().timestamp,
        Some(time(1_700_000_002, 500_000))
    );
}

#[test]
fn address_without_port_gets_port_zero_and_port_without_address_is_dropped() {
    let chunks = vec![
        chunk(0, 0x0003, &[10, 1, 2, 3]),
        chunk(0, 0x0008, &5060u16.to_be_bytes()),
        chunk(0, 0x000f, b"x"),
    ];
    let decoded = decode(&packet(&chunks)).unwrap();
    assert_eq!(decoded.src, addr("10.1.2.3:0"));
    assert_eq!(decoded.dst, None);
    assert!(!decoded.is_sip());
}

#[test]
fn missing_or_duplicate_payload_is_refused() {
    let mut chunks = sample_chunks();
    let payload = chunks.pop().unwrap();
    assert!(matches!(
        decode(&packet(&chunks)),
        Err(HepError::MissingPayload)
    ));
    chunks.push(payload.clone());
    chunks.push(chunk(0, 0x0010, &zlib(b"other")));
    assert!(matches!(
        decode(&packet(&chunks)),
        Err(HepError::BadChunk {
            chunk_type: 0x0010,
            fault: ChunkFault::DuplicatePayload,
            ..
        })
    ));
}

#[test]
fn hep_v1_and_v2_are_refused_as_a_misconfigured_sender() {
    // HEP v1 IPv4 header: version, header length 16, family, protocol, ports, addresses.
    let v1 = hex("01 10 02 11 13c4 13c4 c0a80114 0a000001 5349502f322e30");
    let error = decode(&v1).unwrap_err();
    assert!(matches!(error, HepError::LegacyVersion(1)), "{error:?}");
    assert!(error.to_string().contains("hep_version=3"), "{error}");

    let v2 = hex("02 1c 02 11 13c4 13c4 c0a80114 0a000001 67426c80 0001e240 0065 0000");
    assert!(matches!(decode(&v2), Err(HepError::LegacyVersion(2))));

    // On a stream, the first byte alone is enough to refuse.
    let mut buf = BytesMut::from(&[2u8][..]);
    let error = HepStreamDecoder::new().decode(&mut buf).unwrap_err();
    assert!(matches!(error, HepError::LegacyVersion(2)) && error.breaks_framing());
}

#[test]
fn bad_magic_is_refused_early_on_a_stream() {
    assert!(matches!(
        decode(b"HEP2\0\x10xxxxxxxxxx"),
        Err(HepError::BadMagic)
    ));
    // A TLS ClientHello sent to the plain TCP port.
    let mut buf = BytesMut::from(&[0x16u8, 0x03, 0x01][..]);
    assert!(matches!(
        HepStreamDecoder::new().decode(&mut buf),
        Err(HepError::BadMagic)
    ));
    let mut buf = BytesMut::from(&b"HEX"[..]);
    assert!(matches!(
        HepStreamDecoder::new().decode(&mut buf),
        Err(HepError::BadMagic)
    ));
}

/// Three packets back to back, as one TCP read may carry them.
fn three_packets() -> (Vec<u8>, Vec<HepPacket>) {
    let mut stream = hex(KAMAILIO_IPV4);
    stream.extend(hex(ASTERISK_IPV6));
    stream.extend(packet(&sample_chunks()));
    (
        stream,
        vec![kamailio_packet(), asterisk_packet(), sample_packet()],
    )
}

#[test]
fn stream_decoder_takes_three_packets_from_one_buffer() {
    let (stream, expected) = three_packets();
    let mut buf = BytesMut::from(stream.as_slice());
    let mut decoder = HepStreamDecoder::new();
    let mut got = Vec::new();
    while let Some(packet) = decoder.decode(&mut buf).unwrap() {
        got.push(packet);
    }
    assert_eq!(got, expected);
    assert!(buf.is_empty());
    assert_eq!(decoder.packets(), 3);
}

#[test]
fn stream_decoder_reassembles_a_split_at_every_byte_boundary() {
    let (stream, expected) = three_packets();
    for split in 0..=stream.len() {
        let (first, second) = stream.split_at(split);
        let mut decoder = HepStreamDecoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for read in [first, second] {
            buf.extend_from_slice(read);
            while let Some(packet) = decoder.decode(&mut buf).unwrap() {
                got.push(packet);
            }
        }
        assert_eq!(got, expected, "split at {split}");
        assert!(buf.is_empty());
    }
}

#[test]
fn stream_decoder_fed_one_byte_at_a_time() {
    let (stream, expected) = three_packets();
    let mut decoder = HepStreamDecoder::new();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for byte in stream {
        buf.extend_from_slice(&[byte]);
        while let Some(packet) = decoder.decode(&mut buf).unwrap() {
            got.push(packet);
        }
    }
    assert_eq!(got, expected);
}

#[test]
fn stream_stays_in_sync_after_a_packet_with_a_bad_chunk() {
    let mut chunks = sample_chunks();
    chunks.push(chunk(0, 0x0001, &[1, 2, 3]));
    let mut stream = packet(&chunks);
    stream.extend(packet(&sample_chunks()));
    let mut buf = BytesMut::from(stream.as_slice());
    let mut decoder = HepStreamDecoder::new();
    let error = decoder.decode(&mut buf).unwrap_err();
    assert!(!error.breaks_framing(), "{error:?}");
    assert_eq!(decoder.decode(&mut buf).unwrap(), Some(sample_packet()));
}

#[test]
fn encode_then_decode_round_trips() {
    for original in [
        kamailio_packet(),
        asterisk_packet(),
        sample_packet(),
        HepPacket::default(),
    ] {
        assert_eq!(decode(&encode(&original)).unwrap(), original);
        assert_eq!(decode(&encode_compressed(&original)).unwrap(), original);
    }
    // The encoder writes Kamailio's chunk order: byte-identical to the hand-written vector.
    assert_eq!(encode(&kamailio_packet()), hex(KAMAILIO_IPV4));
}

#[test]
fn encoder_refuses_what_hep_cannot_carry() {
    let big = HepPacket {
        payload: Bytes::from(vec![b'x'; HEP_MAX_PAYLOAD]),
        ..HepPacket::default()
    };
    assert!(matches!(
        try_encode(&big, PayloadEncoding::Plain),
        Err(HepEncodeError::ChunkTooLarge {
            chunk_type: 0x000f,
            size: HEP_MAX_PAYLOAD
        })
    ));
    // Compressible enough to fit once zlib'd.
    assert_eq!(
        decode(&try_encode(&big, PayloadEncoding::Zlib).unwrap()).unwrap(),
        big
    );
    // The encoder does not enforce the decoder's inflation bound: a load tool may
    // want to send such a packet, and the decoder refuses it.
    let bigger = HepPacket {
        payload: Bytes::from(vec![b'x'; HEP_MAX_PAYLOAD + 1]),
        ..HepPacket::default()
    };
    assert!(matches!(
        decode(&encode_compressed(&bigger)),
        Err(HepError::PayloadTooLarge { .. })
    ));
    let nearly = HepPacket {
        payload: Bytes::from(vec![b'x'; 65_529]),
        correlation_id: Some(Bytes::from_static(b"id")),
        ..HepPacket::default()
    };
    assert!(matches!(
        try_encode(&nearly, PayloadEncoding::Plain),
        Err(HepEncodeError::PacketTooLarge { size: 65_549 })
    ));
    let before_1970 = HepPacket {
        timestamp: Some(time(-1, 0)),
        ..HepPacket::default()
    };
    assert!(matches!(
        try_encode(&before_1970, PayloadEncoding::Plain),
        Err(HepEncodeError::TimestampOutOfRange(_))
    ));
}

/// Every single-byte corruption of real vectors must decode or fail, never panic.
#[test]
fn single_byte_corruptions_never_panic() {
    for vector in [hex(KAMAILIO_IPV4), hex(ASTERISK_IPV6)] {
        for position in 0..vector.len() {
            for value in [0x00, 0x01, 0x05, 0x06, 0x7f, 0xff] {
                let mut corrupt = vector.clone();
                if let Some(byte) = corrupt.get_mut(position) {
                    *byte = value;
                }
                let _ = decode(&corrupt);
                let mut buf = BytesMut::from(corrupt.as_slice());
                let _ = HepStreamDecoder::new().decode(&mut buf);
            }
        }
    }
}
