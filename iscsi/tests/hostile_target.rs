//! The initiator against a target that lies: a scripted reply stream on a real loopback
//! socket. Whatever the target sends, the initiator returns an error that says what was
//! wrong; it never panics (the release profile aborts on panic, which would take the
//! conductor down for every node).

use ferrite_iscsi::fuzzing::{data_in_with_status, encode, login_replies, scripted_target};
use ferrite_iscsi::{Initiator, LoginOptions};

/// READ CAPACITY(16) parameter data: last LBA, block length, and the provisioning byte.
fn capacity(last_lba: u64, block_size: u32, len: usize) -> Vec<u8> {
    let mut d = vec![0u8; 32];
    d[0..8].copy_from_slice(&last_lba.to_be_bytes());
    d[8..12].copy_from_slice(&block_size.to_be_bytes());
    d[14] = 0xc0;
    d.truncate(len);
    d
}

/// Logs in against a target that answers READ CAPACITY(16) (ITT 2) with `cap`.
async fn connect_with_capacity(cap: &[u8]) -> Result<Initiator, String> {
    let mut pdus = login_replies();
    pdus.push(data_in_with_status(2, 1, cap));
    let (addr, target) = scripted_target(encode(&pdus));
    let opts = LoginOptions::new("iqn.2026-01.test:i", "iqn.2026-01.test:t");
    let r = Initiator::connect(addr, &opts).await.map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg += &format!(": {s}");
            src = s.source();
        }
        msg
    });
    if r.is_err() {
        target.join().expect("scripted target");
    }
    r
}

#[tokio::test]
async fn short_read_capacity_data_is_refused_or_read_within_bounds() {
    // 12 bytes: block count and size present, provisioning byte absent (this used to
    // index byte 14 and panic).
    let s = connect_with_capacity(&capacity(2047, 512, 12))
        .await
        .expect("12 bytes are enough");
    assert_eq!(
        (s.blocks(), s.block_size(), s.unmap_zeroes()),
        (2048, 512, false)
    );
    for len in [0, 1, 8, 11] {
        let e = connect_with_capacity(&capacity(2047, 512, len))
            .await
            .expect_err("too short");
        assert!(e.contains("at least 12 are needed"), "{len} bytes: {e}");
        assert!(e.contains(&format!("returned {len} bytes")), "{e}");
    }
    let s = connect_with_capacity(&capacity(2047, 4096, 32))
        .await
        .unwrap();
    assert_eq!(
        (s.blocks(), s.block_size(), s.unmap_zeroes()),
        (2048, 4096, true)
    );
}

#[tokio::test]
async fn absurd_block_sizes_and_capacities_are_refused() {
    for bs in [0, 1, 511, 520, 3000, 128 * 1024, u32::MAX] {
        let e = connect_with_capacity(&capacity(100, bs, 32))
            .await
            .expect_err("bad block size");
        assert!(e.contains(&format!("block size of {bs} bytes")), "{e}");
    }
    for last in [u64::MAX, u64::MAX / 512] {
        let e = connect_with_capacity(&capacity(last, 512, 32))
            .await
            .expect_err("capacity beyond 2^64 bytes");
        assert!(e.contains("more than 2^64 bytes"), "{e}");
    }
}
