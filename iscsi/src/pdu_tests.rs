use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// READ(10) of 8 blocks at LBA 0x1234, ITT 0x11, CmdSN 5, ExpStatSN 7, EDTL 4096, LUN 0.
const READ10: &str = "01 c1 00 00 00 000000 0000000000000000 00000011 00001000 00000005 00000007
                      28 00 00 00 12 34 00 00 08 00 00 00 00 00 00 00";

#[test]
fn scsi_command_fixture_round_trips() {
    let bytes = hex(READ10);
    let p = Pdu::decode(&bytes, &Framing::default()).unwrap();
    let Bhs::ScsiCmd(c) = p.bhs else {
        panic!("{p:?}")
    };
    assert!(c.final_ && c.read && !c.write);
    assert_eq!(
        (c.attr, c.itt, c.edtl, c.cmd_sn, c.exp_stat_sn),
        (1, 0x11, 4096, 5, 7)
    );
    assert_eq!(&c.cdb[..10], &[0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 8, 0]);
    let mut out = BytesMut::new();
    p.encode(&Framing::default(), &mut out).unwrap();
    assert_eq!(&out[..], &bytes[..]);
}

#[test]
fn login_request_fixture() {
    // Immediate login, T=1 CSG=1 NSG=3, ISID 80 00 00 00 00 01, ITT 1, CID 0, CmdSN 1, 8 data bytes.
    let bytes = hex(
        "43 87 00 00 00 000008 800000000001 0000 00000001 0000 0000 00000001 00000000
                     00000000 00000000 00000000 00000000
                     41 3d 42 00 43 3d 44 00",
    );
    let p = Pdu::decode(&bytes, &Framing::default()).unwrap();
    assert!(p.immediate);
    let Bhs::LoginReq(l) = p.bhs else {
        panic!("{p:?}")
    };
    assert!(l.transit && !l.cont);
    assert_eq!(
        (l.csg, l.nsg, l.isid, l.itt, l.sn),
        (1, 3, [0x80, 0, 0, 0, 0, 1], 1, 1)
    );
    assert_eq!(&p.data[..], b"A=B\0C=D\0");
    let mut out = BytesMut::new();
    p.encode(&Framing::default(), &mut out).unwrap();
    assert_eq!(&out[..], &bytes[..]);
}

#[test]
fn data_in_with_status_and_padding() {
    let d = DataIn {
        final_: true,
        has_status: true,
        underflow: true,
        status: 0,
        itt: 9,
        ttt: 0xffff_ffff,
        stat_sn: 3,
        exp_cmd_sn: 4,
        max_cmd_sn: 10,
        data_sn: 0,
        offset: 0,
        residual: 511,
        ..Default::default()
    };
    let p = Pdu::with_data(Bhs::DataIn(d), vec![0xaa]);
    let mut out = BytesMut::new();
    p.encode(&Framing::default(), &mut out).unwrap();
    assert_eq!(out.len(), 48 + 4, "one data byte padded to four");
    assert_eq!(out[0], 0x25);
    assert_eq!(out[1], 0x83);
    assert_eq!(&out[5..8], &[0, 0, 1]);
    assert_eq!(&out[44..48], &511u32.to_be_bytes());
    assert_eq!(&out[48..], &[0xaa, 0, 0, 0]);
    let back = Pdu::decode(
        &out,
        &Framing {
            max_recv_data: 1 << 20,
            ..Framing::default()
        },
    )
    .unwrap();
    assert_eq!(back, p);
}

