//! [`AlignedBuf`]: a zeroed byte buffer whose start is 4 KiB-aligned in memory, as
//! `O_DIRECT` wants, without unsafe: a `Vec` over-allocated by one alignment unit and never
//! grown. The target's backing file and the agent's device writer both use it.

/// Alignment of the buffer's start (fits 512-byte and 4Kn disks).
pub const ALIGN: usize = 4096;

/// A zeroed heap buffer of fixed length, aligned to [`ALIGN`].
pub struct AlignedBuf {
    raw: Vec<u8>,
    shift: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> AlignedBuf {
        let raw = vec![0u8; len + ALIGN];
        // Computable at run time for byte pointers; always < ALIGN.
        let shift = raw.as_ptr().align_offset(ALIGN);
        AlignedBuf { raw, shift, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        &self.raw[self.shift..self.shift + self.len]
    }
}

impl AsMut<[u8]> for AlignedBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.shift..self.shift + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_of_the_asked_length() {
        for len in [0, 1, 511, 4096, 65536 + 7] {
            let mut b = AlignedBuf::zeroed(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ref().len(), len);
            assert!(b.as_ref().iter().all(|&x| x == 0));
            assert_eq!(b.as_mut().as_ptr() as usize % ALIGN, 0, "len {len}");
        }
    }
}
