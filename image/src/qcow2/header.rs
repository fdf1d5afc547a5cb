//! Pure qcow2 codec: the header (v2/v3, with extensions) and L1/L2 table entries.
//! Everything an untrusted image could use to reach outside itself is refused here.

/// "QFI\xfb"
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// qemu's own limit on the L1 table (QCOW_MAX_L1_SIZE).
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// Clusters of 512 B .. 2 MiB, as qemu allows.
pub const MIN_CLUSTER_BITS: u32 = 9;
pub const MAX_CLUSTER_BITS: u32 = 21;
/// Largest virtual size accepted (qemu's QCOW_MAX_SIZE is 2^63-ish; 64 PiB is plenty).
pub const MAX_VIRTUAL_SIZE: u64 = 1 << 56;
/// qemu's own limit on the refcount table (QCOW_MAX_REFTABLE_SIZE). The walker notes
/// every refcount block the table lists, so this also bounds that memory.
pub const MAX_REFCOUNT_TABLE_BYTES: u64 = 8 << 20;
/// qemu's limit on snapshots (QCOW_MAX_SNAPSHOTS).
pub const MAX_SNAPSHOTS: u32 = 65536;
/// Host offsets in L1/L2 entries have 56 bits (bits 9..=55); no table lies beyond.
pub const MAX_HOST_OFFSET: u64 = 1 << 56;

