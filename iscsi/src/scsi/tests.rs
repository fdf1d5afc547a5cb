use super::*;

fn lun(blocks: u64) -> (tempfile::TempDir, Lun) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lun");
    std::fs::File::create(&p)
        .unwrap()
        .set_len(blocks * 512)
        .unwrap();
    let store = Backing::open(&p, false).unwrap();
    (dir, Lun::new(store, "serial".into(), "iqn.t:x".into()))
}

fn cdb(b: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..b.len()].copy_from_slice(b);
    c
}

#[test]
fn read_write_planning_and_ranges() {
    let (_d, l) = lun(1000);
    assert_eq!(
        l.plan(&cdb(&[0x28, 0, 0, 0, 0, 10, 0, 0, 4, 0])),
        Plan::Read { lba: 10, blocks: 4 }
    );
    assert_eq!(
        l.plan(&cdb(&[0x28, 0, 0, 0, 3, 0xe6, 0, 0, 3, 0])),
        Plan::Check(Sense::LBA_OUT_OF_RANGE)
    );
    assert_eq!(
        l.plan(&cdb(&[0x28, 0, 0, 0, 3, 0xe8, 0, 0, 0, 0])),
        Plan::Check(Sense::LBA_OUT_OF_RANGE)
    );
    assert_eq!(
        l.plan(&cdb(&[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0])),
        Plan::Check(Sense::INVALID_FIELD_IN_CDB)
    );
    assert_eq!(
        l.plan(&cdb(&[0x08, 0, 0, 5, 0, 0])),
        Plan::Read {
            lba: 5,
            blocks: 256
        }
    );
    let mut w16 = cdb(&[0x8a]);
    w16[2..10].copy_from_slice(&u64::MAX.to_be_bytes());
    w16[13] = 1;
    assert_eq!(l.plan(&w16), Plan::Check(Sense::LBA_OUT_OF_RANGE));
    assert_eq!(
        l.plan(&cdb(&[0x2a, 0x08, 0, 0, 0, 1, 0, 0, 2, 0])),
        Plan::DataOut {
            len: 1024,
            op: DataOutOp::Write { lba: 1, fua: true }
        }
    );
    assert_eq!(l.plan(&cdb(&[0xd7])), Plan::Check(Sense::INVALID_OPCODE));
}

#[test]
fn write_same_unmap_and_compare() {
    let (_d, l) = lun(1000);
    l.finish(&DataOutOp::Write { lba: 0, fua: false }, &[0x11; 4096])
        .unwrap();
    // VERIFY with BYTCHK=1: match, then a miscompare at byte 513.
    let op = DataOutOp::Compare {
        lba: 0,
        blocks: 2,
        same: false,
    };
    l.finish(&op, &[0x11; 1024]).unwrap();
    let mut bad = vec![0x11; 1024];
    bad[513] = 0;
    assert_eq!(
        l.finish(&op, &bad),
        Err(Sense::MISCOMPARE_VERIFY.with_info(513))
    );
    // WRITE SAME with UNMAP deallocates; reads back zero.
    l.finish(
        &DataOutOp::WriteSame {
            lba: 2,
            blocks: 4,
            unmap: true,
        },
        &[0xff; 512],
    )
    .unwrap();
    let mut b = vec![1u8; 4096];
    l.read(0, 0, &mut b).unwrap();
    assert!(b[..1024].iter().all(|&x| x == 0x11));
    assert!(b[1024..3072].iter().all(|&x| x == 0));
    // UNMAP descriptor past the end: refused before anything changes.
    let mut p = vec![0u8; 40];
    p[1] = 38;
    p[3] = 32;
    p[8 + 7] = 6; // lba 6, 2 blocks: fine
    p[8 + 11] = 2;
    p[24..32].copy_from_slice(&999u64.to_be_bytes());
    p[24 + 11] = 2; // 999 + 2 > 1000
    assert_eq!(
        l.finish(&DataOutOp::Unmap, &p),
        Err(Sense::LBA_OUT_OF_RANGE)
    );
    l.read(0, 0, &mut b).unwrap();
    assert!(
        b[3072..].iter().all(|&x| x == 0x11),
        "first descriptor not applied either"
    );
    assert_eq!(
        l.finish(&DataOutOp::Unmap, &p[..5]),
        Err(Sense::PARAM_LIST_LENGTH)
    );
    // COMPARE AND WRITE: compare half, write half.
    let mut caw = vec![0x11; 512];
    caw.extend_from_slice(&[0x22; 512]);
    l.finish(&DataOutOp::CompareAndWrite { lba: 7, blocks: 1 }, &caw)
        .unwrap();
    assert_eq!(
        l.finish(&DataOutOp::CompareAndWrite { lba: 7, blocks: 1 }, &caw),
        Err(Sense::MISCOMPARE_VERIFY.with_info(0))
    );
}

#[test]
fn report_luns_inquiry_and_request_sense() {
    let (_d, l) = lun(8);
    assert_eq!(
        l.plan(&cdb(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 8])),
        Plan::Check(Sense::INVALID_FIELD_IN_CDB)
    );
    assert!(
        matches!(l.plan(&cdb(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0])), Plan::DataIn(v) if v.len() == 16)
    );
    assert!(matches!(l.plan(&cdb(&[0x12, 0, 0, 0, 5, 0])), Plan::DataIn(v) if v.len() == 5));
    assert_eq!(
        l.plan(&cdb(&[0x12, 0, 0x80, 0, 255, 0])),
        Plan::Check(Sense::INVALID_FIELD_IN_CDB)
    );
    assert!(
        matches!(l.plan(&cdb(&[0x03, 0, 0, 0, 18, 0])), Plan::DataIn(v) if v[0] == 0x70 && v[2] == 0)
    );
    assert_eq!(
        l.plan(&cdb(&[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0])),
        Plan::Check(Sense::INVALID_FIELD_IN_CDB)
    );
}
