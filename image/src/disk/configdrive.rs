//! Config drive: decode (base64 of gzip, or an http(s) URL of one), check its size, and
//! write it to the partition labelled `config-2`, or to a new 64 MiB partition at the end
//! of the disk (GPT, or MBR up to 2 TiB).

use std::io::Read;

use base64::Engine;
use tokio::runtime::Handle;

use super::gpt::{self, GptHeader, Table};
use super::io::DiskIo;
use super::{iso9660, mbr, vfat_build};
use crate::http::{self, HttpConfig, HttpSource};

/// Largest config drive accepted, and the size of a partition made for one.
pub const MAX_BYTES: u64 = 64 << 20;
const MBR_LIMIT: u64 = 2 << 40;
/// Linux filesystem data.
const LINUX_FS_GUID: [u8; 16] = [
    0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
];
const LABEL: &str = "config-2";

#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    #[error("the config drive is {0} bytes, more than the 64 MiB limit")]
    TooLarge(u64),
    #[error("the config drive is neither base64 nor an http(s) URL: {0}")]
    NotBase64(String),
    #[error("the config drive is not valid gzip: {0}")]
    NotGzip(String),
    #[error("downloading the config drive failed")]
    Download(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the disk has no partition table to add a config drive partition to; the image must carry a GPT or MBR")]
    NoTable,
    #[error("the disk is {0} bytes, over the 2 TiB an MBR can address: cannot add a config drive partition at its end; use a GPT image")]
    MbrTooLarge(u64),
    #[error("no room for a config drive partition: {0}")]
    NoRoom(String),
    #[error("the ISO9660 config drive must be rebuilt as VFAT for this disk's {sector}-byte sectors, and that failed: {why}")]
    Rebuild { sector: u64, why: String },
    #[error("config drive I/O on {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Decode a config drive: base64 (or raw bytes from a URL), then gunzip if gzipped.
pub fn decode(data: &[u8], from_url: bool) -> Result<Vec<u8>, ConfigDriveError> {
    let trimmed: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let raw = match base64::engine::general_purpose::STANDARD.decode(&trimmed) {
        Ok(r) => r,
        Err(_) if from_url => data.to_vec(),
        Err(e) => return Err(ConfigDriveError::NotBase64(e.to_string())),
    };
    let out = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = vec![];
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(MAX_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| ConfigDriveError::NotGzip(e.to_string()))?;
        out
    } else if from_url {
        raw
    } else {
        return Err(ConfigDriveError::NotGzip(
            "it does not start with the gzip magic".into(),
        ));
    };
    if out.len() as u64 > MAX_BYTES {
        return Err(ConfigDriveError::TooLarge(out.len() as u64));
    }
    Ok(out)
}

/// The filesystem label at `offset`: ISO9660 volume id or FAT label.
pub fn label_at(f: &dyn DiskIo, offset: u64) -> Option<String> {
    let mut iso = [0u8; 72];
    if f.read_exact_at(&mut iso, offset + 32768).is_ok() && &iso[1..6] == b"CD001" {
        return Some(String::from_utf8_lossy(&iso[40..72]).trim().to_owned());
    }
    let mut bs = [0u8; 512];
    f.read_exact_at(&mut bs, offset).ok()?;
    if bs[510] != 0x55 || bs[511] != 0xAA {
        return None;
    }
    for (sig, label) in [(82usize, 71usize), (54, 43)] {
        if bs[sig..sig + 3] == *b"FAT" {
            return Some(
                String::from_utf8_lossy(&bs[label..label + 11])
                    .trim()
                    .to_owned(),
            );
        }
    }
    None
}

/// The config drive's bytes: `configdrive` decoded, or downloaded from its URL and decoded.
pub fn fetch(
    rt: &Handle,
    configdrive: &str,
    cfg: &HttpConfig,
) -> Result<Vec<u8>, ConfigDriveError> {
    if configdrive.starts_with("http://") || configdrive.starts_with("https://") {
        let client = http::client(cfg).map_err(|e| ConfigDriveError::Download(e.into()))?;
        let mut src = HttpSource::open(rt, &client, &[configdrive.to_owned()], cfg)
            .map_err(|e| ConfigDriveError::Download(e.into()))?;
        let mut body = vec![];
        // base64 of 64 MiB of gzip is at most ~86 MiB.
        (&mut src)
            .take(MAX_BYTES * 2)
            .read_to_end(&mut body)
            .map_err(|e| ConfigDriveError::Download(e.into()))?;
        decode(&body, true)
    } else {
        decode(configdrive.as_bytes(), false)
    }
}