const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_NAMES: u32 = 0x6803_f857;
const EXT_BITMAPS: u32 = 0x2385_2875;
const EXT_ENCRYPTION: u32 = 0x0537_be77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Qcow2Error {
    #[error("qcow2 header is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("not a qcow2 image (bad magic)")]
    BadMagic,
    #[error("qcow2 version {0} is not supported (only 2 and 3)")]
    Version(u32),
    #[error(
        "qcow2 image has a backing file; refusing it: flatten it with `qemu-img convert` first"
    )]
    BackingFile,
    #[error(
        "qcow2 image uses an external data file; refusing it: convert it to a self-contained image"
    )]
    DataFile,
    #[error("qcow2 image is encrypted; refusing it: the agent deploys unencrypted images only")]
    Encrypted,
    #[error("qcow2 image is marked corrupt; repair it with `qemu-img check -r all`")]
    MarkedCorrupt,
    #[error("qcow2 image uses extended L2 entries (subclusters), which are not supported")]
    ExtendedL2,
    #[error("qcow2 image needs unknown features (incompatible bits {0:#x})")]
    UnknownFeatures(u64),
    #[error("qcow2 compression type {0} is not supported (zlib and zstd are)")]
    CompressionType(u8),
    #[error("qcow2 cluster_bits {0} is out of range (9..=21)")]
    ClusterBits(u32),
    #[error("qcow2 virtual size {0} is absurd")]
    VirtualSize(u64),
    #[error("qcow2 L1 table of {entries} entries is absurd (limit {limit} bytes) or too small for the virtual size (needs {needed})")]
    L1Size {
        entries: u64,
        needed: u64,
        limit: u64,
    },
    #[error("qcow2 {what} at offset {offset:#x} is not aligned to the cluster size")]
    Misaligned { what: &'static str, offset: u64 },
    #[error("qcow2 {what} at offset {offset:#x} lies past the end of the {len}-byte image")]
    PastEnd {
        what: &'static str,
        offset: u64,
        len: u64,
    },
    #[error("qcow2 {what} at offset {offset:#x} lies beyond the {}-byte range a qcow2 image can address", MAX_HOST_OFFSET)]
    OutOfRange { what: &'static str, offset: u64 },
    #[error(
        "qcow2 refcount table of {clusters} clusters is larger than qemu's limit of {limit} bytes"
    )]
    RefcountTableSize { clusters: u32, limit: u64 },
    #[error("qcow2 refcount_order {0} is out of range (0..=6)")]
    RefcountOrder(u32),
    #[error("qcow2 image lists {0} snapshots, more than qemu's limit of {MAX_SNAPSHOTS}")]
    Snapshots(u32),
    #[error("qcow2 header extension at {0:#x} is malformed")]
    BadExtension(usize),
    #[error("qcow2 L2 entry for guest offset {guest:#x} is invalid: {why}")]
    BadL2 { guest: u64, why: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    Zlib,
    Zstd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    pub virtual_size: u64,
    pub l1_entries: u64,
    pub l1_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub compression: CompressionType,
    pub dirty: bool,
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

impl Header {
    /// Bytes needed to read `cluster_bits`: parse this much first, then the whole cluster.
    pub const PROBE: usize = 512;

    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Number of 8-byte entries per L2 table.
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / 8
    }

    /// Guest bytes covered by one L1 entry.
    pub fn l1_span(&self) -> u64 {
        self.cluster_size() * self.l2_entries()
    }

    /// Parse the header from the start of the image: `buf` should hold the first
    /// cluster (at least 512 bytes). `image_len` (if known) bounds table offsets.
    pub fn parse(buf: &[u8], image_len: Option<u64>) -> Result<Header, Qcow2Error> {
        if buf.len() < 72 {
            return Err(Qcow2Error::Truncated(buf.len()));
        }
        if buf[..4] != MAGIC {
            return Err(Qcow2Error::BadMagic);
        }
        let version = be32(buf, 4);
        if version != 2 && version != 3 {
            return Err(Qcow2Error::Version(version));
        }
        if be64(buf, 8) != 0 || be32(buf, 16) != 0 {
            return Err(Qcow2Error::BackingFile);
        }
        let cluster_bits = be32(buf, 20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(Qcow2Error::ClusterBits(cluster_bits));
        }
        let cluster = 1u64 << cluster_bits;
        let virtual_size = be64(buf, 24);
        if virtual_size > MAX_VIRTUAL_SIZE {
            return Err(Qcow2Error::VirtualSize(virtual_size));
        }
        if be32(buf, 32) != 0 {
            return Err(Qcow2Error::Encrypted);
        }
        let l1_entries = u64::from(be32(buf, 36));
        let l1_offset = be64(buf, 40);
        let refcount_table_offset = be64(buf, 48);
        let refcount_table_clusters = be32(buf, 56);
        let mut h = Header {
            version,
            cluster_bits,
            virtual_size,
            l1_entries,
            l1_offset,
            refcount_table_offset,
            refcount_table_clusters,
            compression: CompressionType::Zlib,
            dirty: false,
        };
        let needed = virtual_size.div_ceil(h.l1_span());
        if l1_entries * 8 > MAX_L1_BYTES || l1_entries < needed {
            return Err(Qcow2Error::L1Size {
                entries: l1_entries,
                needed,
                limit: MAX_L1_BYTES,
            });
        }
        if l1_entries > 0 {
            check_table("L1 table", l1_offset, l1_entries * 8, cluster, image_len)?;
        }
        let refcount_bytes = u64::from(refcount_table_clusters) * cluster;
        if refcount_bytes > MAX_REFCOUNT_TABLE_BYTES {
            return Err(Qcow2Error::RefcountTableSize {
                clusters: refcount_table_clusters,
                limit: MAX_REFCOUNT_TABLE_BYTES,
            });
        }
        if refcount_bytes > 0 {
            check_table(
                "refcount table",
                refcount_table_offset,
                refcount_bytes,
                cluster,
                image_len,
            )?;
        }
        // Snapshots are not read (only the active L1 is converted), but a header listing
        // more than qemu would open is not an image qemu made.
        let snapshots = be32(buf, 60);
        if snapshots > MAX_SNAPSHOTS {
            return Err(Qcow2Error::Snapshots(snapshots));
        }
        let mut header_len = 72usize;
        if version == 3 {
            if buf.len() < 104 {
                return Err(Qcow2Error::Truncated(buf.len()));
            }
            let incompat = be64(buf, 72);
            let known = INCOMPAT_DIRTY
                | INCOMPAT_CORRUPT
                | INCOMPAT_DATA_FILE
                | INCOMPAT_COMPRESSION
                | INCOMPAT_EXTL2;
            if incompat & INCOMPAT_DATA_FILE != 0 {
                return Err(Qcow2Error::DataFile);
            }
            if incompat & INCOMPAT_CORRUPT != 0 {
                return Err(Qcow2Error::MarkedCorrupt);
            }
            if incompat & INCOMPAT_EXTL2 != 0 {
                return Err(Qcow2Error::ExtendedL2);
            }
            if incompat & !known != 0 {
                return Err(Qcow2Error::UnknownFeatures(incompat & !known));
            }
            h.dirty = incompat & INCOMPAT_DIRTY != 0;
            let refcount_order = be32(buf, 96);
            if refcount_order > 6 {
                return Err(Qcow2Error::RefcountOrder(refcount_order));
            }
            header_len = be32(buf, 100) as usize;
            if header_len < 104 || header_len > buf.len() {
                return Err(Qcow2Error::Truncated(buf.len()));
            }
            if incompat & INCOMPAT_COMPRESSION != 0 {
                if header_len < 105 {
                    return Err(Qcow2Error::Truncated(header_len));
                }
                h.compression = match buf[104] {
                    0 => CompressionType::Zlib,
                    1 => CompressionType::Zstd,
                    t => return Err(Qcow2Error::CompressionType(t)),
                };
            }
        }
        parse_extensions(buf, header_len.next_multiple_of(8))?;
        Ok(h)
    }
}

