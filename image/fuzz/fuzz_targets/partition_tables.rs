//! Fuzzes the GPT and MBR codecs, the partition-table reader and the backup-GPT move on
//! an in-memory disk: must never panic; parsed headers and MBR tables re-encode to themselves.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrite_image::fuzzing::partition_tables(data);
});
