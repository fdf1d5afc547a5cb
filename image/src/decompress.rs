//! Decompression chosen by magic bytes: gzip, xz or zstd; anything else passes through.

use std::io::{self, BufRead, BufReader, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// Which compression `head` (the first bytes of a stream) starts with.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// Peek at least `n` bytes (fewer only at end of stream) without consuming them.
pub fn peek<R: BufRead>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    // Only what is buffered is looked at: a source must not hand over a first buffer
    // shorter than a magic number unless the image is that short (HttpSource drops a
    // connection's first bytes when it broke before SNIFF_BYTES; files fill whole
    // buffers). Fewer bytes would make a compressed image look raw.
    let buf = r.fill_buf()?;
    Ok(buf[..buf.len().min(n)].to_vec())
}

/// A reader that decompresses what it reads (or not, for `Compression::None`).
pub enum DecompressReader<R: BufRead> {
    None(R),
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    Xz(xz2::bufread::XzDecoder<R>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> DecompressReader<R> {
    pub fn new(inner: R, kind: Compression) -> io::Result<DecompressReader<R>> {
        Ok(match kind {
            Compression::None => DecompressReader::None(inner),
            Compression::Gzip => {
                DecompressReader::Gzip(flate2::bufread::MultiGzDecoder::new(inner))
            }
            Compression::Xz => {
                DecompressReader::Xz(xz2::bufread::XzDecoder::new_multi_decoder(inner))
            }
            Compression::Zstd => {
                DecompressReader::Zstd(zstd::stream::read::Decoder::with_buffer(inner)?)
            }
        })
    }

    /// Sniff the stream and wrap it accordingly.
    pub fn sniffed(mut inner: R) -> io::Result<(DecompressReader<R>, Compression)> {
        let kind = Compression::sniff(&peek(&mut inner, 6)?);
        Ok((DecompressReader::new(inner, kind)?, kind))
    }

    pub fn get_mut(&mut self) -> &mut R {
        match self {
            DecompressReader::None(r) => r,
            DecompressReader::Gzip(d) => d.get_mut(),
            DecompressReader::Xz(d) => d.get_mut(),
            DecompressReader::Zstd(d) => d.get_mut(),
        }
    }
}

impl<R: BufRead> Read for DecompressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = match self {
            DecompressReader::None(r) => return r.read(buf),
            DecompressReader::Gzip(d) => d.read(buf),
            DecompressReader::Xz(d) => d.read(buf),
            DecompressReader::Zstd(d) => d.read(buf),
        };
        // Errors from the transport pass through as they are; a decoder's own complaint
        // names the format so users know the image (not the network) is at fault.
        r.map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::Other
                if e.get_ref().is_none_or(|s| !s.is::<TransportError>()) =>
            {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("corrupt compressed image: {e}"),
                )
            }
            _ => e,
        })
    }
}

/// Marker wrapped around errors of the download, so that layers above can tell them apart
/// from errors in the data.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// A buffered reader of a size fit for decompressors and the qcow2 walker.
pub fn buffered<R: Read>(r: R) -> BufReader<R> {
    BufReader::with_capacity(256 << 10, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(kind: Compression, data: &[u8]) -> Vec<u8> {
        let packed = match kind {
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut e = xz2::write::XzEncoder::new(vec![], 1);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 1).unwrap(),
            Compression::None => data.to_vec(),
        };
        let (mut r, found) = DecompressReader::sniffed(buffered(&packed[..])).unwrap();
        assert_eq!(found, kind);
        let mut out = vec![];
        r.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn each_format_is_sniffed_and_decoded() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 / 13) as u8).collect();
        for kind in [
            Compression::None,
            Compression::Gzip,
            Compression::Xz,
            Compression::Zstd,
        ] {
            assert_eq!(roundtrip(kind, &data), data, "{kind:?}");
        }
    }

    #[test]
    fn garbage_after_a_gzip_magic_is_a_named_error() {
        let bad = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff];
        let (mut r, _) = DecompressReader::sniffed(buffered(&bad[..])).unwrap();
        let e = r.read_to_end(&mut vec![]).unwrap_err();
        assert!(e.to_string().contains("corrupt compressed image"), "{e}");
    }
}
