//! The test PBX itself: Kamailio with `sip-test-scripts/kamailio.cfg` mirrors
//! every SIP message it receives and sends as HEP v3 (capture id 101). Runs
//! without Fiche, so a failure here points at the PBX side, not the product.

use fiche_e2e::{exclusive, Testbed};
use std::time::Duration;
use tokio::net::UdpSocket;

/// One mirrored message: HEP source and destination ports and the SIP text.
#[derive(Debug)]
struct Mirrored {
    src_port: u16,
    dst_port: u16,
    sip: String,
}

/// Decodes just enough HEP v3 to check what Kamailio sends; panics on
/// anything else, since Kamailio must send exactly HEP v3.
fn decode(packet: &[u8]) -> Mirrored {
    assert_eq!(
        packet.get(..4),
        Some(&b"HEP3"[..]),
        "not HEP v3: {packet:02x?}"
    );
    let total = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    assert_eq!(total, packet.len(), "HEP length field vs datagram length");
    let (mut src_port, mut dst_port, mut capture_id, mut sip) = (None, None, None, None);
    let mut at = 6;
    while at < packet.len() {
        let header = &packet[at..at + 6];
        let vendor = u16::from_be_bytes([header[0], header[1]]);
        let kind = u16::from_be_bytes([header[2], header[3]]);
        let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
        assert!(
            length >= 6 && at + length <= packet.len(),
            "bad chunk length {length}"
        );
        let value = &packet[at + 6..at + length];
        if vendor == 0 {
            match kind {
                0x0007 => src_port = Some(u16::from_be_bytes([value[0], value[1]])),
                0x0008 => dst_port = Some(u16::from_be_bytes([value[0], value[1]])),
                0x000c => {
                    capture_id = Some(u32::from_be_bytes([value[0], value[1], value[2], value[3]]))
                }
                0x000f => sip = Some(String::from_utf8_lossy(value).into_owned()),
                _ => {}
            }
        }
        at += length;
    }
    assert_eq!(capture_id, Some(101), "capture id (hep_capture_id)");
    Mirrored {
        src_port: src_port.expect("source port chunk"),
        dst_port: dst_port.expect("destination port chunk"),
        sip: sip.expect("payload chunk"),
    }
}

#[tokio::test]
async fn kamailio_mirrors_a_ring_group_call_both_ways_as_hep3() {
    let _serial = exclusive().await;
    let bed = Testbed::start_pbx_only().await.expect("starting kamailio");
    let ports = bed.ports();
    let hep = UdpSocket::bind(("127.0.0.1", ports.hep))
        .await
        .expect("binding the HEP port");
    let played = bed.play("ring-group").await.expect("playing ring-group");
    played.assert_sipp_ok();

    let mut mirrored = Vec::new();
    let mut buffer = vec![0u8; 65_536];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(500), hep.recv(&mut buffer)).await
    {
        mirrored.push(decode(&buffer[..n]));
    }
    let ours: Vec<&Mirrored> = mirrored
        .iter()
        .filter(|m| m.sip.contains(&played.call_id))
        .collect();
    let seen = |first_line: &str, src: u16, dst: u16| {
        ours.iter()
            .any(|m| m.sip.starts_with(first_line) && m.src_port == src && m.dst_port == dst)
    };
    let listing = ours
        .iter()
        .map(|m| {
            format!(
                "{} -> {}: {}",
                m.src_port,
                m.dst_port,
                m.sip.lines().next().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let phones = [
        ("201", ports.phone_201),
        ("202", ports.phone_202),
        ("203", ports.phone_203),
    ];
    // The caller's INVITE as received, and each forked copy as sent.
    assert!(
        seen("INVITE sip:600@", ports.caller, ports.pbx),
        "{listing}"
    );
    for (extension, port) in phones {
        assert!(
            seen(&format!("INVITE sip:{extension}@"), ports.pbx, port),
            "INVITE to {extension}:\n{listing}"
        );
        assert!(
            seen("SIP/2.0 180", port, ports.pbx),
            "180 from {extension}:\n{listing}"
        );
    }
    // Replies relayed back to the caller, and in-dialog requests both ways.
    assert!(seen("SIP/2.0 180", ports.pbx, ports.caller), "{listing}");
    assert!(seen("SIP/2.0 200", ports.phone_202, ports.pbx), "{listing}");
    assert!(seen("SIP/2.0 200", ports.pbx, ports.caller), "{listing}");
    assert!(seen("ACK sip:202@", ports.caller, ports.pbx), "{listing}");
    assert!(
        seen("ACK sip:202@", ports.pbx, ports.phone_202),
        "{listing}"
    );
    assert!(seen("BYE sip:202@", ports.caller, ports.pbx), "{listing}");
    assert!(
        seen("BYE sip:202@", ports.pbx, ports.phone_202),
        "{listing}"
    );
    // Kamailio's own CANCELs of the losing phones carry the RFC 3326 reason.
    for (extension, port) in [("201", ports.phone_201), ("203", ports.phone_203)] {
        let cancel = ours
            .iter()
            .find(|m| m.sip.starts_with(&format!("CANCEL sip:{extension}@")) && m.dst_port == port)
            .unwrap_or_else(|| panic!("no CANCEL to {extension}:\n{listing}"));
        assert!(
            cancel.sip.contains("Reason: SIP;cause=200"),
            "CANCEL to {extension} without Reason cause=200:\n{}",
            cancel.sip
        );
    }
}