/// A table of `bytes` at `offset`: cluster-aligned, not over the header, and inside the
/// image (its length when known, the qcow2 host range always).
fn check_table(
    what: &'static str,
    offset: u64,
    bytes: u64,
    cluster: u64,
    image_len: Option<u64>,
) -> Result<(), Qcow2Error> {
    if !offset.is_multiple_of(cluster) || offset == 0 {
        return Err(Qcow2Error::Misaligned { what, offset });
    }
    let end = offset.saturating_add(bytes);
    if end > MAX_HOST_OFFSET {
        return Err(Qcow2Error::OutOfRange { what, offset });
    }
    match image_len {
        Some(len) if end > len => Err(Qcow2Error::PastEnd { what, offset, len }),
        _ => Ok(()),
    }
}

/// Walk the header extensions; refuse those that point outside the image.
fn parse_extensions(buf: &[u8], mut at: usize) -> Result<(), Qcow2Error> {
    loop {
        if at + 8 > buf.len() {
            // qemu accepts a header whose extension area is cut by the cluster end.
            return Ok(());
        }
        let kind = be32(buf, at);
        let len = be32(buf, at + 4) as usize;
        if kind == EXT_END {
            return Ok(());
        }
        let end = (at + 8)
            .checked_add(len)
            .ok_or(Qcow2Error::BadExtension(at))?;
        if end > buf.len() {
            return Err(Qcow2Error::BadExtension(at));
        }
        match kind {
            EXT_DATA_FILE => return Err(Qcow2Error::DataFile),
            EXT_ENCRYPTION => return Err(Qcow2Error::Encrypted),
            EXT_BACKING_FORMAT | EXT_FEATURE_NAMES | EXT_BITMAPS => {}
            _ => {} // unknown extensions are ignorable by the spec
        }
        at = end.next_multiple_of(8);
    }
}

/// Offset of the L2 table an L1 entry points at (0 = unallocated).
pub fn l1_entry(raw: u64, h: &Header) -> Result<u64, Qcow2Error> {
    let off = raw & 0x00ff_ffff_ffff_fe00;
    if !off.is_multiple_of(h.cluster_size()) {
        return Err(Qcow2Error::Misaligned {
            what: "L2 table",
            offset: off,
        });
    }
    Ok(off)
}

/// What one L2 entry says about its guest cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Entry {
    /// Reads as zeroes (unallocated without backing file, or the v3 zero flag).
    Zero,
    /// Data at this cluster-aligned host offset.
    Data(u64),
    /// Compressed data: `len` bytes at host byte `offset` (len may run past the end of
    /// the file; only the stream's end bounds it).
    Compressed { offset: u64, len: u64 },
}

/// Decode one L2 entry of the cluster at `guest`.
pub fn l2_entry(raw: u64, h: &Header, guest: u64) -> Result<L2Entry, Qcow2Error> {
    const COMPRESSED: u64 = 1 << 62;
    if raw & COMPRESSED != 0 {
        let shift = 62 - (h.cluster_bits - 8);
        let offset = raw & ((1u64 << shift) - 1);
        let sectors = ((raw >> shift) & ((1u64 << (h.cluster_bits - 8)) - 1)) + 1;
        let len = (sectors * 512).saturating_sub(offset & 511);
        if offset == 0 || len == 0 {
            return Err(Qcow2Error::BadL2 {
                guest,
                why: "compressed cluster at offset 0",
            });
        }
        return Ok(L2Entry::Compressed { offset, len });
    }
    if h.version >= 3 && raw & 1 != 0 {
        return Ok(L2Entry::Zero);
    }
    let off = raw & 0x00ff_ffff_ffff_fe00;
    if off == 0 {
        return Ok(L2Entry::Zero);
    }
    if !off.is_multiple_of(h.cluster_size()) {
        return Err(Qcow2Error::BadL2 {
            guest,
            why: "data cluster not aligned",
        });
    }
    Ok(L2Entry::Data(off))
}

