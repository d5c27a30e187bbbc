//! Writes seed inputs for the fuzzers from the Kamailio captures in
//! `src/sip/captures/`, so that a fuzzing run starts from real call flows
//! instead of rediscovering SIP byte by byte:
//! - `hep_decode/`: every captured HEP datagram;
//! - `sip_track/`: each capture's SIP payloads joined by NUL bytes (that
//!   target's input), plus copies with neighbouring messages swapped, the way
//!   a mirror with several capturing processes reorders them;
//! - `ami_frame/`: every real AMI recording of `../shared/recordings/ami/`
//!   (JSON flows and raw streams) as the bytes a manager sends, behind the
//!   target's first byte (the read size), in three read sizes; and the
//!   scripted flows of `tests/data/ami/`. The recordings stay outside the
//!   repository; so does the corpus.
//!
//! ```sh
//! cargo run -p fiche-pbx --example fuzz_seeds -- crates/pbx/fuzz/corpus
//! cd crates/pbx/fuzz && cargo +nightly fuzz run sip_track corpus/sip_track -- -max_total_time=300
//! ```

use std::path::{Path, PathBuf};

/// Reordered copies written per capture.
const SWAPPED_COPIES: u64 = 3;
/// Neighbour swaps in each copy.
const SWAPS: usize = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("crates/pbx/fuzz/corpus"));
    let captures = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sip/captures");
    let hep_dir = root.join("hep_decode");
    let sip_dir = root.join("sip_track");
    std::fs::create_dir_all(&hep_dir)?;
    std::fs::create_dir_all(&sip_dir)?;
    let mut written = 0;
    for entry in std::fs::read_dir(&captures)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("cap") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("capture")
            .to_owned();
        let capture = std::fs::read(&path)?;
        let datagrams =
            records(&capture).ok_or_else(|| format!("{}: truncated record", path.display()))?;
        let mut payloads = Vec::with_capacity(datagrams.len());
        for (i, datagram) in datagrams.iter().enumerate() {
            std::fs::write(hep_dir.join(format!("{name}-{i:03}")), datagram)?;
            let packet = fiche_pbx::hep::decode(datagram)
                .map_err(|e| format!("{}: record {i}: {e}", path.display()))?;
            if packet.is_sip() {
                payloads.push(packet.payload.to_vec());
            }
            written += 1;
        }
        std::fs::write(sip_dir.join(&name), payloads.join(&0u8))?;
        written += 1;
        for copy in 0..SWAPPED_COPIES {
            let mut swapped = payloads.clone();
            let mut state = seed(&name, copy);
            for _ in 0..SWAPS {
                if swapped.len() < 2 {
                    break;
                }
                state = next(state);
                let at = usize::try_from(state % (swapped.len() as u64 - 1)).unwrap_or(0);
                swapped.swap(at, at + 1);
            }
            std::fs::write(
                sip_dir.join(format!("{name}-swapped-{copy}")),
                swapped.join(&0u8),
            )?;
            written += 1;
        }
    }
    written += ami_seeds(&root.join("ami_frame"))?;
    println!("{written} seeds written under {}", root.display());
    Ok(())
}

/// Read sizes (the `ami_frame` target's first byte) each AMI seed is written with.
const AMI_READ_SIZES: [u8; 3] = [1, 61, 255];

/// Seeds of the `ami_frame` target; returns how many were written.
fn ami_seeds(dir: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let recordings = std::env::var_os("FICHE_AMI_RECORDINGS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../../shared/recordings/ami"));
    let mut streams: Vec<(String, Vec<u8>)> = Vec::new();
    for folder in [recordings, manifest.join("../../tests/data/ami")] {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            eprintln!("{}: not found, skipped", folder.display());
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or("stream")
                .to_owned();
            let bytes = std::fs::read(&path)?;
            let stream = match path.extension().and_then(|e| e.to_str()) {
                Some("json") if name != "expectations.json" => json_to_wire(&bytes)?,
                Some("txt") => bytes,
                Some("ami") => script_to_wire(&bytes),
                _ => continue,
            };
            streams.push((name, stream));
        }
    }
    let mut written = 0;
    for (name, stream) in streams {
        for size in AMI_READ_SIZES {
            let mut seed = vec![size];
            seed.extend_from_slice(&stream);
            std::fs::write(dir.join(format!("{name}-read{size}")), seed)?;
            written += 1;
        }
    }
    Ok(written)
}

/// A JSON array of AMI messages (one object each) as manager bytes.
fn json_to_wire(bytes: &[u8]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let list: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(bytes)?;
    let mut out = String::from("Asterisk Call Manager/2.10.4\r\n");
    for object in list {
        for (key, value) in object {
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            if key == "content" && value.is_empty() {
                continue;
            }
            out.push_str(&format!("{key}: {value}\r\n"));
        }
        out.push_str("\r\n");
    }
    Ok(out.into_bytes())
}

/// A `tests/data/ami` script as manager bytes: its directives and comments dropped.
fn script_to_wire(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::from("Asterisk Call Manager/9.0.0\r\n");
    for line in text.lines() {
        if line.starts_with('@') || line.starts_with('#') {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// The datagrams of a capture file: records of a 4-byte big-endian length and
/// one HEP datagram. `None` when a record is cut short.
fn records(mut capture: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !capture.is_empty() {
        let (len, rest) = capture.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let (datagram, rest) = rest.split_at(len);
        out.push(datagram);
        capture = rest;
    }
    Some(out)
}

/// A seed that depends only on the capture's name and the copy, so that the
/// same seeds come out on every machine.
fn seed(name: &str, copy: u64) -> u64 {
    name.bytes()
        .fold(0x9e37_79b9_7f4a_7c15 ^ copy, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
        .max(1)
}

/// xorshift64: enough to pick positions reproducibly.
fn next(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
