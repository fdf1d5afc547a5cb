//! A small ISO9660 reader for config drives: the volume label and every file with its
//! path, from the Joliet tree when there is one (full names), else from the primary tree
//! (names without the `;1` version). Pure and bounded: the input is untrusted.

const BLOCK: usize = 2048;
/// Deepest directory nesting followed (config drives use three levels).
const MAX_DEPTH: usize = 16;
/// Most entries read before giving up on a (malicious) image.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IsoError {
    #[error("not an ISO9660 image (no primary volume descriptor)")]
    NotIso,
    #[error("the ISO9660 image is corrupt: {0}")]
    Corrupt(String),
}

/// One entry of the image: a directory (`data` None) or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Slash-separated path from the root, no leading slash.
    pub path: String,
    pub data: Option<Vec<u8>>,
}

/// True when `data` carries an ISO9660 primary volume descriptor.
pub fn is_iso(data: &[u8]) -> bool {
    data.get(16 * BLOCK..16 * BLOCK + 6) == Some(&[1, b'C', b'D', b'0', b'0', b'1'][..])
}

fn corrupt(what: &str) -> IsoError {
    IsoError::Corrupt(what.to_owned())
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn extent(data: &[u8], lba: u32, len: u32) -> Result<&[u8], IsoError> {
    let start = lba as usize * BLOCK;
    data.get(start..start.saturating_add(len as usize))
        .ok_or_else(|| corrupt("an extent lies past the end of the image"))
}

/// The volume label and all entries.
pub fn read(data: &[u8]) -> Result<(String, Vec<Entry>), IsoError> {
    if !is_iso(data) {
        return Err(IsoError::NotIso);
    }
    // is_iso saw only the descriptor's first bytes; a truncated image may end in it.
    let pvd = data
        .get(16 * BLOCK..17 * BLOCK)
        .ok_or_else(|| corrupt("the primary volume descriptor is cut short"))?;
    let label = String::from_utf8_lossy(&pvd[40..72]).trim().to_owned();
    let mut root = &pvd[156..190];
    let mut joliet = false;
    for i in 17..64 {
        let Some(d) = data.get(i * BLOCK..(i + 1) * BLOCK) else {
            break;
        };
        if d[0] == 255 || &d[1..6] != b"CD001" {
            break;
        }
        // A supplementary descriptor with a UCS-2 escape sequence is Joliet.
        if d[0] == 2 && d[88] == 0x25 && d[89] == 0x2F && matches!(d[90], 0x40 | 0x43 | 0x45) {
            root = &d[156..190];
            joliet = true;
            break;
        }
    }
    let lba = le32(root, 2).ok_or_else(|| corrupt("root record"))?;
    let len = le32(root, 10).ok_or_else(|| corrupt("root record"))?;
    let mut out = vec![];
    walk(data, lba, len, "", joliet, 0, &mut out)?;
    Ok((label, out))
}

fn name(raw: &[u8], joliet: bool) -> String {
    let s = if joliet {
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(raw).into_owned()
    };
    let s = s.split(';').next().unwrap_or("");
    let s = s.strip_suffix('.').unwrap_or(s);
    if joliet {
        s.to_owned()
    } else {
        s.to_ascii_lowercase()
    }
}

fn walk(
    data: &[u8],
    lba: u32,
    len: u32,
    prefix: &str,
    joliet: bool,
    depth: usize,
    out: &mut Vec<Entry>,
) -> Result<(), IsoError> {
    if depth > MAX_DEPTH {
        return Err(corrupt("directories nest too deeply"));
    }
    let dir = extent(data, lba, len)?;
    let mut at = 0;
    while at < dir.len() {
        let rec_len = dir[at] as usize;
        if rec_len == 0 {
            // Records do not cross block boundaries: skip to the next block.
            at = (at / BLOCK + 1) * BLOCK;
            continue;
        }
        let rec = dir
            .get(at..at + rec_len)
            .filter(|r| r.len() >= 34)
            .ok_or_else(|| corrupt("a directory record is cut short"))?;
        at += rec_len;
        let name_len = rec[32] as usize;
        let raw = rec
            .get(33..33 + name_len)
            .ok_or_else(|| corrupt("a file name is cut short"))?;
        if raw == [0] || raw == [1] {
            continue; // "." and ".."
        }
        if out.len() >= MAX_ENTRIES {
            return Err(corrupt("too many entries"));
        }
        let n = name(raw, joliet);
        if n.is_empty() || n.contains('/') || n == "." || n == ".." {
            return Err(corrupt("a file name is empty or not a plain name"));
        }
        let path = if prefix.is_empty() {
            n
        } else {
            format!("{prefix}/{n}")
        };
        let (child, size) = (le32(rec, 2).unwrap_or(0), le32(rec, 10).unwrap_or(0));
        if rec[25] & 0x02 != 0 {
            out.push(Entry {
                path: path.clone(),
                data: None,
            });
            walk(data, child, size, &path, joliet, depth + 1, out)?;
        } else {
            // Files may share extents; never hold more than the image's own size.
            let held: usize = out
                .iter()
                .filter_map(|e| e.data.as_ref())
                .map(Vec::len)
                .sum();
            if held.saturating_add(size as usize) > data.len() {
                return Err(corrupt("the files add up to more than the image"));
            }
            let bytes = extent(data, child, size)?.to_vec();
            out.push(Entry {
                path,
                data: Some(bytes),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &[u8], lba: u32, len: u32, dir: bool) -> Vec<u8> {
        let mut r = vec![0u8; 33 + name.len() + (1 - name.len() % 2)];
        r[0] = r.len() as u8;
        r[2..6].copy_from_slice(&lba.to_le_bytes());
        r[10..14].copy_from_slice(&len.to_le_bytes());
        r[25] = if dir { 2 } else { 0 };
        r[32] = name.len() as u8;
        r[33..33 + name.len()].copy_from_slice(name);
        r
    }

    /// A primary-only image: /OPENSTACK/META.JSON;1 holding "hi".
    fn image() -> Vec<u8> {
        let mut d = vec![0u8; 24 * BLOCK];
        d[16 * BLOCK..16 * BLOCK + 6].copy_from_slice(&[1, b'C', b'D', b'0', b'0', b'1']);
        d[16 * BLOCK + 40..16 * BLOCK + 72].copy_from_slice(&[b' '; 32]);
        d[16 * BLOCK + 40..16 * BLOCK + 48].copy_from_slice(b"config-2");
        let root = record(&[0], 20, BLOCK as u32, true);
        d[16 * BLOCK + 156..16 * BLOCK + 156 + 34].copy_from_slice(&root);
        d[17 * BLOCK] = 255;
        d[17 * BLOCK + 1..17 * BLOCK + 6].copy_from_slice(b"CD001");
        let mut rootdir = record(&[0], 20, BLOCK as u32, true);
        rootdir.extend(record(&[1], 20, BLOCK as u32, true));
        rootdir.extend(record(b"OPENSTACK", 21, BLOCK as u32, true));
        d[20 * BLOCK..20 * BLOCK + rootdir.len()].copy_from_slice(&rootdir);
        let sub = record(b"META.JSON;1", 22, 2, false);
        d[21 * BLOCK..21 * BLOCK + sub.len()].copy_from_slice(&sub);
        d[22 * BLOCK..22 * BLOCK + 2].copy_from_slice(b"hi");
        d
    }

    #[test]
    fn reads_label_and_tree() {
        let (label, entries) = read(&image()).unwrap();
        assert_eq!(label, "config-2");
        assert_eq!(
            entries,
            vec![
                Entry {
                    path: "openstack".into(),
                    data: None
                },
                Entry {
                    path: "openstack/meta.json".into(),
                    data: Some(b"hi".to_vec())
                },
            ]
        );
        assert_eq!(read(&[0u8; 100]), Err(IsoError::NotIso));
    }

    /// Found by the iso9660 fuzz target: an image cut off inside its primary volume
    /// descriptor passed `is_iso` and then panicked slicing the descriptor.
    #[test]
    fn an_image_cut_inside_the_primary_descriptor_is_corrupt() {
        let img = image();
        for len in [16 * BLOCK + 6, 16 * BLOCK + 100, 17 * BLOCK - 1] {
            assert!(is_iso(&img[..len]));
            assert!(
                matches!(read(&img[..len]), Err(IsoError::Corrupt(_))),
                "{len}"
            );
        }
    }

    #[test]
    fn damaged_images_fail_without_panicking() {
        let img = image();
        let mut rng = 7u64;
        for _ in 0..2000 {
            let mut m = img.clone();
            for _ in 0..4 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let at = 16 * BLOCK + (rng as usize % (7 * BLOCK));
                m[at] = (rng >> 32) as u8;
            }
            let _ = read(&m);
        }
        // A directory pointing at itself is caught by the depth limit.
        let mut m = img.clone();
        let own = record(b"LOOP", 21, BLOCK as u32, true);
        m[21 * BLOCK + 44..21 * BLOCK + 44 + own.len()].copy_from_slice(&own);
        assert!(read(&m).is_err());
    }
}