/// Read the i-th big-endian u64 of a table.
pub fn table_u64(table: &[u8], i: usize) -> u64 {
    be64(table, i * 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn header_bytes(
        version: u32,
        cluster_bits: u32,
        size: u64,
        l1_entries: u32,
        l1_offset: u64,
    ) -> Vec<u8> {
        let mut b = vec![0u8; 1 << cluster_bits];
        b[..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&version.to_be_bytes());
        b[20..24].copy_from_slice(&cluster_bits.to_be_bytes());
        b[24..32].copy_from_slice(&size.to_be_bytes());
        b[36..40].copy_from_slice(&l1_entries.to_be_bytes());
        b[40..48].copy_from_slice(&l1_offset.to_be_bytes());
        if version == 3 {
            b[96..100].copy_from_slice(&4u32.to_be_bytes());
            b[100..104].copy_from_slice(&104u32.to_be_bytes());
        }
        b
    }

    #[test]
    fn parses_a_v3_header() {
        let b = header_bytes(3, 16, 10 << 20, 1, 0x30000);
        let h = Header::parse(&b, Some(1 << 20)).unwrap();
        assert_eq!(
            (h.version, h.cluster_size(), h.virtual_size, h.l1_offset),
            (3, 65536, 10 << 20, 0x30000)
        );
        assert_eq!(h.compression, CompressionType::Zlib);
    }

    #[test]
    fn refuses_what_reaches_outside_the_image() {
        let mut b = header_bytes(3, 16, 1 << 20, 1, 0x30000);
        b[8..16].copy_from_slice(&0x200u64.to_be_bytes());
        b[16..20].copy_from_slice(&10u32.to_be_bytes());
        assert_eq!(Header::parse(&b, None), Err(Qcow2Error::BackingFile));

        let mut b = header_bytes(3, 16, 1 << 20, 1, 0x30000);
        b[72..80].copy_from_slice(&INCOMPAT_DATA_FILE.to_be_bytes());
        assert_eq!(Header::parse(&b, None), Err(Qcow2Error::DataFile));

        let mut b = header_bytes(3, 16, 1 << 20, 1, 0x30000);
        b[104..108].copy_from_slice(&EXT_DATA_FILE.to_be_bytes());
        b[108..112].copy_from_slice(&8u32.to_be_bytes());
        assert_eq!(Header::parse(&b, None), Err(Qcow2Error::DataFile));

        let mut b = header_bytes(2, 16, 1 << 20, 1, 0x30000);
        b[32..36].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(Header::parse(&b, None), Err(Qcow2Error::Encrypted));
    }

    #[test]
    fn refuses_absurd_tables() {
        let b = header_bytes(3, 16, 1 << 20, 8 << 20, 0x30000);
        assert!(matches!(
            Header::parse(&b, None),
            Err(Qcow2Error::L1Size { .. })
        ));
        let b = header_bytes(3, 16, 1 << 40, 1, 0x30000);
        assert!(matches!(
            Header::parse(&b, None),
            Err(Qcow2Error::L1Size { .. })
        ));
        let b = header_bytes(3, 16, 1 << 20, 1, 0x30000);
        assert!(matches!(
            Header::parse(&b, Some(0x20000)),
            Err(Qcow2Error::PastEnd { .. })
        ));
        let b = header_bytes(3, 16, 1 << 20, 1, 0x30001);
        assert!(matches!(
            Header::parse(&b, None),
            Err(Qcow2Error::Misaligned { .. })
        ));
        let b = header_bytes(3, 30, 1 << 20, 1, 0x30000_u64);
        assert!(matches!(
            Header::parse(&b[..4096], None),
            Err(Qcow2Error::ClusterBits(30))
        ));
    }

    /// `header_bytes` with a refcount table of `clusters` clusters at `offset`.
    fn with_refcount_table(mut b: Vec<u8>, offset: u64, clusters: u32) -> Vec<u8> {
        b[48..56].copy_from_slice(&offset.to_be_bytes());
        b[56..60].copy_from_slice(&clusters.to_be_bytes());
        b
    }

    #[test]
    fn bounds_the_refcount_table() {
        let ok = with_refcount_table(header_bytes(3, 16, 1 << 20, 1, 0x30000), 0x10000, 1);
        assert!(Header::parse(&ok, Some(0x40000)).is_ok());
        // Larger than qemu's 8 MiB: refused before the walker notes its entries.
        let b = with_refcount_table(header_bytes(3, 16, 1 << 20, 1, 0x30000), 0x10000, 129);
        assert_eq!(
            Header::parse(&b, None),
            Err(Qcow2Error::RefcountTableSize {
                clusters: 129,
                limit: MAX_REFCOUNT_TABLE_BYTES
            })
        );
        let b = with_refcount_table(header_bytes(3, 9, 1 << 20, 32, 0x30000), 0x200, u32::MAX);
        assert!(matches!(
            Header::parse(&b, None),
            Err(Qcow2Error::RefcountTableSize { .. })
        ));
        let b = with_refcount_table(header_bytes(3, 16, 1 << 20, 1, 0x30000), 0x10001, 1);
        assert!(matches!(
            Header::parse(&b, None),
            Err(Qcow2Error::Misaligned {
                what: "refcount table",
                ..
            })
        ));
        let b = with_refcount_table(header_bytes(3, 16, 1 << 20, 1, 0x30000), 0, 1);
        assert!(matches!(
            Header::parse(&b, None),
            Err(Qcow2Error::Misaligned { offset: 0, .. })
        ));
        // Past the end of the file, and (length unknown) past any host offset: the
        // stream walker adds the table's size to its offset.
        let b = with_refcount_table(header_bytes(3, 16, 1 << 20, 1, 0x30000), 0x50000, 1);
        assert!(matches!(
            Header::parse(&b, Some(0x40000)),
            Err(Qcow2Error::PastEnd {
                what: "refcount table",
                ..
            })
        ));
        let b = with_refcount_table(
            header_bytes(3, 16, 1 << 20, 1, 0x30000),
            u64::MAX - 0xffff,
            1,
        );
        assert!(matches!(
            Header::parse(&b, None),
            Err(Qcow2Error::OutOfRange {
                what: "refcount table",
                ..
            })
        ));
    }

    #[test]
    fn bounds_the_l1_offset_without_a_known_length() {
        let b = header_bytes(3, 16, 1 << 20, 1, u64::MAX - 0xffff);
        assert!(matches!(
            Header::parse(&b, None),
            Err(Qcow2Error::OutOfRange {
                what: "L1 table",
                ..
            })
        ));
    }

    #[test]
    fn refuses_refcount_orders_and_snapshot_counts_qemu_would_not_open() {
        let mut b = header_bytes(3, 16, 1 << 20, 1, 0x30000);
        b[96..100].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(Header::parse(&b, None), Err(Qcow2Error::RefcountOrder(7)));
        let mut b = header_bytes(3, 16, 1 << 20, 1, 0x30000);
        b[60..64].copy_from_slice(&(MAX_SNAPSHOTS + 1).to_be_bytes());
        assert_eq!(
            Header::parse(&b, None),
            Err(Qcow2Error::Snapshots(MAX_SNAPSHOTS + 1))
        );
        let msg = Qcow2Error::Snapshots(MAX_SNAPSHOTS + 1).to_string();
        assert!(msg.contains("65537 snapshots"), "{msg}");
    }

    #[test]
    fn decodes_l2_entries() {
        let h = Header::parse(&header_bytes(3, 16, 1 << 20, 1, 0x30000), None).unwrap();
        assert_eq!(l2_entry(0, &h, 0), Ok(L2Entry::Zero));
        assert_eq!(l2_entry(1, &h, 0), Ok(L2Entry::Zero));
        assert_eq!(
            l2_entry((1 << 63) | 0x50000, &h, 0),
            Ok(L2Entry::Data(0x50000))
        );
        assert!(l2_entry(0x50200, &h, 0).is_err());
        // compressed: 3 extra sectors at byte 0x50123
        let shift = 62 - 8;
        let raw = (1 << 62) | (3u64 << shift) | 0x50123;
        assert_eq!(
            l2_entry(raw, &h, 0),
            Ok(L2Entry::Compressed {
                offset: 0x50123,
                len: 4 * 512 - 0x123
            })
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for i in 0..20_000 {
            let mut b = header_bytes(if i % 2 == 0 { 2 } else { 3 }, 9, 1 << 20, 2, 0x600);
            let flips = rng.random_range(1..8);
            for _ in 0..flips {
                let at = rng.random_range(0..b.len());
                b[at] = rng.random();
            }
            let len = rng.random_range(0..=b.len());
            if let Ok(h) = Header::parse(&b[..len], Some(rng.random_range(0..1 << 22))) {
                let _ = l1_entry(rng.random(), &h);
                let _ = l2_entry(rng.random(), &h, 0);
            }
        }
    }
}
