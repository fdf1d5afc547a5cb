//! Tells whether an ELF executable is statically linked (no interpreter, no DT_NEEDED).

use anyhow::{bail, ensure};

#[derive(Debug, PartialEq, Eq)]
pub enum Linkage {
    Static,
    Dynamic,
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;

fn u16_at(b: &[u8], off: usize) -> anyhow::Result<u16> {
    let s = b
        .get(off..off + 2)
        .ok_or_else(|| anyhow::anyhow!("ELF truncated"))?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], off: usize) -> anyhow::Result<u32> {
    let s = b
        .get(off..off + 4)
        .ok_or_else(|| anyhow::anyhow!("ELF truncated"))?;
    Ok(u32::from_le_bytes(s.try_into().expect("4 bytes")))
}
fn u64_at(b: &[u8], off: usize) -> anyhow::Result<u64> {
    let s = b
        .get(off..off + 8)
        .ok_or_else(|| anyhow::anyhow!("ELF truncated"))?;
    Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

/// Reads a 64-bit little-endian ELF file's program headers.
pub fn linkage(b: &[u8]) -> anyhow::Result<Linkage> {
    ensure!(b.get(0..4) == Some(b"\x7fELF"), "not an ELF file");
    if b[4] != 2 || b[5] != 1 {
        bail!("only 64-bit little-endian ELF files are checked");
    }
    let phoff = u64_at(b, 0x20)? as usize;
    let phentsize = u16_at(b, 0x36)? as usize;
    let phnum = u16_at(b, 0x38)? as usize;
    let mut dynamic = None;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        match u32_at(b, ph)? {
            PT_INTERP => return Ok(Linkage::Dynamic),
            PT_DYNAMIC => {
                dynamic = Some((u64_at(b, ph + 8)? as usize, u64_at(b, ph + 32)? as usize))
            }
            _ => {}
        }
    }
    if let Some((off, size)) = dynamic {
        for entry in (off..off + size).step_by(16) {
            match u64_at(b, entry)? {
                0 => break,
                DT_NEEDED => return Ok(Linkage::Dynamic),
                _ => {}
            }
        }
    }
    Ok(Linkage::Static)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_test_binary_is_read() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // Test binaries are built for the host (glibc): dynamically linked.
        assert_eq!(linkage(&exe).unwrap(), Linkage::Dynamic);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(linkage(b"not an elf").is_err());
        assert!(linkage(b"\x7fELF\x02\x01").is_err());
    }
}
