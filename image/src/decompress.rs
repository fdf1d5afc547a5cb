//! Decompression chosen by magic bytes: gzip, xz or zstd; anything else passes through.

use std::io::{self, BufRead, BufReader, Read};

/// Memory an xz stream may take to decode, by default. The dictionary an image was
/// compressed with is what a decoder allocates, and a header can ask for up to 4 GiB:
/// unchecked, that exhausts a ramdisk. `xz -9` needs 65 MiB; zstd's decoder has its own
/// default limit (a 128 MiB window).
pub const XZ_MEMLIMIT: u64 = 256 << 20;

/// An xz stream whose header asks for more memory than the limit allows.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "the xz stream needs more than {} MiB of memory to decode (it was compressed with a \
     larger dictionary than this agent allows); recompress the image with a smaller \
     dictionary, e.g. `xz -9` or less",
    .limit >> 20
)]
pub struct XzMemLimitError {
    pub limit: u64,
}

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
    Xz(xz2::bufread::XzDecoder<R>, u64),
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> DecompressReader<R> {
    pub fn new(inner: R, kind: Compression) -> io::Result<DecompressReader<R>> {
        Self::with_xz_memlimit(inner, kind, XZ_MEMLIMIT)
    }

    /// [`DecompressReader::new`] with another memory limit for xz (`xz_memlimit` bytes).
    pub fn with_xz_memlimit(
        inner: R,
        kind: Compression,
        xz_memlimit: u64,
    ) -> io::Result<DecompressReader<R>> {
        Ok(match kind {
            Compression::None => DecompressReader::None(inner),
            Compression::Gzip => {
                DecompressReader::Gzip(flate2::bufread::MultiGzDecoder::new(inner))
            }
            Compression::Xz => {
                let stream =
                    xz2::stream::Stream::new_stream_decoder(xz_memlimit, xz2::stream::CONCATENATED)
                        .map_err(io::Error::from)?;
                DecompressReader::Xz(
                    xz2::bufread::XzDecoder::new_stream(inner, stream),
                    xz_memlimit,
                )
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
            DecompressReader::Xz(d, _) => d.get_mut(),
            DecompressReader::Zstd(d) => d.get_mut(),
        }
    }
}

impl<R: BufRead> Read for DecompressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = match self {
            DecompressReader::None(r) => return r.read(buf),
            DecompressReader::Gzip(d) => d.read(buf),
            DecompressReader::Xz(d, limit) => d.read(buf).map_err(|e| {
                let over = e
                    .get_ref()
                    .and_then(|s| s.downcast_ref::<xz2::stream::Error>())
                    .is_some_and(|x| matches!(x, xz2::stream::Error::MemLimit));
                if over {
                    io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        XzMemLimitError { limit: *limit },
                    )
                } else {
                    e
                }
            }),
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
pub(crate) mod tests {
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
    fn an_xz_dictionary_over_the_memory_limit_is_refused_by_name() {
        // Preset 6 compresses with an 8 MiB dictionary, which the decoder allocates.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut e = xz2::write::XzEncoder::new(vec![], 6);
        e.write_all(&data).unwrap();
        let packed = e.finish().unwrap();

        let mut r =
            DecompressReader::with_xz_memlimit(buffered(&packed[..]), Compression::Xz, 4 << 20)
                .unwrap();
        let e = r.read_to_end(&mut vec![]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::OutOfMemory, "{e}");
        assert!(
            e.to_string()
                .contains("the xz stream needs more than 4 MiB of memory to decode"),
            "{e}"
        );
        assert!(e.get_ref().unwrap().is::<XzMemLimitError>());

        // Within the limit (and the default) it decodes.
        for limit in [16 << 20, XZ_MEMLIMIT] {
            let mut r =
                DecompressReader::with_xz_memlimit(buffered(&packed[..]), Compression::Xz, limit)
                    .unwrap();
            let mut out = vec![];
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    /// A real xz file whose block header was edited to claim an LZMA2 dictionary of
    /// (almost) 4 GiB, as a hostile or careless image can: decoders allocate what the
    /// header says before they read any data.
    pub(crate) fn xz_claiming_a_4_gib_dictionary() -> Vec<u8> {
        let mut e = xz2::write::XzEncoder::new(vec![], 0);
        e.write_all(b"tiny").unwrap();
        let mut xz = e.finish().unwrap();
        // Stream header (12 bytes), then the block header: size, flags (no sizes, one
        // filter), filter id 0x21 (LZMA2), 1 property byte (the dictionary), padding, CRC32.
        let header_len = (xz[12] as usize + 1) * 4;
        assert_eq!(
            &xz[13..16],
            &[0x00, 0x21, 0x01],
            "an unexpected block header"
        );
        xz[16] = 40; // 4 GiB - 1
        let crc = crc32fast::hash(&xz[12..12 + header_len - 4]);
        xz[12 + header_len - 4..12 + header_len].copy_from_slice(&crc.to_le_bytes());
        xz
    }

    #[test]
    fn a_multi_gib_xz_dictionary_is_refused_at_the_default_limit() {
        let xz = xz_claiming_a_4_gib_dictionary();
        let (mut r, _) = DecompressReader::sniffed(buffered(&xz[..])).unwrap();
        let e = r.read_to_end(&mut vec![]).unwrap_err();
        assert!(
            e.to_string()
                .contains("the xz stream needs more than 256 MiB of memory to decode"),
            "{e}"
        );
        // Only a header that parsed (its CRC holds) gets as far as the memory check: a
        // broken edit would read as corrupt data instead.
    }

    #[test]
    fn concatenated_xz_streams_are_all_decoded() {
        let mut packed = vec![];
        for part in [&b"first "[..], b"second"] {
            let mut e = xz2::write::XzEncoder::new(vec![], 1);
            e.write_all(part).unwrap();
            packed.extend(e.finish().unwrap());
        }
        let (mut r, _) = DecompressReader::sniffed(buffered(&packed[..])).unwrap();
        let mut out = vec![];
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"first second");
    }

    #[test]
    fn garbage_after_a_gzip_magic_is_a_named_error() {
        let bad = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff];
        let (mut r, _) = DecompressReader::sniffed(buffered(&bad[..])).unwrap();
        let e = r.read_to_end(&mut vec![]).unwrap_err();
        assert!(e.to_string().contains("corrupt compressed image"), "{e}");
    }
}
