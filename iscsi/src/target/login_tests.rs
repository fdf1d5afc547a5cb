use super::*;
use crate::chap::{encode_hex, response};

fn req(csg: u8, nsg: u8, transit: bool) -> Login {
    Login {
        transit,
        csg,
        nsg,
        itt: 1,
        ..Default::default()
    }
}

fn keys(s: &str) -> Vec<u8> {
    s.replace('|', "\0").into_bytes()
}

fn get(a: &Answer, k: &str) -> Option<String> {
    a.keys.get(k).map(str::to_string)
}

#[test]
fn no_auth_straight_to_full_feature() {
    let mut st = LoginState::new("iqn.t:x", None, None, Offer::default());
    let a = st.step(
        &req(1, 3, true),
        &keys("InitiatorName=iqn.i:y|TargetName=iqn.t:x|MaxRecvDataSegmentLength=4096|"),
    );
    assert!(a.done(), "{a:?}");
    assert_eq!(get(&a, "TargetPortalGroupTag").as_deref(), Some("1"));
    assert_eq!(
        get(&a, "MaxRecvDataSegmentLength").as_deref(),
        Some("262144")
    );
    assert_eq!(st.params.peer_max_recv_data, 4096);
    assert_eq!(st.kind, Some(SessionKind::Normal));
}

#[test]
fn chap_flow_and_failures() {
    let cred = Credentials {
        user: "u".into(),
        secret: "secretsecret".into(),
    };
    let mut st = LoginState::new("iqn.t:x", Some(&cred), None, Offer::default());
    let a = st.step(
        &req(0, 1, true),
        &keys("InitiatorName=iqn.i:y|TargetName=iqn.t:x|AuthMethod=None,CHAP|"),
    );
    assert_eq!(get(&a, "AuthMethod").as_deref(), Some("CHAP"));
    assert!(!a.transit, "no transit before authentication");
    let a = st.step(&req(0, 1, true), &keys("CHAP_A=7,5|"));
    let id: u8 = get(&a, "CHAP_I").unwrap().parse().unwrap();
    let ch = crate::chap::decode_binary(&get(&a, "CHAP_C").unwrap()).unwrap();
    let r = encode_hex(&response(id, b"secretsecret", &ch));
    let a = st.step(&req(0, 1, true), &keys(&format!("CHAP_N=u|CHAP_R={r}|")));
    assert_eq!(a.status, status::SUCCESS);
    assert!(a.transit && a.nsg == 1);
    let a = st.step(&req(1, 3, true), &keys("HeaderDigest=None|"));
    assert!(a.done());

    // Wrong response.
    let mut st = LoginState::new("iqn.t:x", Some(&cred), None, Offer::default());
    st.step(
        &req(0, 1, false),
        &keys("InitiatorName=iqn.i:y|TargetName=iqn.t:x|AuthMethod=CHAP|"),
    );
    st.step(&req(0, 1, false), &keys("CHAP_A=5|"));
    let a = st.step(
        &req(0, 1, true),
        &keys("CHAP_N=u|CHAP_R=0x00112233445566778899aabbccddeeff|"),
    );
    assert_eq!(a.status, status::AUTH_FAILED);
    // Skipping security when CHAP is required.
    let mut st = LoginState::new("iqn.t:x", Some(&cred), None, Offer::default());
    let a = st.step(
        &req(1, 3, true),
        &keys("InitiatorName=iqn.i:y|TargetName=iqn.t:x|"),
    );
    assert_eq!(a.status, status::AUTH_FAILED);
    // Only None offered.
    let mut st = LoginState::new("iqn.t:x", Some(&cred), None, Offer::default());
    let a = st.step(
        &req(0, 1, true),
        &keys("InitiatorName=iqn.i:y|TargetName=iqn.t:x|AuthMethod=None|"),
    );
    assert_eq!(a.status, status::AUTH_FAILED);
}

#[test]
fn names_types_and_stages() {
    let mut st = LoginState::new("iqn.t:x", None, None, Offer::default());
    let a = st.step(
        &req(1, 3, true),
        &keys("InitiatorName=iqn.i:y|TargetName=iqn.t:other|"),
    );
    assert_eq!(a.status, status::NOT_FOUND);
    let mut st = LoginState::new("iqn.t:x", None, None, Offer::default());
    let a = st.step(
        &req(1, 3, true),
        &keys("InitiatorName=iqn.i:y|SessionType=Discovery|"),
    );
    assert!(a.done());
    assert_eq!(st.kind, Some(SessionKind::Discovery));
    let mut st = LoginState::new("iqn.t:x", None, None, Offer::default());
    let a = st.step(
        &req(3, 3, true),
        &keys("InitiatorName=iqn.i:y|TargetName=iqn.t:x|"),
    );
    assert_eq!(a.status, status::INITIATOR_ERROR);
    let mut st = LoginState::new("iqn.t:x", None, None, Offer::default());
    let a = st.step(
        &req(1, 0, true),
        &keys("InitiatorName=iqn.i:y|TargetName=iqn.t:x|"),
    );
    assert_eq!(a.status, status::INITIATOR_ERROR, "backwards transition");
    let mut st = LoginState::new("iqn.t:x", None, None, Offer::default());
    let mut r = req(1, 3, true);
    r.tsih = 5;
    let a = st.step(&r, &keys("InitiatorName=iqn.i:y|TargetName=iqn.t:x|"));
    assert_eq!(a.status, status::NO_SESSION);
}
