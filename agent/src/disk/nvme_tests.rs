//! Unit tests of the NVMe codec: byte offsets of the NVMe Base Specification 2.0.

use super::*;

/// An Identify Controller page with the given fields at their spec offsets.
fn ctrl_page(oacs: u16, fna: u8, sanicap: u32, nn: u32) -> Vec<u8> {
    let mut b = vec![0u8; IDENTIFY_LEN];
    b[4..24].copy_from_slice(format!("{:<20}", "SER-1234").as_bytes());
    b[24..64].copy_from_slice(format!("{:<40}", "QEMU NVMe Ctrl").as_bytes());
    b[256..258].copy_from_slice(&oacs.to_le_bytes());
    b[328..332].copy_from_slice(&sanicap.to_le_bytes());
    b[516..520].copy_from_slice(&nn.to_le_bytes());
    b[524] = fna;
    b
}

/// An Identify Namespace page: `formats` are LBADS values of the LBA format table.
fn ns_page(nsze: u64, flbas: u8, dps: u8, dlfeat: u8, formats: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; IDENTIFY_LEN];
    b[0..8].copy_from_slice(&nsze.to_le_bytes());
    b[25] = (formats.len() - 1) as u8;
    b[26] = flbas;
    b[29] = dps;
    b[33] = dlfeat;
    for (i, &lbads) in formats.iter().enumerate() {
        b[128 + 4 * i + 2] = lbads;
    }
    b
}

#[test]
fn identify_controller_fields_at_their_offsets() {
    let c = IdentifyController::parse(&ctrl_page(0x000A, 0x04, 0x0000_0003, 1)).unwrap();
    assert_eq!(c.serial, "SER-1234");
    assert_eq!(c.model, "QEMU NVMe Ctrl");
    assert_eq!(c.oacs, 0x000A);
    assert!(c.supports_format());
    assert!(c.format_crypto_erase());
    assert!(!c.format_all_namespaces());
    assert!(c.sanitize_crypto_erase() && c.sanitize_block_erase());
    assert_eq!(c.nn, 1);
    // QEMU 7.2's controller: OACS = NS management | Format | Doorbell Buffer Config, FNA 0.
    let q = IdentifyController::parse(&ctrl_page(0x0108 | 0x2, 0, 0, 256)).unwrap();
    assert!(q.supports_format() && !q.format_crypto_erase());
    assert!(!q.sanitize_block_erase() && !q.sanitize_crypto_erase());
}

#[test]
fn short_identify_data_is_an_error_naming_the_structure() {
    let e = IdentifyController::parse(&[0u8; 100]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Identify Controller data is 100 bytes, expected 4096"
    );
    assert!(IdentifyNamespace::parse(&[0u8; 4095]).is_err());
    assert!(SanitizeStatus::parse(&[0u8; 3]).is_err());
}

#[test]
fn plan_prefers_crypto_format_then_user_data_then_sanitize() {
    let plan = |oacs, fna, sanicap| {
        ErasePlan::choose(&IdentifyController::parse(&ctrl_page(oacs, fna, sanicap, 1)).unwrap())
    };
    assert_eq!(
        plan(0x2, 0x4, 0x3),
        Some(ErasePlan::Format(SecureErase::Cryptographic))
    );
    assert_eq!(
        plan(0x2, 0x0, 0x3),
        Some(ErasePlan::Format(SecureErase::UserData))
    );
    assert_eq!(
        plan(0x0, 0x4, 0x3),
        Some(ErasePlan::Sanitize(SanitizeAction::CryptoErase))
    );
    assert_eq!(
        plan(0x0, 0x0, 0x2),
        Some(ErasePlan::Sanitize(SanitizeAction::BlockErase))
    );
    // Overwrite-only sanitize (SANICAP bit 2) is not used: too slow to be a clean step.
    assert_eq!(plan(0x0, 0x0, 0x4), None);
    assert_eq!(plan(0x0, 0x0, 0x0), None);
    assert_eq!(
        ErasePlan::Sanitize(SanitizeAction::BlockErase).method(),
        "nvme sanitize (block erase)"
    );
    assert_eq!(
        ErasePlan::Format(SecureErase::UserData).method(),
        "nvme user-data erase"
    );
}

#[test]
fn identify_namespace_current_format_and_dlfeat() {
    // 512 B and 4 KiB formats; 4 KiB current; PI type 1 first; deallocated reads zeroes.
    let ns = IdentifyNamespace::parse(&ns_page(1 << 20, 0x01, 0x09, 0x09, &[9, 12])).unwrap();
    assert_eq!(ns.nsze, 1 << 20);
    assert_eq!(ns.nlbaf, 1);
    assert_eq!(ns.lba_format_index(), 1);
    assert_eq!(ns.block_size(), Some(4096));
    assert!(!ns.extended_metadata());
    assert!(ns.deallocated_reads_zeroes());
    let ff = IdentifyNamespace::parse(&ns_page(8, 0x10, 0, 0x02, &[9])).unwrap();
    assert!(ff.extended_metadata());
    assert!(!ff.deallocated_reads_zeroes(), "010b reads 0xFF");
    assert_eq!(ff.block_size(), Some(512));
}

