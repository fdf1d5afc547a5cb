//! Entry points shared by the cargo-fuzz targets of image/fuzz and the stable tests that
//! replay their seeds and past findings (`fuzz/seeds/<target>`, `fuzz/regressions/<target>`).
//! Each must never panic on any input; where a codec has an encoder, what decodes must
//! re-encode to the same value.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use crate::checksum::{self, Algo, Expected, Spec};
use crate::disk::io::DiskIo;
use crate::disk::{gpt, iso9660, mbr};

/// Reads a config-drive ISO: a tree that reads must have plain, relative paths and hold no
/// more file bytes than the image itself.
pub fn iso9660(data: &[u8]) {
    let is_iso = iso9660::is_iso(data);
    let Ok((_label, entries)) = iso9660::read(data) else {
        return;
    };
    assert!(is_iso, "read an image that is_iso refuses");
    let mut held = 0usize;
    for e in &entries {
        assert!(
            !e.path.is_empty() && !e.path.starts_with('/'),
            "{:?}",
            e.path
        );
        assert!(
            e.path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."),
            "path {:?} is not plain",
            e.path
        );
        held += e.data.as_ref().map_or(0, Vec::len);
    }
    assert!(
        held <= data.len(),
        "{held} file bytes from {} image bytes",
        data.len()
    );
}

/// An in-memory disk of fixed size: writes past its end fail as on a block device.
pub struct MemDisk(Mutex<Vec<u8>>);

impl MemDisk {
    pub fn new(bytes: Vec<u8>) -> MemDisk {
        MemDisk(Mutex::new(bytes))
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().expect("MemDisk lock").clone()
    }
}

