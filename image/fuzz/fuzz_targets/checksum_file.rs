//! Fuzzes the image checksum fields and checksum-file parsing: must never panic; an accepted
//! value is lower-case hex of its algorithm's length and is found again in a checksum file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrite_image::fuzzing::checksum_file(data);
});
