//! LLDP neighbours of each NIC as IPA reports them (`interfaces[].lldp`): the raw TLVs of the
//! first LLDP frame each interface receives within a bounded time, as `[type, hex value]`
//! pairs. Collected only when the kernel command line says `ipa-collect-lldp`, for at most
//! `ipa-lldp-timeout` seconds, on a thread of its own while the rest of the inventory is read.
//!
//! The codec ([`parse_tlvs`]) is pure; the sockets are in `lldp_socket.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::lldp_socket::LldpSocket;

/// IPA's `ipa-lldp-timeout` default (seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The LLDP ethertype.
pub const ETHERTYPE: u16 = 0x88cc;

/// The TLVs of one frame, as IPA reports them: `(type, lowercase hex of the value)`.
pub type Tlvs = Vec<(u8, String)>;

/// The TLVs of an Ethernet frame carrying an LLDPDU, read the way IPA's `_parse_tlv` reads
/// them: the 14-byte header skipped, then 7-bit type, 9-bit length, value, until the bytes
/// run out (so the End TLV and any padding after it are listed too, as IPA lists them); a
/// last TLV whose value is cut short keeps what is there. `None` for a frame shorter than an
/// Ethernet header.
pub fn parse_tlvs(frame: &[u8]) -> Option<Tlvs> {
    let mut buf = frame.get(14..)?;
    let mut out = Vec::new();
    while !buf.is_empty() {
        // A lone trailing byte: IPA's struct.unpack would fail on it; a header needs two.
        let Some(hdr) = buf.get(..2) else { break };
        let hdr = u16::from_be_bytes([hdr[0], hdr[1]]);
        let kind = (hdr >> 9) as u8;
        let len = usize::from(hdr & 0x01ff);
        let end = (2 + len).min(buf.len());
        out.push((kind, hex(&buf[2..end])));
        buf = &buf[end..];
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Listens on each interface in `names` until each has received one LLDP frame or `timeout`
/// has passed. Every interface is in the answer: its TLVs, or an empty list when nothing came
/// (or its socket could not be opened), as IPA reports them.
pub fn collect(names: &[String], timeout: Duration) -> BTreeMap<String, Tlvs> {
    let deadline = Instant::now() + timeout;
    let mut out: BTreeMap<String, Tlvs> = names.iter().map(|n| (n.clone(), vec![])).collect();
    let mut waiting: Vec<(String, LldpSocket)> = Vec::new();
    for name in names {
        match LldpSocket::open(name) {
            Ok(s) => waiting.push((name.clone(), s)),
            Err(e) => tracing::warn!("LLDP: cannot listen on {name}: {e}"),
        }
    }
    let mut buf = vec![0u8; 1600];
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ready = match LldpSocket::wait(waiting.iter().map(|(_, s)| s), left) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("LLDP: waiting for frames: {e}");
                break;
            }
        };
        let mut done = Vec::new();
        for i in ready {
            let (name, socket) = &waiting[i];
            match socket.recv(&mut buf) {
                Ok(Some(n)) => {
                    if let Some(tlvs) = parse_tlvs(&buf[..n]) {
                        out.insert(name.clone(), tlvs);
                        done.push(i);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("LLDP: reading from {name}: {e}");
                    done.push(i);
                }
            }
        }
        for i in done.into_iter().rev() {
            waiting.remove(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a Cisco switch sends it (captured with tcpdump, trimmed): chassis ID (MAC),
    /// port ID (interface name), TTL, system name, End.
    const SWITCH_FRAME: &str = "0180c200000e001122334455 88cc\
        0207 04 00 11 22 33 44 55\
        0409 05 47 69 31 2f 30 2f 31 37\
        0602 0078\
        0a08 73 77 2d 72 61 63 6b 31\
        0000";

    fn bytes(hexstr: &str) -> Vec<u8> {
        let h: String = hexstr.chars().filter(|c| !c.is_whitespace()).collect();
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn tlvs_of_a_switch_frame() {
        let tlvs = parse_tlvs(&bytes(SWITCH_FRAME)).unwrap();
        assert_eq!(
            tlvs,
            [
                (1, "04001122334455".to_string()),
                (2, "054769312f302f3137".to_string()),
                (3, "0078".to_string()),
                (5, "73772d7261636b31".to_string()),
                (0, String::new()),
            ]
        );
        // "Gi1/0/17", "sw-rack1"
        assert_eq!(&bytes(&tlvs[1].1)[1..], b"Gi1/0/17");
        assert_eq!(bytes(&tlvs[3].1), b"sw-rack1");
    }

    #[test]
    fn odd_frames_as_ipa_reads_them() {
        // Shorter than an Ethernet header: nothing.
        assert_eq!(parse_tlvs(&[0u8; 13]), None);
        // Header only: no TLVs.
        assert_eq!(parse_tlvs(&[0u8; 14]), Some(vec![]));
        // Padding after End reads as more End TLVs, as in IPA.
        let mut f = bytes(SWITCH_FRAME);
        f.extend_from_slice(&[0, 0, 0, 0]);
        let tlvs = parse_tlvs(&f).unwrap();
        assert_eq!(
            &tlvs[4..],
            [(0, String::new()), (0, String::new()), (0, String::new())]
        );
        // A value cut short keeps what is there; a lone last byte is dropped.
        let mut f = vec![0u8; 14];
        f.extend_from_slice(&[0x0a, 0x08, b's', b'w']);
        assert_eq!(parse_tlvs(&f).unwrap(), [(5, "7377".to_string())]);
        let mut f = vec![0u8; 14];
        f.extend_from_slice(&[0x06, 0x02, 0x00, 0x78, 0xff]);
        assert_eq!(parse_tlvs(&f).unwrap(), [(3, "0078".to_string())]);
        // The longest value the 9-bit length allows.
        let mut f = vec![0u8; 14];
        f.extend_from_slice(&[0xff, 0xff]);
        f.extend_from_slice(&[0xab; 511]);
        let tlvs = parse_tlvs(&f).unwrap();
        assert_eq!(tlvs[0].0, 127);
        assert_eq!(tlvs[0].1.len(), 1022);
    }

    #[test]
    fn interfaces_that_cannot_be_opened_report_empty_lists() {
        let names = vec!["ferrite-no-such-nic0".to_string()];
        let started = Instant::now();
        let got = collect(&names, Duration::from_secs(5));
        assert_eq!(got["ferrite-no-such-nic0"], Vec::<(u8, String)>::new());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "waited for a dead NIC"
        );
    }
}
