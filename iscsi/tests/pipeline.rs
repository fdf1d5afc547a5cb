//! Tagged writes in flight on one connection, against our target and tgtd: many writes then
//! read back; a CHECK CONDITION reaches the one write it belongs to; a dropped connection
//! fails every outstanding write; a Reject reaches its own task; the CmdSN window is
//! respected when the target keeps it small; a target that stops answering times out.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::proxy::Proxy;
use common::tgtd::{Tgtd, ONE_AT_A_TIME, TGT_IQN};
use common::{pattern, start, INITIATOR, IQN};
use ferrite_iscsi::scsi::Sense;
use ferrite_iscsi::{Initiator, InitiatorError, LoginOptions};

const MIB: usize = 1 << 20;

/// Everything here finishes in seconds; a hang (a lost response, a shut window) fails.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 60 s"))
}

/// Submits `count` writes of `size` bytes, keeping up to `depth` in flight, and checks that
/// each completes; returns the data and the most writes that were outstanding together.
async fn write_many(
    s: &mut Initiator,
    count: usize,
    size: usize,
    depth: usize,
) -> (Vec<Vec<u8>>, usize) {
    let bs = s.block_size() as usize;
    let mut datas = Vec::new();
    let mut tags = HashMap::new();
    let mut most = 0;
    for i in 0..count {
        while s.in_flight() >= depth {
            let c = s.next_completion().await.expect("a write is outstanding");
            c.result
                .unwrap_or_else(|e| panic!("write {} failed: {e}", tags[&c.tag]));
        }
        let data = pattern(size, i as u8 + 1);
        let tag = s
            .submit_write((i * size / bs) as u64, Bytes::from(data.clone()))
            .await
            .unwrap();
        tags.insert(tag, i);
        datas.push(data);
        most = most.max(s.in_flight());
    }
    let mut finished = 0;
    while let Some(c) = s.next_completion().await {
        c.result
            .unwrap_or_else(|e| panic!("write {} failed: {e}", tags[&c.tag]));
        finished += 1;
    }
    assert!(finished >= 1, "{finished} completions at the end");
    assert_eq!(s.in_flight(), 0);
    (datas, most)
}

async fn read_back(s: &mut Initiator, datas: &[Vec<u8>]) {
    let bs = s.block_size() as usize;
    for (i, d) in datas.iter().enumerate() {
        let got = s
            .read((i * d.len() / bs) as u64, (d.len() / bs) as u32)
            .await
            .unwrap();
        assert!(got == *d, "write {i} did not read back");
    }
}

/// A write past the end of the LUN among good ones: only that one fails, with the sense
/// the target gave; the others land.
async fn check_condition_reaches_its_write(s: &mut Initiator) {
    let blocks = s.blocks();
    let mut cdb = [0u8; 16];
    cdb[0] = 0x8a;
    cdb[2..10].copy_from_slice(&(blocks - 1).to_be_bytes());
    cdb[10..14].copy_from_slice(&2u32.to_be_bytes());
    let a = s
        .submit_write(0, Bytes::from(pattern(MIB, 21)))
        .await
        .unwrap();
    let b = s
        .submit_write(2048, Bytes::from(pattern(MIB, 22)))
        .await
        .unwrap();
    let bad = s.submit(cdb, Bytes::from(vec![0xee; 1024])).await.unwrap();
    let c = s
        .submit_write(4096, Bytes::from(pattern(MIB, 23)))
        .await
        .unwrap();
    let mut results = HashMap::new();
    while let Some(done) = s.next_completion().await {
        results.insert(done.tag, done.result);
    }
    assert_eq!(results.len(), 4);
    for t in [a, b, c] {
        assert!(results[&t].is_ok(), "write {t}: {:?}", results[&t]);
    }
    match &results[&bad] {
        Err(InitiatorError::CheckCondition {
            opcode: 0x8a,
            sense,
        }) => {
            assert_eq!(*sense, Sense::LBA_OUT_OF_RANGE)
        }
        other => panic!("the write past the end got {other:?}"),
    }
    for (lba, seed) in [(0, 21), (2048, 22), (4096, 23)] {
        assert_eq!(s.read(lba, 2048).await.unwrap(), pattern(MIB, seed));
    }
    // The client-side checks refuse such a write before it is sent.
    assert!(matches!(
        s.submit_write(blocks, Bytes::from(vec![0u8; 512])).await,
        Err(InitiatorError::OutOfRange { .. })
    ));
    assert!(matches!(
        s.submit_write(0, Bytes::from(vec![0u8; 100])).await,
        Err(InitiatorError::Unaligned { .. })
    ));
    assert_eq!(s.in_flight(), 0);
}

