//! Arbitrary datagrams into the TFTP packet decoder: no panics, and anything that decodes
//! re-encodes to a packet that decodes the same.
#![no_main]

use ferrite_tftp::packet::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::decode(data) {
        let again = Packet::decode(&p.encode());
        // Option names are lower-cased on decode, so compare after one round trip.
        let p2 = again.expect("re-encoded packet decodes");
        assert_eq!(Packet::decode(&p2.encode()).unwrap(), p2);
    }
});
