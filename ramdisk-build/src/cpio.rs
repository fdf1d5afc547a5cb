//! The cpio "newc" archive format the kernel unpacks into its initramfs: a pure codec.
//!
//! Entries are kept sorted by path with parents created first, inode numbers are assigned in
//! order and every mtime is the same, so the same entries always give the same bytes.

use std::collections::BTreeMap;

use crate::Error;

/// What an archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

/// One entry: its kind and permission bits (`0o755`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub perm: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";

impl Entry {
    fn mode(&self) -> u32 {
        let kind = match self.kind {
            Kind::Dir => S_IFDIR,
            Kind::File(_) => S_IFREG,
            Kind::Symlink(_) => S_IFLNK,
            Kind::CharDev { .. } => S_IFCHR,
        };
        kind | (self.perm & 0o7777)
    }
}

/// A set of entries keyed by relative path (`bin/sh`, no leading slash).
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

fn check_path(path: &str) -> Result<String, Error> {
    let trimmed = path.trim_start_matches('/');
    let bad = trimmed.is_empty()
        || trimmed.ends_with('/')
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || trimmed.contains('\0');
    if bad {
        return Err(Error::BadArchivePath(path.to_string()));
    }
    Ok(trimmed.to_string())
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds an entry, creating missing parent directories (0755). A path may only be
    /// added twice when both are directories.
    pub fn add(&mut self, path: &str, entry: Entry) -> Result<(), Error> {
        let path = check_path(path)?;
        let mut parent = String::new();
        for component in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(
                        parent.clone(),
                        Entry {
                            kind: Kind::Dir,
                            perm: 0o755,
                        },
                    );
                }
                Some(e) if e.kind == Kind::Dir => {}
                Some(_) => return Err(Error::ArchiveConflict(parent)),
            }
        }
        match self.entries.get(&path) {
            Some(old) if !(old.kind == Kind::Dir && entry.kind == Kind::Dir) => {
                Err(Error::ArchiveConflict(path))
            }
            _ => {
                self.entries.insert(path, entry);
                Ok(())
            }
        }
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), Error> {
        self.add(
            path,
            Entry {
                kind: Kind::Dir,
                perm,
            },
        )
    }

    pub fn file(&mut self, path: &str, data: Vec<u8>, perm: u32) -> Result<(), Error> {
        self.add(
            path,
            Entry {
                kind: Kind::File(data),
                perm,
            },
        )
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), Error> {
        self.add(
            path,
            Entry {
                kind: Kind::Symlink(target.to_string()),
                perm: 0o777,
            },
        )
    }

    pub fn char_dev(&mut self, path: &str, major: u32, minor: u32, perm: u32) -> Result<(), Error> {
        self.add(
            path,
            Entry {
                kind: Kind::CharDev { major, minor },
                perm,
            },
        )
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path.trim_start_matches('/'))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of file contents.
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match &e.kind {
                Kind::File(d) => d.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Serialises the archive (root-owned entries, all with `mtime`), trailer included.
    pub fn to_bytes(&self, mtime: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content_bytes() as usize + 128 * self.len());
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let (data, rdev): (&[u8], (u32, u32)) = match &entry.kind {
                Kind::File(d) => (d, (0, 0)),
                Kind::Symlink(t) => (t.as_bytes(), (0, 0)),
                Kind::Dir => (&[], (0, 0)),
                Kind::CharDev { major, minor } => (&[], (*major, *minor)),
            };
            let nlink = if entry.kind == Kind::Dir { 2 } else { 1 };
            write_header(
                &mut out,
                ino as u32 + 1,
                entry.mode(),
                nlink,
                mtime,
                data.len() as u32,
                rdev,
                path,
            );
            out.extend_from_slice(data);
            pad4(&mut out);
        }
        write_header(&mut out, 0, 0, 1, 0, 0, (0, 0), TRAILER);
        out
    }

    /// Parses a newc archive (as written by [`Archive::to_bytes`] or `cpio -H newc`).
    pub fn parse(mut bytes: &[u8]) -> Result<Archive, Error> {
        let mut archive = Archive::new();
        let total = bytes.len();
        loop {
            let at = total - bytes.len();
            let bad = |what: &str| Error::BadArchive(format!("{what} at byte {at}"));
            if bytes.len() < 110 || &bytes[..6] != MAGIC {
                return Err(bad("no newc header"));
            }
            let field = |i: usize| -> Result<u32, Error> {
                let s = std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i])
                    .map_err(|_| bad("non-ASCII header field"))?;
                u32::from_str_radix(s, 16).map_err(|_| bad("non-hex header field"))
            };
            let mode = field(1)?;
            let filesize = field(6)? as usize;
            let (rmajor, rminor) = (field(9)?, field(10)?);
            let namesize = field(11)? as usize;
            let name_end = 110 + namesize;
            let data_start = (name_end + 3) & !3;
            let data_end = data_start + filesize;
            if namesize == 0 || bytes.len() < data_end {
                return Err(bad("truncated entry"));
            }
            let name = std::str::from_utf8(&bytes[110..name_end - 1])
                .map_err(|_| bad("non-UTF-8 name"))?
                .to_string();
            if name == TRAILER {
                return Ok(archive);
            }
            let data = bytes[data_start..data_end].to_vec();
            let kind = match mode & 0o170000 {
                S_IFDIR => Kind::Dir,
                S_IFREG => Kind::File(data),
                S_IFLNK => Kind::Symlink(
                    String::from_utf8(data).map_err(|_| bad("non-UTF-8 link target"))?,
                ),
                S_IFCHR => Kind::CharDev {
                    major: rmajor,
                    minor: rminor,
                },
                _ => return Err(bad("unsupported file type")),
            };
            archive.add(
                &name,
                Entry {
                    kind,
                    perm: mode & 0o7777,
                },
            )?;
            bytes = &bytes[((data_end + 3) & !3).min(bytes.len())..];
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn write_header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdev: (u32, u32),
    name: &str,
) {
    out.extend_from_slice(MAGIC);
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        mtime,
        filesize,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check
    ];
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Archive {
        let mut a = Archive::new();
        a.file("bin/busybox", b"\x7fELF...".to_vec(), 0o755)
            .unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        a.char_dev("dev/console", 5, 1, 0o600).unwrap();
        a.file("init", b"#!/bin/sh\n".to_vec(), 0o755).unwrap();
        a.dir("proc", 0o555).unwrap();
        a
    }

    #[test]
    fn round_trips_and_creates_parents() {
        let a = sample();
        assert_eq!(a.get("bin").unwrap().kind, Kind::Dir);
        assert_eq!(a.get("dev").unwrap().kind, Kind::Dir);
        let bytes = a.to_bytes(0);
        assert_eq!(bytes.len() % 4, 0);
        let b = Archive::parse(&bytes).unwrap();
        assert_eq!(a.entries, b.entries);
    }

    #[test]
    fn same_entries_in_any_order_give_the_same_bytes() {
        let mut b = Archive::new();
        b.dir("proc", 0o555).unwrap();
        b.file("init", b"#!/bin/sh\n".to_vec(), 0o755).unwrap();
        b.char_dev("dev/console", 5, 1, 0o600).unwrap();
        b.symlink("bin/sh", "busybox").unwrap();
        b.file("bin/busybox", b"\x7fELF...".to_vec(), 0o755)
            .unwrap();
        assert_eq!(sample().to_bytes(7), b.to_bytes(7));
        assert_ne!(sample().to_bytes(7), b.to_bytes(8));
    }

    #[test]
    fn header_fields_are_newc() {
        let mut a = Archive::new();
        a.file("x", b"abc".to_vec(), 0o644).unwrap();
        let bytes = a.to_bytes(0x1234);
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(&bytes[6..14], b"00000001"); // ino
        assert_eq!(&bytes[14..22], b"000081a4"); // regular file 0644
        assert_eq!(&bytes[46..54], b"00001234"); // mtime
        assert_eq!(&bytes[54..62], b"00000003"); // size
        assert_eq!(&bytes[110..112], b"x\0");
        assert_eq!(&bytes[112..115], b"abc");
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn bad_paths_and_conflicts_are_refused() {
        let mut a = Archive::new();
        for p in ["", "/", "a/../b", "a//b", "a/", "./a"] {
            assert!(
                matches!(a.dir(p, 0o755), Err(Error::BadArchivePath(_))),
                "{p}"
            );
        }
        a.file("etc/x", vec![], 0o644).unwrap();
        assert!(matches!(
            a.file("etc/x", vec![], 0o644),
            Err(Error::ArchiveConflict(_))
        ));
        assert!(matches!(
            a.file("etc/x/y", vec![], 0o644),
            Err(Error::ArchiveConflict(_))
        ));
        a.dir("etc", 0o700).unwrap();
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            Archive::parse(b"not a cpio archive at all"),
            Err(Error::BadArchive(_))
        ));
        let bytes = sample().to_bytes(0);
        assert!(Archive::parse(&bytes[..200]).is_err());
    }
}