/// Writes outstanding when the connection drops all fail with the session failure, and so
/// does anything after.
async fn dropped_connection_fails_all(addr: std::net::SocketAddr, opts: &LoginOptions, lun: u8) {
    let mut proxy = Proxy::start(addr).await;
    let mut s = Initiator::connect_lun(proxy.addr, opts, lun).await.unwrap();
    proxy.hold_replies();
    let mut tags = Vec::new();
    for i in 0..4u64 {
        tags.push(
            s.submit_write(i * 2048, Bytes::from(pattern(MIB, 30)))
                .await
                .unwrap(),
        );
    }
    assert_eq!(s.in_flight(), 4);
    proxy.cut().await;
    let mut failed = Vec::new();
    while let Some(c) = s.next_completion().await {
        match c.result {
            Err(InitiatorError::SessionFailed { .. }) => failed.push(c.tag),
            other => panic!("write {} after the cut: {other:?}", c.tag),
        }
    }
    failed.sort();
    assert_eq!(failed, tags);
    let e = s
        .submit_write(0, Bytes::from(vec![0u8; 512]))
        .await
        .unwrap_err();
    assert!(matches!(e, InitiatorError::SessionFailed { .. }), "{e}");
    let e = s.read(0, 1).await.unwrap_err();
    let msg = format!("{:#}", anyhow::Error::new(e));
    assert!(msg.contains("session failed"), "{msg}");
}

#[tokio::test]
async fn many_writes_in_flight_against_our_target() {
    let t = start(64 << 20, |_| {});
    let mut s = Initiator::connect(t.addr, &LoginOptions::new(INITIATOR, IQN))
        .await
        .unwrap();
    let (datas, most) = bounded("writes", write_many(&mut s, 12, 4 * MIB, 4)).await;
    assert_eq!(most, 4, "writes outstanding together");
    // One-at-a-time calls still work beside tagged commands in flight.
    let tag = s
        .submit_write(100_000, Bytes::from(pattern(MIB, 99)))
        .await
        .unwrap();
    s.sync().await.unwrap();
    assert_eq!(s.read(100_000, 2048).await.unwrap(), pattern(MIB, 99));
    let c = s.next_completion().await.unwrap();
    assert_eq!(c.tag, tag);
    c.result.unwrap();
    read_back(&mut s, &datas).await;
    s.logout().await.unwrap();
    let file = std::fs::read(&t.backing).unwrap();
    assert!(
        file[..4 * MIB] == datas[0][..],
        "the backing file holds the first write"
    );
}

#[tokio::test]
async fn a_small_command_window_is_respected() {
    // The target ignores commands beyond MaxCmdSN: a violation would hang and time out.
    let t = start(16 << 20, |c| c.cmd_window = 1);
    let mut s = Initiator::connect(t.addr, &LoginOptions::new(INITIATOR, IQN))
        .await
        .unwrap();
    let (datas, most) = bounded("writes", write_many(&mut s, 16, 512 * 1024, 8)).await;
    // One accepted by the target (holding for its data) and the next in its window.
    assert!(most <= 2, "{most} writes outstanding with a window of 1");
    read_back(&mut s, &datas).await;
    s.logout().await.unwrap();
}

