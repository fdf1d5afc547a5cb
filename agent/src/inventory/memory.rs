//! Memory: usable total from `/proc/meminfo`, installed size from the SMBIOS type 17 (Memory
//! Device) records in `/sys/firmware/dmi/tables/DMI`, or else from the memory blocks in
//! `/sys/devices/system/memory`.

use ferrite_proto::inventory::Memory;
use thiserror::Error;

use super::Root;

/// Why an SMBIOS table could not be walked.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DmiError {
    #[error("SMBIOS structure at offset {offset} is truncated (table is {len} bytes)")]
    Truncated { offset: usize, len: usize },
    #[error(
        "SMBIOS structure at offset {offset} declares length {declared}, below the 4-byte header"
    )]
    BadLength { offset: usize, declared: u8 },
}

const TYPE_MEMORY_DEVICE: u8 = 17;
const TYPE_END_OF_TABLE: u8 = 127;

/// Sizes in MiB of the populated memory devices (SMBIOS type 17) in a raw DMI table.
///
/// Empty slots (size 0) and devices of unknown size (0xFFFF) are left out.
pub fn dimm_sizes_mb(table: &[u8]) -> Result<Vec<u64>, DmiError> {
    let mut sizes = Vec::new();
    let mut offset = 0;
    while offset + 4 <= table.len() {
        let kind = table[offset];
        let declared = table[offset + 1];
        let len = usize::from(declared);
        if len < 4 {
            return Err(DmiError::BadLength { offset, declared });
        }
        if offset + len > table.len() {
            return Err(DmiError::Truncated {
                offset,
                len: table.len(),
            });
        }
        let formatted = &table[offset..offset + len];
        if kind == TYPE_MEMORY_DEVICE {
            if let Some(mb) = memory_device_mb(formatted) {
                sizes.push(mb);
            }
        }
        if kind == TYPE_END_OF_TABLE {
            break;
        }
        // The string set follows the formatted area and ends with two NULs.
        let strings = &table[offset + len..];
        let end = strings
            .windows(2)
            .position(|w| w == [0, 0])
            .ok_or(DmiError::Truncated {
                offset,
                len: table.len(),
            })?;
        offset += len + end + 2;
    }
    Ok(sizes)
}

/// The Size field (offset 0x0C) of one type 17 record, with Extended Size (0x1C) when the
/// size is 0x7FFF. Bit 15 of Size selects KiB instead of MiB units.
fn memory_device_mb(rec: &[u8]) -> Option<u64> {
    let size = u16::from_le_bytes([*rec.get(0x0C)?, *rec.get(0x0D)?]);
    match size {
        0 | 0xFFFF => None,
        0x7FFF => {
            let ext = rec.get(0x1C..0x20)?;
            let mb = u32::from_le_bytes([ext[0], ext[1], ext[2], ext[3]]) & 0x7FFF_FFFF;
            (mb > 0).then_some(u64::from(mb))
        }
        s if s & 0x8000 != 0 => Some(u64::from(s & 0x7FFF) / 1024),
        s => Some(u64::from(s)),
    }
}

/// `MemTotal` of `/proc/meminfo` in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}

pub(crate) fn collect(root: &Root) -> Memory {
    let total = root
        .read("/proc/meminfo")
        .and_then(|t| parse_meminfo_total(&t))
        .unwrap_or(0);
    let physical_mb = dmi_physical_mb(root).or_else(|| memory_blocks_mb(root));
    Memory { total, physical_mb }
}

fn dmi_physical_mb(root: &Root) -> Option<u64> {
    let table = std::fs::read(root.path("/sys/firmware/dmi/tables/DMI")).ok()?;
    let sizes = dimm_sizes_mb(&table).ok()?;
    let sum: u64 = sizes.iter().sum();
    (sum > 0).then_some(sum)
}

/// Memory present in the hot-plug memory blocks: block count × `block_size_bytes` (hex).
fn memory_blocks_mb(root: &Root) -> Option<u64> {
    let block = root.read("/sys/devices/system/memory/block_size_bytes")?;
    let block = u64::from_str_radix(block.trim_start_matches("0x"), 16).ok()?;
    let blocks = root
        .list("/sys/devices/system/memory")
        .iter()
        .filter(|n| {
            n.strip_prefix("memory")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .count() as u64;
    let mb = blocks.checked_mul(block)? / (1024 * 1024);
    (mb > 0).then_some(mb)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One SMBIOS type 17 record (SMBIOS 3.2 layout, 0x28 bytes) with its strings.
    pub(crate) fn type17(handle: u16, size: u16, extended_mb: u32) -> Vec<u8> {
        let mut rec = vec![0u8; 0x28];
        rec[0] = TYPE_MEMORY_DEVICE;
        rec[1] = 0x28;
        rec[2..4].copy_from_slice(&handle.to_le_bytes());
        rec[0x0C..0x0E].copy_from_slice(&size.to_le_bytes());
        rec[0x10] = 1; // device locator: string 1
        rec[0x1C..0x20].copy_from_slice(&extended_mb.to_le_bytes());
        rec.extend_from_slice(b"DIMM A1\0\0");
        rec
    }

    pub(crate) fn end_of_table() -> Vec<u8> {
        vec![TYPE_END_OF_TABLE, 4, 0xFF, 0xFE, 0, 0]
    }

    fn bios_record() -> Vec<u8> {
        let mut rec = vec![0u8, 0x18, 0, 0];
        rec.resize(0x18, 0);
        rec.extend_from_slice(b"Vendor\0Version 1.0\0\0");
        rec
    }

    #[test]
    fn sums_populated_dimms_in_all_encodings() {
        let mut table = bios_record();
        table.extend(type17(0x1100, 16384, 0)); // 16 GiB in MiB units
        table.extend(type17(0x1101, 0, 0)); // empty slot
        table.extend(type17(0x1102, 0xFFFF, 0)); // unknown size
        table.extend(type17(0x1103, 0x7FFF, 65536)); // 64 GiB via Extended Size
        table.extend(type17(0x1104, 0x8000 | 2048, 0)); // 2048 KiB = 2 MiB
        table.extend(end_of_table());
        table.extend(type17(0x1105, 4096, 0)); // after end-of-table: ignored
        assert_eq!(dimm_sizes_mb(&table).unwrap(), vec![16384, 65536, 2]);
    }

    #[test]
    fn old_short_type17_without_extended_size() {
        let mut rec = type17(1, 0x7FFF, 0);
        rec[1] = 0x15; // SMBIOS 2.3 length: no Extended Size field
        let mut table = rec[..0x15].to_vec();
        table.extend_from_slice(b"\0\0");
        assert_eq!(dimm_sizes_mb(&table).unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn malformed_tables_are_errors_not_panics() {
        let mut table = type17(1, 1024, 0);
        table.truncate(0x20);
        assert_eq!(
            dimm_sizes_mb(&table),
            Err(DmiError::Truncated {
                offset: 0,
                len: 0x20
            })
        );
        assert_eq!(
            dimm_sizes_mb(&[17, 2, 0, 0, 0, 0]),
            Err(DmiError::BadLength {
                offset: 0,
                declared: 2
            })
        );
        let mut no_terminator = type17(1, 1024, 0);
        no_terminator.truncate(0x28 + 3);
        assert!(dimm_sizes_mb(&no_terminator).is_err());
        assert_eq!(dimm_sizes_mb(&[]).unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn meminfo_total() {
        let text = "MemTotal:       24684092 kB\nMemFree:        14628960 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(24684092 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: lots kB\n"), None);
    }
}
