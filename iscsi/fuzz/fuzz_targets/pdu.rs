//! Fuzzes the PDU codec: decode must never panic, and whatever decodes re-encodes to a PDU
//! that decodes to the same value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrite_iscsi::fuzzing::pdu(data);
});
