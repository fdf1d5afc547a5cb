//! Hostile and broken initiators against our target: malformed, truncated and oversized PDUs,
//! opcodes in the wrong phase, bad digests, disconnects mid-command. The target must answer
//! with the right reject/status or close, never panic, and keep serving others.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use common::{pattern, start, INITIATOR, IQN};
use ferrite_iscsi::io::read_pdu;
use ferrite_iscsi::pdu::{Bhs, DataOut, Framing, Login, Nop, Pdu, ScsiCmd, BHS_LEN};
use ferrite_iscsi::text::Pairs;
use ferrite_iscsi::{Initiator, LoginOptions};

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn send(s: &mut TcpStream, p: &Pdu, f: &Framing) {
    let mut b = BytesMut::new();
    p.encode(f, &mut b).unwrap();
    s.write_all(&b).unwrap();
}

fn recv(s: &mut TcpStream, f: &Framing) -> Pdu {
    read_pdu(s, f).expect("a PDU").expect("a parseable PDU")
}

/// Asserts the target closed the connection (EOF), not merely went quiet.
fn assert_closed(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("expected the target to close, got more data"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected EOF, got {e}"),
    }
}

fn login_req(keys: &Pairs) -> Pdu {
    let l = Login {
        transit: true,
        csg: 1,
        nsg: 3,
        isid: [0x80, 0, 0, 0, 0, 1],
        itt: 1,
        sn: 1,
        ..Default::default()
    };
    Pdu::with_data(Bhs::LoginReq(l), keys.encode()).immediate()
}

fn login_keys(digest: &str) -> Pairs {
    let mut k = Pairs::new();
    k.push("InitiatorName", INITIATOR);
    k.push("TargetName", IQN);
    k.push("SessionType", "Normal");
    k.push("HeaderDigest", digest);
    k.push("MaxRecvDataSegmentLength", "65536");
    k
}

/// Logs in with raw PDUs; returns the socket in the full feature phase.
fn raw_login(addr: std::net::SocketAddr, digest: &str) -> TcpStream {
    let mut s = connect(addr);
    send(&mut s, &login_req(&login_keys(digest)), &Framing::default());
    let p = recv(&mut s, &Framing::default());
    let Bhs::LoginResp(r) = p.bhs else {
        panic!("expected a login response, got {:?}", p.bhs)
    };
    assert_eq!((r.status_class, r.status_detail), (0, 0));
    assert!(r.transit && r.nsg == 3 && r.tsih != 0);
    s
}

fn login_status(p: &Pdu) -> (u8, u8) {
    match p.bhs {
        Bhs::LoginResp(r) => (r.status_class, r.status_detail),
        ref other => panic!("expected a login response, got {other:?}"),
    }
}

fn target_still_serves(addr: std::net::SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut s = Initiator::connect(addr, &LoginOptions::new(INITIATOR, IQN))
            .await
            .unwrap();
        s.test_unit_ready().await.unwrap();
        s.logout().await.unwrap();
    });
}

#[test]
fn wrong_opcodes_during_login_are_refused() {
    let t = start(1 << 20, |_| {});
    // A SCSI command before login.
    let mut s = connect(t.addr);
    let cmd = ScsiCmd {
        final_: true,
        itt: 5,
        cdb: [0u8; 16],
        ..Default::default()
    };
    send(&mut s, &Pdu::new(Bhs::ScsiCmd(cmd)), &Framing::default());
    assert_eq!(login_status(&recv(&mut s, &Framing::default())), (2, 0x0b));
    assert_closed(&mut s);
    // An opcode that does not exist.
    let mut s = connect(t.addr);
    let mut bhs = [0u8; BHS_LEN];
    bhs[0] = 0x1c;
    s.write_all(&bhs).unwrap();
    assert_eq!(login_status(&recv(&mut s, &Framing::default())), (2, 0x0b));
    assert_closed(&mut s);
    target_still_serves(t.addr);
}

#[test]
fn malformed_login_text_and_missing_keys() {
    let t = start(1 << 20, |_| {});
    for (data, want) in [
        (b"InitiatorName\0".to_vec(), (2u8, 0u8)),
        (b"\xff\xfe=1\0".to_vec(), (2, 0)),
        (
            b"TargetName=iqn.2026-01.org.ferrite:test\0".to_vec(),
            (2, 7),
        ),
        (
            b"InitiatorName=iqn.x:y\0SessionType=Bogus\0".to_vec(),
            (2, 9),
        ),
    ] {
        let mut s = connect(t.addr);
        let l = Login {
            transit: true,
            csg: 1,
            nsg: 3,
            itt: 1,
            ..Default::default()
        };
        send(
            &mut s,
            &Pdu::with_data(Bhs::LoginReq(l), data).immediate(),
            &Framing::default(),
        );
        assert_eq!(login_status(&recv(&mut s, &Framing::default())), want);
        assert_closed(&mut s);
    }
    // Version-min above what we speak.
    let mut s = connect(t.addr);
    let l = Login {
        transit: true,
        csg: 1,
        nsg: 3,
        itt: 1,
        version: 3,
        version_max: 3,
        ..Default::default()
    };
    send(
        &mut s,
        &Pdu::with_data(Bhs::LoginReq(l), login_keys("None").encode()).immediate(),
        &Framing::default(),
    );
    assert_eq!(login_status(&recv(&mut s, &Framing::default())), (2, 5));
    target_still_serves(t.addr);
}

