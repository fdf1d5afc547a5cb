//! Fuzzes the disk signature probe (partition tables, filesystems, RAID, shared cluster
//! storage) and the GPT type GUID text codec: must never panic; no signature twice.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrite_agent::fuzzing::disk_probe(data);
});