impl FileExt for MemDisk {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let d = self.0.lock().expect("MemDisk lock");
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(d.len());
        let n = buf.len().min(d.len() - start);
        buf[..n].copy_from_slice(&d[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut d = self.0.lock().expect("MemDisk lock");
        let start = usize::try_from(offset)
            .ok()
            .filter(|&s| s.checked_add(buf.len()).is_some_and(|e| e <= d.len()))
            .ok_or_else(|| io::Error::other("write past the end of the disk"))?;
        d[start..start + buf.len()].copy_from_slice(buf);
        Ok(buf.len())
    }
}

impl DiskIo for MemDisk {
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Largest disk the partition-table target builds (twice the input, for the backup move).
const MAX_DISK: usize = 8 << 20;

/// GPT and MBR: the header and entry codecs on the raw bytes (a parsed header re-encodes
/// to itself; an MBR table re-written reads back the same), then the whole-disk reader and
/// the backup-GPT move on `data` as a disk, at both sector sizes.
pub fn partition_tables(data: &[u8]) {
    for sector in [512usize, 4096] {
        let Some(at) = data.get(sector..) else {
            continue;
        };
        if let Some(h) = gpt::GptHeader::parse(&at[..at.len().min(sector)]) {
            let again = h.encode(h.my_lba, h.alternate_lba, h.last_usable, h.entries_lba);
            assert_eq!(gpt::GptHeader::parse(&again).as_ref(), Some(&h));
            let entries = data.get(2 * sector..).unwrap_or_default();
            for p in gpt::parse_entries(&h, entries) {
                assert!(p.number >= 1 && p.number <= h.num_entries);
            }
        }
    }
    if let Some(s0) = data.get(..512) {
        let s0: &[u8; 512] = s0.try_into().expect("512 bytes");
        if let Some(parts) = mbr::read_table(s0) {
            let mut copy = *s0;
            mbr::write_table(&mut copy, &parts);
            assert_eq!(mbr::read_table(&copy), Some(parts));
            assert_eq!(copy[..446], s0[..446], "the boot code is kept");
        }
    }
    // The disk: the input, then as many zeroes again (room to move the backup GPT to).
    let len = (2 * data.len()).min(MAX_DISK);
    let mut bytes = data[..data.len().min(len)].to_vec();
    bytes.resize(len, 0);
    for sector in [512u64, 4096] {
        disk_tables(&bytes, sector);
        // Random bytes rarely carry the right CRCs: also with them put right, so the
        // fuzzer gets past the checks to the fields behind them.
        let mut fixed = bytes.clone();
        if fix_gpt_crcs(&mut fixed, sector as usize) {
            disk_tables(&fixed, sector);
        }
    }
}

/// Sets the entry-array and header CRCs of a GPT header at LBA 1; false if there is none.
fn fix_gpt_crcs(disk: &mut [u8], sector: usize) -> bool {
    let le = |b: &[u8], at: usize, n: usize| {
        b[at..at + n]
            .iter()
            .rev()
            .fold(0u64, |v, &x| (v << 8) | u64::from(x))
    };
    let Some(h) = disk.get(sector..2 * sector) else {
        return false;
    };
    if &h[..8] != gpt::GPT_SIGNATURE {
        return false;
    }
    let header_size = le(h, 12, 4) as usize;
    if !(92..=sector).contains(&header_size) {
        return false;
    }
    let entries = le(h, 80, 4).saturating_mul(le(h, 84, 4));
    let start = le(h, 72, 8).checked_mul(sector as u64);
    let array = start
        .and_then(|s| Some(s as usize..usize::try_from(s.checked_add(entries)?).ok()?))
        .and_then(|r| disk.get(r));
    if let Some(a) = array {
        let crc = crc32fast::hash(a);
        disk[sector + 88..sector + 92].copy_from_slice(&crc.to_le_bytes());
    }
    disk[sector + 16..sector + 20].fill(0);
    let crc = crc32fast::hash(&disk[sector..sector + header_size]);
    disk[sector + 16..sector + 20].copy_from_slice(&crc.to_le_bytes());
    true
}

/// The whole-disk reader and the backup-GPT move on `bytes` as a disk.
fn disk_tables(bytes: &[u8], sector: u64) {
    let len = bytes.len() as u64;
    let _ = gpt::read_table(&MemDisk::new(bytes.to_vec()), sector);
    // A size the disk reports may be anything, even smaller than one sector.
    for size in [len, len / 3, sector - 1] {
        let disk = MemDisk::new(bytes.to_vec());
        if gpt::move_backup_to_end(&disk, size, sector).is_ok_and(|moved| moved) {
            let last = size / sector - 1;
            if last > 1 {
                let d = disk.bytes();
                let at = (last * sector) as usize;
                let h = gpt::GptHeader::parse(&d[at..at + sector as usize])
                    .expect("the moved backup header parses");
                assert_eq!((h.my_lba, h.alternate_lba), (last, 1));
            }
        }
    }
}

fn check_expected(e: &Expected) {
    assert!(
        e.hex
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{:?} is not lower-case hex",
        e.hex
    );
    assert_eq!(Algo::from_hex_len(e.hex.len()), Some(e.algo), "{e:?}");
}

/// The checksum fields of `image_info` and checksum-file bodies. `data` splits at NUL into
/// os_hash_algo, os_hash_value, checksum, the image URL's file name, and a checksum file.
/// Whatever value is accepted is lower-case hex of its algorithm's length, and is found
/// again in a sha256sum-style, a `*name` and a BSD-style file naming the image.
pub fn checksum_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\0');
    let mut next = || parts.next();
    let (algo, value, legacy, name, body) = (next(), next(), next(), next(), next());
    if let Some(a) = algo.and_then(Algo::from_name) {
        assert_eq!(Algo::from_name(a.name()), Some(a));
    }
    let body = body.unwrap_or("");
    let name = name.unwrap_or("disk.img");
    let image_url = format!("http://h/images/{name}");
    let mut found = vec![];
    for (a, v, c) in [
        (algo, value, legacy),
        (None, None, legacy),
        (algo, value, None),
    ] {
        match checksum::spec(a, v, c) {
            Ok(Spec::Value(e)) => {
                check_expected(&e);
                found.push(e);
            }
            Ok(Spec::Url(u)) => assert!(u.starts_with("http://") || u.starts_with("https://")),
            Err(_) => {}
        }
    }
    for url in [image_url.as_str(), "https://h/d/disk.img?x=1#y", name] {
        if let Ok(e) = checksum::from_checksum_file(body, "http://h/SUMS", url) {
            check_expected(&e);
        }
    }
    for e in found {
        for file in [
            format!("{}  disk.img\n{body}", e.hex),
            format!("{} *disk.img\n{body}", e.hex),
            format!(
                "{} (disk.img) = {}\n{body}",
                e.algo.name().to_uppercase(),
                e.hex
            ),
            format!("# a comment\n{}\n", e.hex),
        ] {
            let got = checksum::from_checksum_file(&file, "http://h/SUMS", "http://h/x/disk.img");
            assert_eq!(got.as_ref(), Ok(&e), "in {file:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays the committed seeds and every past finding (fuzz/regressions/<target>/,
    /// where `cargo xtask fuzz` says to put a crash once it is fixed).
    #[test]
    fn seeds_and_past_findings_replay_without_panics() {
        let counts = ferrite_testkit::fuzz::replay_corpus(
            env!("CARGO_MANIFEST_DIR"),
            &[
                ("iso9660", iso9660),
                ("partition_tables", partition_tables),
                ("checksum_file", checksum_file),
            ],
        );
        assert!(counts.iter().all(|(_, n)| *n >= 3), "{counts:?}");
    }

    #[test]
    fn small_inputs_do_not_panic() {
        for len in [0, 1, 511, 512, 513, 1024, 4096, 8192] {
            let zeros = vec![0u8; len];
            iso9660(&zeros);
            partition_tables(&zeros);
            checksum_file(&zeros);
        }
    }
}