#[test]
fn oversized_and_truncated_pdus_close_the_connection() {
    let t = start(1 << 20, |_| {});
    // A login PDU announcing 1 MiB of data (login allows 8 KiB).
    let mut s = connect(t.addr);
    let mut bhs = login_req(&login_keys("None")).header().unwrap();
    bhs[5..8].copy_from_slice(&[0x10, 0, 0]);
    s.write_all(&bhs).unwrap();
    assert_eq!(login_status(&recv(&mut s, &Framing::default())), (2, 0));
    assert_closed(&mut s);
    // In the full feature phase: a data segment above our MaxRecvDataSegmentLength.
    let mut s = raw_login(t.addr, "None");
    let cmd = ScsiCmd {
        final_: true,
        write: true,
        itt: 9,
        cmd_sn: 1,
        edtl: 512,
        cdb: [0u8; 16],
        ..Default::default()
    };
    let mut h = Pdu::new(Bhs::ScsiCmd(cmd)).header().unwrap();
    h[5..8].copy_from_slice(&[0x7f, 0xff, 0xff]);
    s.write_all(&h).unwrap();
    let p = recv(&mut s, &Framing::default());
    assert!(matches!(p.bhs, Bhs::Reject(r) if r.reason == 0x09), "{p:?}");
    assert_closed(&mut s);
    // Truncated PDUs, then hang up.
    for cut in [1usize, 20, 47, 60] {
        let mut s = connect(t.addr);
        let mut b = BytesMut::new();
        login_req(&login_keys("None"))
            .encode(&Framing::default(), &mut b)
            .unwrap();
        s.write_all(&b[..cut.min(b.len())]).unwrap();
        drop(s);
    }
    target_still_serves(t.addr);
}

#[test]
fn wrong_and_unknown_opcodes_in_full_feature_phase_are_rejected() {
    let t = start(1 << 20, |_| {});
    let f = Framing {
        max_recv_data: 1 << 20,
        ..Framing::default()
    };
    let mut s = raw_login(t.addr, "None");
    // A target-only opcode (NOP-In) sent by the initiator: protocol error.
    let nop = Nop {
        itt: 3,
        ttt: 0xffff_ffff,
        ..Default::default()
    };
    send(&mut s, &Pdu::new(Bhs::NopIn(nop)), &f);
    let p = recv(&mut s, &f);
    assert!(matches!(p.bhs, Bhs::Reject(r) if r.reason == 0x04), "{p:?}");
    assert_eq!(
        p.data.len(),
        BHS_LEN,
        "a reject carries the offending header"
    );
    // An undefined opcode: command not supported, connection stays up.
    let mut bhs = [0u8; BHS_LEN];
    bhs[0] = 0x1c;
    s.write_all(&bhs).unwrap();
    let p = recv(&mut s, &f);
    assert!(matches!(p.bhs, Bhs::Reject(r) if r.reason == 0x05), "{p:?}");
    assert_eq!(p.data[0] & 0x3f, 0x1c);
    // Still alive: a ping is answered.
    let ping = Nop {
        itt: 4,
        ttt: 0xffff_ffff,
        sn: 1,
        ..Default::default()
    };
    send(
        &mut s,
        &Pdu::with_data(Bhs::NopOut(ping), b"ok".to_vec()).immediate(),
        &f,
    );
    let p = recv(&mut s, &f);
    assert!(matches!(p.bhs, Bhs::NopIn(n) if n.itt == 4), "{p:?}");
    assert_eq!(&p.data[..], b"ok");
}

#[test]
fn bad_header_digest_closes_the_connection() {
    let t = start(1 << 20, |_| {});
    let mut s = raw_login(t.addr, "CRC32C");
    let f = Framing {
        header_digest: true,
        max_recv_data: 1 << 20,
        ..Framing::default()
    };
    let ping = Nop {
        itt: 4,
        ttt: 0xffff_ffff,
        sn: 1,
        ..Default::default()
    };
    let mut b = BytesMut::new();
    Pdu::new(Bhs::NopOut(ping))
        .immediate()
        .encode(&f, &mut b)
        .unwrap();
    // A correct digest gets an answer…
    s.write_all(&b).unwrap();
    assert!(matches!(recv(&mut s, &f).bhs, Bhs::NopIn(_)));
    // …a corrupted one gets a reject and a hang-up.
    b[BHS_LEN] ^= 0xff;
    s.write_all(&b).unwrap();
    let p = recv(&mut s, &f);
    assert!(matches!(p.bhs, Bhs::Reject(r) if r.reason == 0x09), "{p:?}");
    assert_closed(&mut s);
}

