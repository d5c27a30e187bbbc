//! HEP v3 generic chunk type ids (vendor 0x0000) and their names for error messages.

/// Vendor id of the generic chunk set; chunks of any other vendor are skipped.
pub const VENDOR_GENERIC: u16 = 0x0000;
/// Size of the packet header (`"HEP3"` + length) and of every chunk header.
pub const HEADER_LEN: usize = 6;

/// IP protocol family, u8 (2 = IPv4, 10 = IPv6).
pub const IP_FAMILY: u16 = 0x0001;
/// IP protocol id, u8 (17 = UDP, 6 = TCP).
pub const IP_PROTOCOL: u16 = 0x0002;
/// IPv4 source address, 4 bytes.
pub const IPV4_SRC: u16 = 0x0003;
/// IPv4 destination address, 4 bytes.
pub const IPV4_DST: u16 = 0x0004;
/// IPv6 source address, 16 bytes.
pub const IPV6_SRC: u16 = 0x0005;
/// IPv6 destination address, 16 bytes.
pub const IPV6_DST: u16 = 0x0006;
/// Source port, u16.
pub const SRC_PORT: u16 = 0x0007;
/// Destination port, u16.
pub const DST_PORT: u16 = 0x0008;
/// Capture time, Unix seconds, u32.
pub const TIMESTAMP_SECONDS: u16 = 0x0009;
/// Capture time, microseconds within the second, u32.
pub const TIMESTAMP_MICROS: u16 = 0x000a;
/// Protocol type of the payload, u8 (1 = SIP).
pub const PROTO_TYPE: u16 = 0x000b;
/// Capture agent id, u32 (u16 accepted).
pub const CAPTURE_ID: u16 = 0x000c;
/// Keep-alive timer, u16 seconds.
pub const KEEP_ALIVE: u16 = 0x000d;
/// Authentication key, bytes (may be empty).
pub const AUTH_KEY: u16 = 0x000e;
/// Captured payload, bytes.
pub const PAYLOAD: u16 = 0x000f;
/// Captured payload, zlib-compressed bytes.
pub const PAYLOAD_ZLIB: u16 = 0x0010;
/// Internal correlation id, bytes.
pub const CORRELATION_ID: u16 = 0x0011;
/// VLAN id, u16.
pub const VLAN_ID: u16 = 0x0012;
/// Capture agent (node) name, bytes.
pub const NODE_NAME: u16 = 0x0013;

/// Human name of a generic chunk type, for error messages and logs.
pub fn name(chunk_type: u16) -> &'static str {
    match chunk_type {
        IP_FAMILY => "IP family",
        IP_PROTOCOL => "IP protocol",
        IPV4_SRC => "IPv4 source address",
        IPV4_DST => "IPv4 destination address",
        IPV6_SRC => "IPv6 source address",
        IPV6_DST => "IPv6 destination address",
        SRC_PORT => "source port",
        DST_PORT => "destination port",
        TIMESTAMP_SECONDS => "timestamp seconds",
        TIMESTAMP_MICROS => "timestamp microseconds",
        PROTO_TYPE => "protocol type",
        CAPTURE_ID => "capture id",
        KEEP_ALIVE => "keep-alive timer",
        AUTH_KEY => "auth key",
        PAYLOAD => "payload",
        PAYLOAD_ZLIB => "compressed payload",
        CORRELATION_ID => "correlation id",
        VLAN_ID => "VLAN id",
        NODE_NAME => "node name",
        _ => "unknown",
    }
}