#[test]
fn every_typed_header_round_trips() {
    let all = [
        Bhs::NopOut(Nop {
            lun: 1 << 48,
            itt: 1,
            ttt: 0xffff_ffff,
            sn: 2,
            exp_sn: 3,
            max_cmd_sn: 0,
        }),
        Bhs::NopIn(Nop {
            lun: 0,
            itt: 1,
            ttt: 5,
            sn: 2,
            exp_sn: 3,
            max_cmd_sn: 9,
        }),
        Bhs::ScsiResp(ScsiResp {
            overflow: true,
            status: 2,
            itt: 4,
            stat_sn: 5,
            exp_cmd_sn: 6,
            max_cmd_sn: 7,
            exp_data_sn: 1,
            residual: 12,
            ..Default::default()
        }),
        Bhs::TaskMgmt(TaskMgmt {
            function: 1,
            lun: 0,
            itt: 2,
            ref_itt: 3,
            cmd_sn: 4,
            exp_stat_sn: 5,
            ref_cmd_sn: 6,
        }),
        Bhs::TaskMgmtResp(TaskMgmtResp {
            response: 1,
            itt: 2,
            stat_sn: 3,
            exp_cmd_sn: 4,
            max_cmd_sn: 5,
        }),
        Bhs::LoginResp(Login {
            transit: true,
            csg: 1,
            nsg: 3,
            tsih: 7,
            itt: 1,
            sn: 2,
            exp_sn: 3,
            max_cmd_sn: 4,
            status_class: 2,
            status_detail: 1,
            ..Default::default()
        }),
        Bhs::TextReq(Text {
            final_: true,
            itt: 1,
            ttt: 0xffff_ffff,
            sn: 2,
            exp_sn: 3,
            ..Default::default()
        }),
        Bhs::TextResp(Text {
            final_: true,
            cont: true,
            itt: 1,
            ttt: 4,
            sn: 2,
            exp_sn: 3,
            max_cmd_sn: 4,
            lun: 0,
        }),
        Bhs::DataOut(DataOut {
            final_: true,
            lun: 0,
            itt: 1,
            ttt: 2,
            exp_stat_sn: 3,
            data_sn: 4,
            offset: 8192,
        }),
        Bhs::LogoutReq(Logout {
            reason: 0,
            itt: 1,
            cid: 0,
            cmd_sn: 2,
            exp_stat_sn: 3,
        }),
        Bhs::LogoutResp(LogoutResp {
            response: 0,
            itt: 1,
            stat_sn: 2,
            exp_cmd_sn: 3,
            max_cmd_sn: 4,
            time2wait: 2,
            time2retain: 20,
        }),
        Bhs::R2t(R2t {
            lun: 0,
            itt: 1,
            ttt: 2,
            stat_sn: 3,
            exp_cmd_sn: 4,
            max_cmd_sn: 5,
            r2t_sn: 6,
            offset: 7,
            length: 8,
        }),
        Bhs::Reject(Reject {
            reason: 9,
            stat_sn: 1,
            exp_cmd_sn: 2,
            max_cmd_sn: 3,
            data_sn: 0,
        }),
    ];
    for bhs in all {
        let p = Pdu::new(bhs);
        let mut out = BytesMut::new();
        p.encode(&Framing::default(), &mut out).unwrap();
        let back = Pdu::decode(&out, &Framing::default()).unwrap();
        assert_eq!(back.bhs, bhs, "{bhs:?}");
    }
}

#[test]
fn truncated_unknown_and_oversized_are_errors() {
    let f = Framing::default();
    let bytes = hex(READ10);
    for cut in [0, 1, 47] {
        assert!(matches!(
            Pdu::decode(&bytes[..cut], &f),
            Err(PduError::Truncated { .. })
        ));
    }
    let mut with_data = bytes.clone();
    with_data[7] = 8; // announces 8 data bytes that are not there
    assert_eq!(
        Pdu::decode(&with_data, &f),
        Err(PduError::Truncated { need: 56, have: 48 })
    );
    let mut unknown = bytes.clone();
    unknown[0] = 0x1c;
    assert_eq!(
        Pdu::decode(&unknown, &f),
        Err(PduError::UnknownOpcode(0x1c))
    );
    let mut big = bytes.clone();
    big[5] = 0x01; // 64 KiB > 8 KiB login limit
    assert_eq!(
        Pdu::decode(&big, &f),
        Err(PduError::DataTooLong {
            len: 65536,
            max: 8192
        })
    );
}

#[test]
fn digests_are_checked() {
    let f = Framing {
        header_digest: true,
        data_digest: true,
        max_recv_data: 8192,
    };
    let p = Pdu::with_data(
        Bhs::NopOut(Nop {
            itt: 1,
            ttt: 0xffff_ffff,
            ..Default::default()
        }),
        b"ping!".to_vec(),
    );
    let mut out = BytesMut::new();
    p.encode(&f, &mut out).unwrap();
    assert_eq!(out.len(), 48 + 4 + 8 + 4);
    assert_eq!(&out[48..52], &crc32c(&out[..48]).to_le_bytes());
    assert_eq!(Pdu::decode(&out, &f).unwrap(), p);
    let mut bad = out.clone();
    bad[10] ^= 1;
    assert!(matches!(
        Pdu::decode(&bad, &f),
        Err(PduError::HeaderDigest { .. })
    ));
    let mut bad = out.clone();
    bad[53] ^= 1;
    assert!(matches!(
        Pdu::decode(&bad, &f),
        Err(PduError::DataDigest { .. })
    ));
}