#[test]
fn disconnect_mid_command_leaves_the_target_serving_and_the_lun_untouched() {
    let t = start(1 << 20, |_| {});
    let f = Framing {
        max_recv_data: 1 << 20,
        ..Framing::default()
    };
    let mut s = raw_login(t.addr, "None");
    let mut cdb = [0u8; 16];
    cdb[0] = 0x2a; // WRITE(10) of 64 blocks at LBA 8
    cdb[5] = 8;
    cdb[8] = 64;
    let cmd = ScsiCmd {
        final_: true,
        write: true,
        itt: 9,
        cmd_sn: 1,
        edtl: 64 * 512,
        cdb,
        ..Default::default()
    };
    send(&mut s, &Pdu::new(Bhs::ScsiCmd(cmd)), &f);
    let p = recv(&mut s, &f);
    let Bhs::R2t(r) = p.bhs else {
        panic!("expected an R2T, got {p:?}")
    };
    assert_eq!((r.offset, r.length), (0, 64 * 512));
    // Half the data with a Data-Out whose offset lies outside the R2T, then hang up.
    let d = DataOut {
        itt: 9,
        ttt: r.ttt,
        offset: 60 * 512,
        ..Default::default()
    };
    send(
        &mut s,
        &Pdu::with_data(Bhs::DataOut(d), pattern(8 * 512, 1)),
        &f,
    );
    drop(s);
    target_still_serves(t.addr);
    let file = std::fs::read(&t.backing).unwrap();
    assert_eq!(file.len(), 1 << 20);
    assert!(file.iter().all(|&b| b == 0), "nothing was written");
}

/// Sends WRITE(10) of 64 blocks at `lba` and answers its R2T with `pieces` (offset, seed,
/// blocks) as Data-Outs in that order, the last one final; returns the SCSI status.
fn write_in_pieces(
    s: &mut TcpStream,
    f: &Framing,
    sn: u32,
    lba: u8,
    pieces: &[(u32, u8, usize)],
) -> u8 {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x2a;
    cdb[5] = lba;
    cdb[8] = 64;
    let itt = 100 + sn;
    let cmd = ScsiCmd {
        final_: true,
        write: true,
        itt,
        cmd_sn: sn,
        edtl: 64 * 512,
        cdb,
        ..Default::default()
    };
    send(s, &Pdu::new(Bhs::ScsiCmd(cmd)), f);
    let p = recv(s, f);
    let Bhs::R2t(r) = p.bhs else {
        panic!("expected an R2T, got {p:?}")
    };
    for (i, &(offset, seed, blocks)) in pieces.iter().enumerate() {
        let d = DataOut {
            final_: i + 1 == pieces.len(),
            itt,
            ttt: r.ttt,
            data_sn: i as u32,
            offset,
            ..Default::default()
        };
        send(
            s,
            &Pdu::with_data(Bhs::DataOut(d), pattern(blocks * 512, seed)),
            f,
        );
    }
    match recv(s, f).bhs {
        Bhs::ScsiResp(r) if r.itt == itt => r.status,
        other => panic!("expected the SCSI response, got {other:?}"),
    }
}

#[test]
fn data_outs_that_add_up_but_leave_a_gap_fail_the_write() {
    // DataPDUInOrder=Yes: each Data-Out must continue where the previous one ended. Two
    // halves at the same offset add up to the R2T's length yet leave its second half
    // unwritten; the target must not write stale buffer bytes there.
    let t = start(1 << 20, |_| {});
    let f = Framing {
        max_recv_data: 1 << 20,
        ..Framing::default()
    };
    let mut s = raw_login(t.addr, "None");
    let good = write_in_pieces(&mut s, &f, 1, 8, &[(0, 1, 32), (32 * 512, 2, 32)]);
    assert_eq!(good, 0, "a write in order succeeds");
    let bad = write_in_pieces(&mut s, &f, 2, 100, &[(0, 3, 32), (0, 4, 32)]);
    assert_eq!(bad, 0x02, "CHECK CONDITION for the overlapping Data-Outs");
    let skipped = write_in_pieces(&mut s, &f, 3, 180, &[(32 * 512, 5, 32), (0, 6, 32)]);
    assert_eq!(skipped, 0x02, "CHECK CONDITION for Data-Outs out of order");
    drop(s);
    target_still_serves(t.addr);
    let file = std::fs::read(&t.backing).unwrap();
    let mut want = pattern(32 * 512, 1);
    want.extend(pattern(32 * 512, 2));
    assert!(file[8 * 512..72 * 512] == want[..], "the good write landed");
    assert!(
        file[..8 * 512]
            .iter()
            .chain(&file[72 * 512..])
            .all(|&b| b == 0),
        "the failed writes wrote nothing"
    );
}
