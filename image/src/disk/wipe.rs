//! Wipe partition table signatures so a disk cannot boot a half-written image: the MBR
//! and primary GPT at the start, the backup GPT at the end.

use std::io;

use crate::sink::BlockSink;

/// Bytes zeroed at each end: covers MBR + GPT (34 sectors of 512, or 6 of 4096) with room.
pub const WIPE_BYTES: u64 = 1 << 20;

/// Zero the first and last MiB of the target and flush.
pub fn wipe_partition_signatures(sink: &mut dyn BlockSink) -> io::Result<()> {
    let size = sink.size();
    let head = WIPE_BYTES.min(size);
    let zeros = vec![0u8; head as usize];
    sink.write_at(0, &zeros)?;
    let tail_start = size.saturating_sub(WIPE_BYTES).max(head);
    if tail_start < size {
        sink.write_at(tail_start, &zeros[..(size - tail_start) as usize])?;
    }
    sink.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemSink;

    #[test]
    fn zeroes_both_ends_and_keeps_the_middle() {
        let mut s = MemSink::new(3 << 20, false);
        wipe_partition_signatures(&mut s).unwrap();
        assert!(s.data[..1 << 20].iter().all(|&b| b == 0));
        assert!(s.data[2 << 20..].iter().all(|&b| b == 0));
        assert!(s.data[(1 << 20)..(2 << 20)].iter().all(|&b| b == 0xAA));
        assert!(s.flushed);
        let mut small = MemSink::new(5000, false);
        wipe_partition_signatures(&mut small).unwrap();
        assert!(small.data.iter().all(|&b| b == 0));
    }
}