/// Write decoded config drive `data` onto `disk` (`size` bytes, `sector`-byte sectors; a
/// local file or device, or a remote LUN) and sync; `name` names the disk in errors.
pub fn write_data(
    disk: &dyn DiskIo,
    size: u64,
    sector: u64,
    data: &[u8],
    name: &str,
) -> Result<String, ConfigDriveError> {
    let io = |source| ConfigDriveError::Io {
        path: name.to_owned(),
        source,
    };
    // ISO9660's 2 KiB blocks cannot be mounted from a disk with larger sectors (4Kn):
    // rebuild the same files as VFAT labelled config-2, as IPA does.
    let rebuilt;
    let (data, note) = if sector > 2048 && iso9660::is_iso(data) {
        let fail = |why: String| ConfigDriveError::Rebuild { sector, why };
        let (_, entries) = iso9660::read(data).map_err(|e| fail(e.to_string()))?;
        rebuilt = vfat_build::build(LABEL, &entries, sector as u16, MAX_BYTES)
            .map_err(|e| fail(format!("{e}: {:?}", std::error::Error::source(&e))))?;
        (
            &rebuilt[..],
            format!(" (ISO9660 rebuilt as VFAT for {sector}-byte sectors)"),
        )
    } else {
        (data, String::new())
    };
    let (offset, capacity, how) = place(disk, size, sector).map_err(|e| match e {
        PlaceError::Io(e) => io(e),
        PlaceError::Cd(e) => e,
    })?;
    if data.len() as u64 > capacity {
        return Err(ConfigDriveError::NoRoom(format!(
            "the config-2 partition holds {capacity} bytes, the config drive is {}",
            data.len()
        )));
    }
    disk.write_all_at(data, offset).map_err(io)?;
    disk.sync().map_err(io)?;
    Ok(format!(
        "config drive ({} bytes{note}) written to {how} at byte {offset}",
        data.len()
    ))
}

enum PlaceError {
    Io(std::io::Error),
    Cd(ConfigDriveError),
}

impl From<std::io::Error> for PlaceError {
    fn from(e: std::io::Error) -> Self {
        PlaceError::Io(e)
    }
}

/// Find the config-2 partition or make one: (byte offset, capacity, description).
fn place(f: &dyn DiskIo, size: u64, sector: u64) -> Result<(u64, u64, String), PlaceError> {
    let table = gpt::read_table(f, sector)?;
    let parts: Vec<(u32, u64, u64)> = match &table {
        Table::Gpt { partitions, .. } => partitions
            .iter()
            .map(|p| (p.number, p.first_lba, p.last_lba - p.first_lba + 1))
            .collect(),
        Table::Mbr { partitions, .. } => partitions
            .iter()
            .map(|(n, _, s, l)| (*n, u64::from(*s), u64::from(*l)))
            .collect(),
        Table::None => return Err(PlaceError::Cd(ConfigDriveError::NoTable)),
    };
    for (n, start, len) in &parts {
        if label_at(f, start * sector)
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(LABEL))
        {
            return Ok((
                start * sector,
                len * sector,
                format!("existing partition {n} labelled config-2"),
            ));
        }
    }
    let want = MAX_BYTES / sector;
    let align = (1 << 20) / sector;
    match table {
        Table::Gpt { header, .. } => add_gpt(f, &header, size, sector, want, align),
        Table::Mbr { .. } => add_mbr(f, size, sector, want, align, &parts),
        Table::None => Err(PlaceError::Cd(ConfigDriveError::NoTable)),
    }
}

fn no_room(what: String) -> PlaceError {
    PlaceError::Cd(ConfigDriveError::NoRoom(what))
}