#[test]
fn format_index_upper_bits_count_only_with_more_than_16_formats() {
    let formats: Vec<u8> = (0..20).map(|i| if i == 17 { 12 } else { 9 }).collect();
    // FLBAS: low bits 0001b, bits 6:5 = 01b → format 17.
    let ns = IdentifyNamespace::parse(&ns_page(8, 0x21, 0, 0, &formats)).unwrap();
    assert_eq!(ns.lba_format_index(), 17);
    assert_eq!(ns.block_size(), Some(4096));
    let cmd = format_nvm(1, &ns, SecureErase::UserData, 0);
    assert_eq!(cmd.cdw10 & 0xF, 1, "LBAFL");
    assert_eq!((cmd.cdw10 >> 12) & 0x3, 1, "LBAFU");
    // With 8 formats bits 6:5 are reserved and ignored.
    let few = IdentifyNamespace::parse(&ns_page(8, 0x61, 0, 0, &[9; 8])).unwrap();
    assert_eq!(few.lba_format_index(), 1);
}

#[test]
fn format_nvm_keeps_the_current_format_and_sets_ses() {
    let ns = IdentifyNamespace::parse(&ns_page(1 << 20, 0x13, 0x0A, 0, &[9, 9, 9, 12])).unwrap();
    let cmd = format_nvm(7, &ns, SecureErase::Cryptographic, 3_600_000);
    assert_eq!(cmd.opcode, 0x80);
    assert_eq!(cmd.nsid, 7);
    assert_eq!(cmd.data_len, 0);
    assert_eq!(cmd.timeout_ms, 3_600_000);
    // LBAF 3, MSET 1, PI 2 (dps 0x0A: type 2, first), PIL 1, SES 2.
    assert_eq!(
        cmd.cdw10,
        3 | (1 << 4) | (2 << 5) | (1 << 8) | (2 << 9),
        "{:#x}",
        cmd.cdw10
    );
    let plain = IdentifyNamespace::parse(&ns_page(8, 0, 0, 0, &[9])).unwrap();
    assert_eq!(
        format_nvm(1, &plain, SecureErase::UserData, 0).cdw10,
        1 << 9
    );
}

#[test]
fn identify_and_log_page_commands() {
    let c = identify_controller();
    assert_eq!((c.opcode, c.nsid, c.cdw10, c.data_len), (0x06, 0, 1, 4096));
    let n = identify_namespace(3);
    assert_eq!((n.opcode, n.nsid, n.cdw10, n.data_len), (0x06, 3, 0, 4096));
    let l = get_log_page(LID_SANITIZE_STATUS, NSID_ALL, SANITIZE_LOG_LEN);
    assert_eq!(l.opcode, 0x02);
    assert_eq!(l.nsid, 0xFFFF_FFFF);
    // 512 bytes = 128 dwords, zero-based 127 in NUMDL.
    assert_eq!(l.cdw10, 0x81 | (127 << 16));
    assert_eq!(l.cdw11, 0);
    assert_eq!(l.data_len, 512);
    // A log of 2^18 + 4 bytes needs NUMDU.
    let big = get_log_page(0x02, 0, (1 << 18) + 4);
    assert_eq!(big.cdw10 >> 16, 0);
    assert_eq!(big.cdw11, 1);
}

#[test]
fn sanitize_commands() {
    let s = sanitize(SanitizeAction::BlockErase);
    assert_eq!((s.opcode, s.nsid, s.cdw10, s.data_len), (0x84, 0, 2, 0));
    assert_eq!(sanitize(SanitizeAction::CryptoErase).cdw10, 4);
}

#[test]
fn sanitize_status_log() {
    let mut b = vec![0u8; SANITIZE_LOG_LEN];
    b[0..2].copy_from_slice(&0x8000u16.to_le_bytes());
    b[2..4].copy_from_slice(&0x0002u16.to_le_bytes());
    let s = SanitizeStatus::parse(&b).unwrap();
    assert_eq!(s.state, SanitizeState::InProgress);
    assert!((s.percent() - 50.0).abs() < 1e-9);
    b[2..4].copy_from_slice(&0x0101u16.to_le_bytes());
    let done = SanitizeStatus::parse(&b).unwrap();
    assert_eq!(done.state, SanitizeState::Completed);
    assert!(done.global_data_erased);
    for (v, want) in [
        (0, SanitizeState::NeverSanitized),
        (3, SanitizeState::Failed),
        (4, SanitizeState::CompletedNoDeallocate),
        (6, SanitizeState::Reserved(6)),
    ] {
        b[2..4].copy_from_slice(&(v as u16).to_le_bytes());
        assert_eq!(SanitizeStatus::parse(&b).unwrap().state, want);
    }
}

#[test]
fn status_codes_are_named() {
    assert_eq!(
        describe_status(0x4002),
        "Invalid Field in Command (status 0x4002, DNR)"
    );
    assert_eq!(describe_status(0x010A), "Invalid Format (status 0x010a)");
    assert_eq!(describe_status(0x0277), "status 0x0277 (SCT 2, SC 0x77)");
}
