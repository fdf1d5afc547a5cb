//! Fuzzes the NVMe codec (Identify Controller and Namespace, the Sanitize Status log,
//! status names): must never panic; a Format NVM built from a parsed namespace keeps its
//! LBA format, and the erase plan uses only what the controller supports.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrite_agent::fuzzing::nvme(data);
});
