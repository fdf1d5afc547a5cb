//! Entry points shared by the cargo-fuzz targets of agent/fuzz and the stable tests that
//! replay their seeds and past findings (`fuzz/seeds/<target>`, `fuzz/regressions/<target>`).
//! Each must never panic on any input.

use crate::disk::nvme::{
    self, ErasePlan, IdentifyController, IdentifyNamespace, SanitizeState, SanitizeStatus,
    SecureErase, IDENTIFY_LEN,
};
use crate::disk::probe;

/// The NVMe data structures a controller returns: `data` as Identify Controller, Identify
/// Namespace and the Sanitize Status log, as given and zero-padded to a full page. A Format
/// NVM built from a parsed namespace carries its current LBA format back; a plan chosen
/// from a controller uses only what the controller says it supports.
pub fn nvme(data: &[u8]) {
    if let Some(s) = data.get(..4) {
        let status = u32::from_le_bytes(s.try_into().expect("4 bytes"));
        assert!(!nvme::describe_status(status).is_empty());
    }
    let mut padded = data.to_vec();
    padded.resize(padded.len().max(IDENTIFY_LEN), 0);
    for page in [data, &padded[..]] {
        if let Ok(c) = IdentifyController::parse(page) {
            match ErasePlan::choose(&c) {
                Some(ErasePlan::Format(SecureErase::Cryptographic)) => {
                    assert!(c.supports_format() && c.format_crypto_erase())
                }
                Some(ErasePlan::Format(SecureErase::UserData)) => assert!(c.supports_format()),
                Some(ErasePlan::Sanitize(a)) => {
                    assert!(!c.supports_format(), "{a:?} chosen over Format NVM");
                    assert!(c.sanitize_crypto_erase() || c.sanitize_block_erase());
                }
                None => assert!(!c.supports_format()),
            }
        }
        if let Ok(ns) = IdentifyNamespace::parse(page) {
            assert_eq!(ns.lbads.len(), usize::from(ns.nlbaf.min(63)) + 1);
            if let Some(bs) = ns.block_size() {
                assert!(bs.is_power_of_two() && (512..=65536).contains(&bs), "{bs}");
            }
            for ses in [SecureErase::UserData, SecureErase::Cryptographic] {
                let cmd = nvme::format_nvm(1, &ns, ses, 0);
                let lbaf = (cmd.cdw10 & 0xF) | (((cmd.cdw10 >> 12) & 0x3) << 4);
                assert_eq!(lbaf, u32::from(ns.lba_format_index()), "{cmd:?}");
                assert_eq!(cmd.cdw10 & (1 << 4) != 0, ns.extended_metadata());
                assert_eq!((cmd.cdw10 >> 9) & 0x7, ses as u32);
            }
        }
        if let Ok(s) = SanitizeStatus::parse(page) {
            assert!((0.0..100.0).contains(&s.percent()), "{}", s.percent());
            if let SanitizeState::Reserved(n) = s.state {
                assert!((5..8).contains(&n));
            }
        }
    }
}

/// The signature probe over `data` as the head and tail of a disk (whole, and split in
/// two): no signature is reported twice. Also GPT type GUIDs: the text form the image
/// crate prints parses back to the same bytes.
pub fn disk_probe(data: &[u8]) {
    let (a, b) = data.split_at(data.len() / 2);
    for (head, tail) in [(data, data), (a, b), (b, a)] {
        let found = probe::probe(head, tail);
        for (i, s) in found.iter().enumerate() {
            assert!(!found[..i].contains(s), "{s:?} twice in {found:?}");
        }
    }
    let _ = probe::guid_bytes(&String::from_utf8_lossy(data));
    // The first GUIDs are enough to cover the codec; all of a 64 kB input is slow.
    for g in data.chunks_exact(16).take(64) {
        let g: [u8; 16] = g.try_into().expect("16 bytes");
        let text = ferrite_image::disk::gpt::guid_string(&g);
        assert_eq!(probe::guid_bytes(&text), Some(g), "{text}");
        assert_eq!(probe::guid_bytes(&text.to_uppercase()), Some(g), "{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays the committed seeds and every past finding (fuzz/regressions/<target>/,
    /// where `cargo xtask fuzz` says to put a crash once it is fixed).
    #[test]
    fn seeds_and_past_findings_replay_without_panics() {
        let counts = ferrite_testkit::fuzz::replay_corpus(
            env!("CARGO_MANIFEST_DIR"),
            &[("nvme", nvme), ("disk_probe", disk_probe)],
        );
        assert!(counts.iter().all(|(_, n)| *n >= 3), "{counts:?}");
    }

    #[test]
    fn small_inputs_do_not_panic() {
        for len in [0, 1, 3, 4, 19, 20, 511, 512, 4095, 4096, 70000] {
            let ones = vec![0xffu8; len];
            nvme(&ones);
            disk_probe(&ones);
            let zeros = vec![0u8; len];
            nvme(&zeros);
            disk_probe(&zeros);
        }
    }
}
