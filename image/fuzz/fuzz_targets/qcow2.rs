//! Fuzz the qcow2 codec and the streaming converter: arbitrary bytes as an image, into a
//! small in-memory disk, with and without Range access. Must never panic.
#![no_main]

use ferrite_image::qcow2::{self, header, RangeRead};
use ferrite_image::sink::MemSink;
use libfuzzer_sys::fuzz_target;

struct Ranges<'a>(&'a [u8]);

impl RangeRead for Ranges<'_> {
    fn read_range(&mut self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let start = (offset as usize).min(self.0.len());
        let end = start.saturating_add(len).min(self.0.len());
        Ok(self.0[start..end].to_vec())
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = header::Header::parse(data, Some(data.len() as u64)) {
        for i in 0..data.len() / 8 {
            let _ = header::l1_entry(header::table_u64(data, i), &h);
            let _ = header::l2_entry(header::table_u64(data, i), &h, 0);
        }
    }
    let mut disk = MemSink::new(4 << 20, data.first().is_some_and(|b| b & 1 == 1));
    let _ = qcow2::convert(&mut &data[..], None, None, &mut disk);
    let mut disk = MemSink::new(4 << 20, true);
    let mut r = Ranges(data);
    let _ = qcow2::convert(&mut &data[..], Some(&mut r), Some(data.len() as u64), &mut disk);
});