fn add_gpt(
    f: &dyn DiskIo,
    h: &GptHeader,
    disk: u64,
    sector: u64,
    want: u64,
    align: u64,
) -> Result<(u64, u64, String), PlaceError> {
    let mut entries = vec![0u8; h.entries_bytes() as usize];
    f.read_exact_at(&mut entries, h.entries_lba * sector)?;
    let parts = gpt::parse_entries(h, &entries);
    let end_used = parts
        .iter()
        .map(|p| p.last_lba)
        .max()
        .unwrap_or(h.first_usable);
    let start = (h.last_usable + 1 - want) / align * align;
    if start <= end_used {
        return Err(no_room(format!("the image's partitions end at sector {end_used}, no 64 MiB free at the end of the disk")));
    }
    let slot = (0..h.num_entries as usize)
        .find(|i| {
            entries[i * h.entry_size as usize..][..16]
                .iter()
                .all(|&b| b == 0)
        })
        .ok_or_else(|| no_room("the GPT has no free entry".into()))?;
    let e = &mut entries[slot * h.entry_size as usize..][..h.entry_size as usize];
    e.fill(0);
    e[..16].copy_from_slice(&LINUX_FS_GUID);
    e[16..32].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    e[32..40].copy_from_slice(&start.to_le_bytes());
    e[40..48].copy_from_slice(&h.last_usable.to_le_bytes());
    for (i, c) in LABEL.encode_utf16().enumerate() {
        e[56 + 2 * i..58 + 2 * i].copy_from_slice(&c.to_le_bytes());
    }
    let crc = crc32fast::hash(&entries);
    let mut h2 = h.clone();
    h2.raw[88..92].copy_from_slice(&crc.to_le_bytes());
    let last_lba = disk / sector - 1;
    let backup_entries = last_lba - h.entries_bytes().div_ceil(sector);
    f.write_all_at(&entries, h.entries_lba * sector)?;
    f.write_all_at(
        &h2.encode(1, h.alternate_lba, h.last_usable, h.entries_lba),
        sector,
    )?;
    if h.alternate_lba == last_lba {
        f.write_all_at(&entries, backup_entries * sector)?;
        f.write_all_at(
            &h2.encode(last_lba, 1, h.last_usable, backup_entries),
            last_lba * sector,
        )?;
    }
    let len = h.last_usable + 1 - start;
    Ok((
        start * sector,
        len * sector,
        format!("new GPT partition {}", slot + 1),
    ))
}

fn add_mbr(
    f: &dyn DiskIo,
    disk: u64,
    sector: u64,
    want: u64,
    align: u64,
    parts: &[(u32, u64, u64)],
) -> Result<(u64, u64, String), PlaceError> {
    if disk > MBR_LIMIT {
        return Err(PlaceError::Cd(ConfigDriveError::MbrTooLarge(disk)));
    }
    let mut head = [0u8; 512];
    f.read_exact_at(&mut head, 0)?;
    let total = disk / sector;
    let start = (total - want) / align * align;
    let end_used = parts.iter().map(|(_, s, l)| s + l).max().unwrap_or(1);
    if start < end_used {
        return Err(no_room(format!("the image's partitions end at sector {end_used}, no 64 MiB free at the end of the disk")));
    }
    let slot = (0..4)
        .find(|i| head[mbr::TABLE + 16 * i + 4] == 0)
        .ok_or_else(|| no_room("all four MBR primary entries are used".into()))?;
    let len = total - start;
    // Linux filesystem; the disk is at most 2 TiB, so start and length fit 32 bits.
    mbr::write_entry(
        &mut head,
        slot,
        &mbr::Partition::clamped(false, 0x83, start, len),
    );
    f.write_all_at(&head, 0)?;
    Ok((
        start * sector,
        len * sector,
        format!("new MBR partition {}", slot + 1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_base64_gzip_and_refuses_the_rest() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(gz(b"hello"));
        assert_eq!(decode(b64.as_bytes(), false).unwrap(), b"hello");
        assert!(matches!(
            decode(b"***", false),
            Err(ConfigDriveError::NotBase64(_))
        ));
        let plain = base64::engine::general_purpose::STANDARD.encode(b"not gzip");
        assert!(matches!(
            decode(plain.as_bytes(), false),
            Err(ConfigDriveError::NotGzip(_))
        ));
        assert_eq!(decode(b"raw iso bytes", true).unwrap(), b"raw iso bytes");
    }

    #[test]
    fn over_64_mib_is_refused() {
        let big = gz(&vec![0u8; (MAX_BYTES + 1) as usize]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(big);
        let e = decode(b64.as_bytes(), false).unwrap_err();
        assert!(e.to_string().contains("more than the 64 MiB limit"), "{e}");
    }
}
