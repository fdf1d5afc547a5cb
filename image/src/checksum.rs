//! Inline image checksum: md5/sha256/sha512 chosen by `os_hash_algo` or by the length of a
//! legacy `checksum` (which may also be the URL of a sha256sum-style file).

use std::io::{self, BufRead, Read};

use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

use super::offload::OffloadHasher;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Md5,
    Sha256,
    Sha512,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }

    pub fn from_name(name: &str) -> Option<Algo> {
        match name.to_ascii_lowercase().as_str() {
            "md5" => Some(Algo::Md5),
            "sha256" => Some(Algo::Sha256),
            "sha512" => Some(Algo::Sha512),
            _ => None,
        }
    }

    /// The algorithm a legacy hex checksum uses, by its length.
    pub fn from_hex_len(len: usize) -> Option<Algo> {
        match len {
            32 => Some(Algo::Md5),
            64 => Some(Algo::Sha256),
            128 => Some(Algo::Sha512),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChecksumError {
    #[error("unsupported os_hash_algo {0:?}: use md5, sha256 or sha512")]
    UnknownAlgo(String),
    #[error("checksum {0:?} is not a hex md5/sha256/sha512 value (32, 64 or 128 hex digits) nor an http(s) URL")]
    BadValue(String),
    #[error("image_info has no checksum: set os_hash_algo and os_hash_value (or checksum)")]
    Missing,
    #[error("checksum file {url} has no entry for {file:?}")]
    NotInFile { url: String, file: String },
    #[error("the image digest was lost (the hashing thread stopped); retry the deploy")]
    Lost,
    #[error("image checksum mismatch: expected {algo} {expected}, got {actual}; the download is corrupt or the checksum is wrong")]
    Mismatch {
        algo: &'static str,
        expected: String,
        actual: String,
    },
}

/// The checksum an image must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub algo: Algo,
    /// Lower-case hex.
    pub hex: String,
}

/// What `image_info` asks for: a value, or a checksum file still to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Value(Expected),
    /// URL of a sha256sum-style file; the algorithm follows from the entry's length.
    Url(String),
}

fn hex_value(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_hexdigit())).then(|| v.to_ascii_lowercase())
}

/// Reads the checksum fields of `image_info` (os_hash_* win over the legacy field, as IPA).
pub fn spec(
    os_hash_algo: Option<&str>,
    os_hash_value: Option<&str>,
    checksum: Option<&str>,
) -> Result<Spec, ChecksumError> {
    if let (Some(algo), Some(value)) = (os_hash_algo, os_hash_value) {
        let a = Algo::from_name(algo).ok_or_else(|| ChecksumError::UnknownAlgo(algo.into()))?;
        let hex = hex_value(value).ok_or_else(|| ChecksumError::BadValue(value.into()))?;
        if Algo::from_hex_len(hex.len()) != Some(a) {
            return Err(ChecksumError::BadValue(value.into()));
        }
        return Ok(Spec::Value(Expected { algo: a, hex }));
    }
    let Some(c) = checksum.map(str::trim).filter(|c| !c.is_empty()) else {
        return Err(ChecksumError::Missing);
    };
    if c.starts_with("http://") || c.starts_with("https://") {
        return Ok(Spec::Url(c.to_owned()));
    }
    value_by_length(c)
}

fn value_by_length(c: &str) -> Result<Spec, ChecksumError> {
    let hex = hex_value(c).ok_or_else(|| ChecksumError::BadValue(c.into()))?;
    let algo = Algo::from_hex_len(hex.len()).ok_or_else(|| ChecksumError::BadValue(c.into()))?;
    Ok(Spec::Value(Expected { algo, hex }))
}

/// Finds the image's entry in a checksum file: `HASH  name`, `HASH *name`, BSD
/// `SHA256 (name) = HASH`, or a file holding just one hash. The entry's name matches the
/// image URL's file name, or its path when the entry names a path.
pub fn from_checksum_file(
    text: &str,
    file_url: &str,
    image_url: &str,
) -> Result<Expected, ChecksumError> {
    let path = image_url
        .split(['?', '#'])
        .next()
        .unwrap_or(image_url)
        .splitn(4, '/')
        .nth(3)
        .unwrap_or("");
    let path = format!("/{path}");
    let base = path.rsplit('/').next().unwrap_or("");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if let [only] = lines.as_slice() {
        if !only.contains(char::is_whitespace) {
            if let Ok(Spec::Value(e)) = value_by_length(only) {
                return Ok(e);
            }
        }
    }
    let matches = |name: &str| {
        let name = name.trim().trim_start_matches('*').trim_start_matches("./");
        !name.is_empty() && (name == base || path.ends_with(&format!("/{name}")))
    };
    for line in lines {
        let (hash, name) = if let Some(rest) = line.split_once(" (").map(|(_, r)| r) {
            // BSD style: ALGO (name) = hash
            match rest.rsplit_once(") = ") {
                Some((name, hash)) => (hash, name),
                None => continue,
            }
        } else {
            match line.split_once(char::is_whitespace) {
                Some((hash, name)) => (hash, name),
                None => continue,
            }
        };
        if matches(name) {
            if let Ok(Spec::Value(e)) = value_by_length(hash) {
                return Ok(e);
            }
        }
    }
    Err(ChecksumError::NotInFile {
        url: file_url.into(),
        file: base.into(),
    })
}

