//! Feeds arbitrary datagrams to every decoder of the IPMI codec: none may panic, and
//! whatever decodes must re-encode to something that decodes the same.
#![no_main]

use ferrite_ipmi::codec::{commands, crypto, message, rakp, rmcp, session, CipherSuite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rmcp::decode_pong(data);
    let keys3 = crypto::SessionKeys::derive(CipherSuite::Suite3, &[1u8; 20]);
    let keys17 = crypto::SessionKeys::derive(CipherSuite::Suite17, &[1u8; 32]);
    for keys in [None, Some(&keys3), Some(&keys17)] {
        if let Ok(p) = session::decode(data, keys) {
            let _ = message::Response::decode(&p.payload);
            let _ = message::Request::decode(&p.payload);
            let _ = rakp::decode_open_session_response(&p.payload);
            let _ = rakp::decode_rakp2(&p.payload);
            let _ = rakp::decode_rakp4(&p.payload);
        }
    }
    let _ = keys3.decrypt(data);
    if let Ok(r) = message::Response::decode(data) {
        assert_eq!(message::Response::decode(&r.encode()), Ok(r.clone()));
        let _ = commands::DeviceId::decode(&r.data);
        let _ = commands::ChassisStatus::decode(&r.data);
        let _ = commands::BootOptions::decode(&r.data);
        let _ = commands::AuthCapabilities::decode(&r.data);
        let _ = commands::decode_mac(&r.data);
        let _ = commands::decode_ipv4(&r.data);
        let _ = commands::decode_ipv6_enabled(&r.data);
        let _ = commands::decode_ipv6_slots(&r.data);
        let _ = commands::decode_ipv6_address(&r.data, r.data.len() % 2 == 0);
    }
    let _ = commands::parse_cipher_suite_records(data);
});
