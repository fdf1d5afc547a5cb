//! Fuzzes the config-drive ISO9660 reader: must never panic, and a tree that reads has
//! plain relative paths and no more file bytes than the image.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrite_image::fuzzing::iso9660(data);
});