/// A running digest of one of the supported algorithms.
#[derive(Clone)]
pub enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algo: Algo) -> Hasher {
        match algo {
            Algo::Md5 => Hasher::Md5(Md5::new()),
            Algo::Sha256 => Hasher::Sha256(Sha256::new()),
            Algo::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }
    pub fn finish_hex(self) -> String {
        match self {
            Hasher::Md5(h) => hex::encode(h.finalize()),
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// Hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Option<OffloadHasher>,
    /// Some bytes went by unhashed: the digest is lost.
    lost: bool,
    pub bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, algo: Option<Algo>) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: algo.map(|a| OffloadHasher::new(Hasher::new(a))),
            lost: false,
            bytes: 0,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Compare the digest of everything read with `expected`.
    pub fn verify(&mut self, expected: &Expected) -> Result<(), ChecksumError> {
        if self.lost {
            return Err(ChecksumError::Lost);
        }
        let actual = match self.hasher.take() {
            Some(h) => h.finish_hex().ok_or(ChecksumError::Lost)?,
            None => Hasher::new(expected.algo).finish_hex(),
        };
        if actual == expected.hex {
            Ok(())
        } else {
            Err(ChecksumError::Mismatch {
                algo: expected.algo.name(),
                expected: expected.hex.clone(),
                actual,
            })
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Bytes are hashed as they are consumed, straight from the inner reader's buffer.
impl<R: BufRead> BufRead for HashingReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        // The bytes consumed are still in the inner buffer: fill_buf returns them without I/O.
        let n = match self.inner.fill_buf() {
            Ok(buf) => {
                let n = n.min(buf.len());
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&buf[..n]);
                }
                n
            }
            Err(_) => {
                // Cannot happen with a buffered reader; if it did, the digest is not that
                // of the image any more: verification must fail rather than pass.
                self.hasher = None;
                self.lost = true;
                n
            }
        };
        self.bytes += n as u64;
        self.inner.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn os_hash_wins_and_legacy_goes_by_length() {
        let s = spec(Some("sha256"), Some(SHA256_ABC), Some("ffff")).unwrap();
        assert_eq!(
            s,
            Spec::Value(Expected {
                algo: Algo::Sha256,
                hex: SHA256_ABC.into()
            })
        );
        let md5 = "900150983cd24fb0d6963f7d28e17f72";
        let s = spec(None, None, Some(md5)).unwrap();
        assert_eq!(
            s,
            Spec::Value(Expected {
                algo: Algo::Md5,
                hex: md5.into()
            })
        );
        let s = spec(None, None, Some(&"A".repeat(128))).unwrap();
        assert!(matches!(
            s,
            Spec::Value(Expected {
                algo: Algo::Sha512,
                ..
            })
        ));
        assert_eq!(
            spec(None, None, Some("https://h/SHA256SUMS")).unwrap(),
            Spec::Url("https://h/SHA256SUMS".into())
        );
    }

    #[test]
    fn bad_checksum_fields_are_named() {
        assert_eq!(
            spec(Some("crc32"), Some("00"), None),
            Err(ChecksumError::UnknownAlgo("crc32".into()))
        );
        assert!(matches!(
            spec(None, None, Some("abc")),
            Err(ChecksumError::BadValue(_))
        ));
        assert!(matches!(
            spec(Some("md5"), Some(SHA256_ABC), None),
            Err(ChecksumError::BadValue(_))
        ));
        assert_eq!(spec(None, None, None), Err(ChecksumError::Missing));
        assert!(ChecksumError::Missing.to_string().contains("os_hash_value"));
    }

    #[test]
    fn checksum_files_match_by_name_and_path() {
        let text = format!(
            "# comment\n{}  other.img\n{SHA256_ABC} *images/disk.qcow2\n",
            "0".repeat(64)
        );
        let e = from_checksum_file(&text, "u", "http://h:1/x/images/disk.qcow2?a=b").unwrap();
        assert_eq!(e.hex, SHA256_ABC);
        let e = from_checksum_file(
            &format!("{SHA256_ABC}  disk.raw\n"),
            "u",
            "http://h/a/disk.raw",
        )
        .unwrap();
        assert_eq!(e.algo, Algo::Sha256);
        let bsd = format!("SHA256 (disk.raw) = {SHA256_ABC}\n");
        assert_eq!(
            from_checksum_file(&bsd, "u", "http://h/disk.raw")
                .unwrap()
                .hex,
            SHA256_ABC
        );
        let only = format!("{SHA256_ABC}\n");
        assert_eq!(
            from_checksum_file(&only, "u", "http://h/any").unwrap().hex,
            SHA256_ABC
        );
        let err = from_checksum_file(&text, "http://h/SUMS", "http://h/nope.img").unwrap_err();
        assert!(
            err.to_string().contains("no entry for \"nope.img\""),
            "{err}"
        );
    }

    #[test]
    fn hashing_reader_verifies() {
        let mut r = HashingReader::new(&b"abc"[..], Some(Algo::Sha256));
        let mut out = vec![];
        r.read_to_end(&mut out).unwrap();
        let good = Expected {
            algo: Algo::Sha256,
            hex: SHA256_ABC.into(),
        };
        assert_eq!(r.verify(&good), Ok(()));
        let mut r = HashingReader::new(&b"abd"[..], Some(Algo::Sha256));
        r.read_to_end(&mut out).unwrap();
        let err = r.verify(&good).unwrap_err();
        assert!(err.to_string().contains("mismatch"));
    }
}
