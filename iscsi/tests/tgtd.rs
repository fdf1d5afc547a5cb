//! Our initiator against Linux tgtd (Debian tgt) on a file backstore, with and without CHAP.

mod common;

use std::net::SocketAddr;

use common::tgtd::{Tgtd, ONE_AT_A_TIME, TGT_IQN};
use common::{pattern, INITIATOR};
use ferrite_iscsi::{Credentials, Initiator, InitiatorError, LoginOptions};

/// tgtd puts the disk on LUN 1 (LUN 0 is its controller); our initiator talks to LUN 0,
/// so these tests address LUN 1 through raw CDBs on a session-level helper.
async fn roundtrip(addr: SocketAddr, opts: &LoginOptions) -> Result<(), InitiatorError> {
    let found = Initiator::discover(addr, INITIATOR).await?;
    assert!(found.iter().any(|(n, _)| n == TGT_IQN), "{found:?}");
    let mut s = Initiator::connect_lun(addr, opts, 1).await?;
    assert_eq!(s.blocks(), (32 << 20) / 512);
    let data = pattern(2 << 20, 3);
    s.write(8, &data).await?;
    s.sync().await?;
    assert_eq!(s.read(8, (data.len() / 512) as u32).await?, data);
    s.logout().await
}

#[tokio::test]
async fn our_initiator_against_tgtd_without_chap() {
    let _one = ONE_AT_A_TIME.lock().await;
    let t = Tgtd::start(None);
    roundtrip(t.addr, &LoginOptions::new(INITIATOR, TGT_IQN))
        .await
        .unwrap();
}

#[tokio::test]
async fn our_initiator_against_tgtd_with_chap() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cred = Credentials {
        user: "ferrite".into(),
        secret: "tgtd-secret-1".into(),
    };
    let t = Tgtd::start(Some(&cred));
    let mut o = LoginOptions::new(INITIATOR, TGT_IQN);
    o.chap = Some(cred.clone());
    roundtrip(t.addr, &o).await.unwrap();
    o.chap = Some(Credentials {
        user: "ferrite".into(),
        secret: "wrong-secret".into(),
    });
    let e = Initiator::connect_lun(t.addr, &o, 1).await.unwrap_err();
    assert!(e.is_authentication_failure(), "{e}");
}
