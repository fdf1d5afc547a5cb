//! Fuzzes the initiator against a scripted target on loopback: the first byte picks the
//! session (discovery or normal, CHAP, which commands), the rest is what the target sends.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ferrite_iscsi::fuzzing::initiator(data);
});
