//! Our initiator against our target over loopback: data path, CHAP, discovery, sessions.

mod common;

use common::{pattern, start, INITIATOR, IQN};
use ferrite_iscsi::scsi::Sense;
use ferrite_iscsi::{Credentials, Initiator, InitiatorError, LoginOptions};

fn opts() -> LoginOptions {
    LoginOptions::new(INITIATOR, IQN)
}

fn cred(u: &str, s: &str) -> Credentials {
    Credentials {
        user: u.into(),
        secret: s.into(),
    }
}

#[tokio::test]
async fn write_read_unmap_sync_logout() {
    let t = start(64 << 20, |_| {});
    let mut s = Initiator::connect(t.addr, &opts()).await.unwrap();
    assert_eq!(s.block_size(), 512);
    assert_eq!(s.blocks(), (64 << 20) / 512);
    // 3 MiB crosses several bursts and R2Ts; also a single block at the very end.
    let data = pattern(3 << 20, 7);
    s.write(100, &data).await.unwrap();
    assert_eq!(s.read(100, (data.len() / 512) as u32).await.unwrap(), data);
    let last = s.blocks() - 1;
    s.write(last, &pattern(512, 9)).await.unwrap();
    assert_eq!(s.read(last, 1).await.unwrap(), pattern(512, 9));
    s.unmap(100, 2048).await.unwrap();
    let back = s.read(100, 4096).await.unwrap();
    assert!(
        back[..2048 * 512].iter().all(|&b| b == 0),
        "unmapped blocks read as zeros"
    );
    assert_eq!(&back[2048 * 512..], &data[2048 * 512..4096 * 512]);
    s.sync().await.unwrap();
    assert_eq!(s.ping(b"hello").await.unwrap(), b"hello");
    s.test_unit_ready().await.unwrap();
    s.logout().await.unwrap();
    // The data is in the file at the right offset.
    let file = std::fs::read(&t.backing).unwrap();
    assert_eq!(
        &file[(100 + 2048) * 512..(100 + 4096) * 512],
        &data[2048 * 512..4096 * 512]
    );
}

#[tokio::test]
async fn out_of_range_lbas_are_refused_and_nothing_is_written_outside() {
    let t = start(1 << 20, |_| {});
    let mut s = Initiator::connect(t.addr, &opts()).await.unwrap();
    let blocks = s.blocks();
    // Client-side check.
    assert!(matches!(
        s.write(blocks, &[0u8; 512]).await,
        Err(InitiatorError::OutOfRange { .. })
    ));
    // Raw CDBs past the end reach the target, which answers LBA OUT OF RANGE.
    let mut cdb = [0u8; 16];
    cdb[0] = 0x8a;
    cdb[2..10].copy_from_slice(&(blocks - 1).to_be_bytes());
    cdb[10..14].copy_from_slice(&2u32.to_be_bytes());
    let e = s.command(cdb, 0, Some(&[0xee; 1024])).await.unwrap_err();
    assert!(
        matches!(e, InitiatorError::CheckCondition { sense, .. } if sense == Sense::LBA_OUT_OF_RANGE),
        "{e}"
    );
    cdb[0] = 0x88;
    cdb[2..10].copy_from_slice(&u64::MAX.to_be_bytes());
    let e = s.command(cdb, 1024, None).await.unwrap_err();
    assert!(
        matches!(e, InitiatorError::CheckCondition { sense, .. } if sense == Sense::LBA_OUT_OF_RANGE),
        "{e}"
    );
    let mut unmap = [0u8; 16];
    unmap[0] = 0x42;
    unmap[8] = 24;
    let mut p = vec![0u8; 24];
    p[1] = 22;
    p[3] = 16;
    p[8..16].copy_from_slice(&(blocks - 1).to_be_bytes());
    p[16..20].copy_from_slice(&5u32.to_be_bytes());
    let e = s.command(unmap, 0, Some(&p)).await.unwrap_err();
    assert!(
        matches!(e, InitiatorError::CheckCondition { sense, .. } if sense == Sense::LBA_OUT_OF_RANGE),
        "{e}"
    );
    // Unknown opcode.
    let mut bad = [0u8; 16];
    bad[0] = 0xd7;
    let e = s.command(bad, 0, None).await.unwrap_err();
    assert!(
        matches!(e, InitiatorError::CheckCondition { sense, .. } if sense == Sense::INVALID_OPCODE),
        "{e}"
    );
    s.logout().await.unwrap();
    assert_eq!(std::fs::metadata(&t.backing).unwrap().len(), 1 << 20);
    assert!(std::fs::read(&t.backing).unwrap().iter().all(|&b| b == 0));
}

#[tokio::test]
async fn chap_one_way_and_mutual() {
    let t = start(1 << 20, |c| {
        c.chap = Some(cred("alice", "secret-secret"));
        c.mutual_chap = Some(cred("target", "target-secret"));
    });
    // Good credentials.
    let mut o = opts();
    o.chap = Some(cred("alice", "secret-secret"));
    let mut s = Initiator::connect(t.addr, &o).await.unwrap();
    s.write(0, &pattern(4096, 1)).await.unwrap();
    s.logout().await.unwrap();
    // Mutual: the target proves itself.
    o.mutual_chap = Some(cred("target", "target-secret"));
    let s = Initiator::connect(t.addr, &o).await.unwrap();
    s.logout().await.unwrap();
    // Mutual with the wrong expectation: we refuse the target.
    o.mutual_chap = Some(cred("target", "other-secret"));
    let e = Initiator::connect(t.addr, &o).await.unwrap_err();
    assert!(matches!(e, InitiatorError::MutualChapFailed), "{e}");
    // Bad secret, unknown user, no credentials at all: authentication failure 0x0201.
    for c in [
        Some(cred("alice", "wrong-secret!")),
        Some(cred("mallory", "secret-secret")),
    ] {
        let mut o = opts();
        o.chap = c;
        let e = Initiator::connect(t.addr, &o).await.unwrap_err();
        assert!(e.is_authentication_failure(), "{e}");
    }
    let e = Initiator::connect(t.addr, &opts()).await.unwrap_err();
    assert!(e.is_authentication_failure(), "{e}");
}

#[tokio::test]
async fn wrong_target_name_is_not_found() {
    let t = start(1 << 20, |_| {});
    let e = Initiator::connect(
        t.addr,
        &LoginOptions::new(INITIATOR, "iqn.2026-01.org.ferrite:nope"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            InitiatorError::LoginRejected {
                class: 2,
                detail: 3,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn discovery_lists_the_target() {
    let t = start(1 << 20, |_| {});
    let found = Initiator::discover(t.addr, INITIATOR).await.unwrap();
    assert_eq!(found, vec![(IQN.to_string(), format!("{},1", t.addr))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sessions_at_once() {
    let t = start(16 << 20, |_| {});
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let addr = t.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = Initiator::connect(addr, &opts()).await.unwrap();
            let data = pattern(1 << 20, i as u8);
            for round in 0..3 {
                s.write(i * 8192 + round * 2048, &data).await.unwrap();
                assert_eq!(s.read(i * 8192 + round * 2048, 2048).await.unwrap(), data);
            }
            s.logout().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
