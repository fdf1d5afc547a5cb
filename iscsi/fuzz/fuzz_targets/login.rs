//! Fuzzes the target's login state machine and text parsing with arbitrary login requests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrite_iscsi::fuzzing::login(data);
});