#[tokio::test]
async fn check_condition_on_one_of_several_writes_with_our_target() {
    let t = start(8 << 20, |_| {});
    let mut s = Initiator::connect(t.addr, &LoginOptions::new(INITIATOR, IQN))
        .await
        .unwrap();
    bounded("writes", check_condition_reaches_its_write(&mut s)).await;
    s.logout().await.unwrap();
}

#[tokio::test]
async fn a_silent_target_times_out_instead_of_hanging() {
    let t = start(8 << 20, |_| {});
    let mut proxy = Proxy::start(t.addr).await;
    let opts = LoginOptions {
        response_timeout: Duration::from_millis(500),
        ..LoginOptions::new(INITIATOR, IQN)
    };
    let mut s = Initiator::connect(proxy.addr, &opts).await.unwrap();
    // Outstanding tagged writes and a one-at-a-time write both give up with the cause.
    let tag = s
        .submit_write(0, Bytes::from(pattern(MIB, 5)))
        .await
        .unwrap();
    proxy.hold_replies();
    let started = std::time::Instant::now();
    let e = bounded("the silent write", s.write(4096, &pattern(MIB, 6)))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let msg = format!("{:#}", anyhow::Error::new(e));
    assert!(msg.contains("sent nothing for 500ms"), "{msg}");
    let c = bounded("the completion", s.next_completion())
        .await
        .expect("the tagged write completes");
    assert_eq!(c.tag, tag);
    let msg = format!("{:#}", anyhow::Error::new(c.result.unwrap_err()));
    assert!(msg.contains("sent nothing"), "{msg}");
    proxy.cut().await;
}

#[tokio::test]
async fn dropped_connection_fails_outstanding_writes_with_our_target() {
    let t = start(8 << 20, |_| {});
    let opts = LoginOptions::new(INITIATOR, IQN);
    bounded("drop", dropped_connection_fails_all(t.addr, &opts, 0)).await;
}

#[tokio::test]
async fn tagged_writes_against_tgtd() {
    let _one = ONE_AT_A_TIME.lock().await;
    let t = Tgtd::start(None);
    let opts = LoginOptions::new(INITIATOR, TGT_IQN);
    let mut s = Initiator::connect_lun(t.addr, &opts, 1).await.unwrap();
    let (datas, most) = bounded("writes", write_many(&mut s, 7, 4 * MIB, 4)).await;
    assert_eq!(most, 4, "writes outstanding together");
    s.sync().await.unwrap();
    read_back(&mut s, &datas).await;
    bounded("check condition", check_condition_reaches_its_write(&mut s)).await;
    s.logout().await.unwrap();
    bounded("drop", dropped_connection_fails_all(t.addr, &opts, 1)).await;
}

#[tokio::test]
async fn a_reject_reaches_the_task_it_belongs_to() {
    // SCSI commands in a discovery session are rejected (reason 0x04) with their header.
    let t = start(1 << 20, |_| {});
    let opts = LoginOptions {
        target_name: None,
        ..LoginOptions::new(INITIATOR, "")
    };
    let mut s = Initiator::connect(t.addr, &opts).await.unwrap();
    let mut write = [0u8; 16];
    write[0] = 0x8a;
    write[13] = 1;
    let a = s.submit([0u8; 16], Bytes::new()).await.unwrap();
    let b = s.submit(write, Bytes::from(vec![7u8; 512])).await.unwrap();
    let c = s.submit([0u8; 16], Bytes::new()).await.unwrap();
    let mut rejected = Vec::new();
    while let Some(done) = bounded("rejects", s.next_completion()).await {
        match done.result {
            Err(InitiatorError::Rejected(0x04)) => rejected.push(done.tag),
            other => panic!("command {} got {other:?}", done.tag),
        }
    }
    rejected.sort();
    assert_eq!(rejected, vec![a, b, c]);
    // The session is still sound after its tasks were rejected.
    assert_eq!(s.ping(b"still here").await.unwrap(), b"still here");
    s.logout().await.unwrap();
    assert!(std::fs::read(&t.backing).unwrap().iter().all(|&b| b == 0));
}
