//! The image pipeline: transport → checksum → decompression → qcow2 or raw → hold-back
//! → sparse → sink. Nothing bootable reaches the disk before the checksum passed; on
//! any failure the partition table signatures are wiped.

use std::io::{self, BufRead, BufReader};

use ferrite_proto::error::chain;

use super::checksum::{ChecksumError, Expected, HashingReader};
use super::decompress::{peek, Compression, DecompressReader, TransportError};
use super::holdback::HoldBack;
use super::http::HttpError;
use super::progress::{Phase, Progress};
use super::qcow2::{self, ConvertError, Converted, RangeRead};
use super::sink::BlockSink;
use super::source::CountingReader;
use super::sparse::SparseSink;
use crate::disk::wipe::wipe_partition_signatures;

const READ_BUF: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    #[error("{0}")]
    Download(String),
    #[error("the image is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    XzMemLimit(#[from] crate::decompress::XzMemLimitError),
    #[error("reading the image")]
    Read(#[source] io::Error),
    #[error(transparent)]
    Qcow2(#[from] ConvertError),
    #[error(
        "the image is larger than the {disk}-byte disk; choose a larger disk or a smaller image"
    )]
    TooLarge { disk: u64 },
    #[error("writing the disk")]
    Write(#[source] io::Error),
    #[error("image_info says disk_format {declared:?} but the image is {found}; fix disk_format or the image")]
    FormatMismatch {
        declared: String,
        found: &'static str,
    },
    #[error("{error}; wiping the partition tables afterwards failed too ({wipe}): do not boot this disk")]
    WipeFailed {
        error: Box<ImageError>,
        wipe: io::Error,
    },
}

fn classify(e: io::Error) -> ImageError {
    if let Some(t) = e.get_ref().and_then(|x| x.downcast_ref::<TransportError>()) {
        return ImageError::Download(t.0.clone());
    }
    if let Some(m) = e
        .get_ref()
        .and_then(|x| x.downcast_ref::<crate::decompress::XzMemLimitError>())
    {
        return ImageError::XzMemLimit(*m);
    }
    if e.kind() == io::ErrorKind::InvalidData {
        return ImageError::Corrupt(e.to_string());
    }
    ImageError::Read(e)
}

/// The bytes of one image as they arrive (buffered: the pipeline reads the buffer in place).
pub struct Input<R> {
    pub reader: R,
    /// Length of the transported file, when known.
    pub len: Option<u64>,
    /// Random access to the same file, when the transport has it.
    pub ranges: Option<Box<dyn RangeRead + Send>>,
    /// `image_info.disk_format` ("raw" or "qcow2"); the bytes must agree with it.
    pub declared_format: Option<String>,
}

/// What a successful write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub format: &'static str,
    pub compression: &'static str,
    /// Bytes transported.
    pub image_bytes: u64,
    /// Size of the raw image written to the disk.
    pub disk_bytes: u64,
    /// Zero bytes not written because the target already read back zeroes.
    pub zero_bytes_skipped: u64,
    pub checksum: Option<&'static str>,
    pub qcow2: Option<Converted>,
}

/// Write the image from `input` onto `sink`, verifying it against `expected`.
pub fn write_image<R: BufRead>(
    input: Input<R>,
    expected: Option<&Expected>,
    sink: &mut dyn BlockSink,
    progress: &Progress,
) -> Result<Outcome, ImageError> {
    progress.set_total(input.len);
    progress.set_phase(Phase::Downloading);
    match run(input, expected, &mut *sink, progress) {
        Ok(o) => {
            progress.set_phase(Phase::Done);
            Ok(o)
        }
        Err(error) => {
            progress.set_phase(Phase::Failed);
            tracing::error!(
                error = chain(&error),
                "image write failed; wiping partition tables"
            );
            match wipe_partition_signatures(sink) {
                Ok(()) => Err(error),
                Err(wipe) => Err(ImageError::WipeFailed {
                    error: Box::new(error),
                    wipe,
                }),
            }
        }
    }
}

fn run<R: BufRead>(
    input: Input<R>,
    expected: Option<&Expected>,
    sink: &mut dyn BlockSink,
    progress: &Progress,
) -> Result<Outcome, ImageError> {
    // The source's own buffer is read in place (no copy into a reader buffer here).
    let mut outer = HashingReader::new(
        CountingReader::new(input.reader, progress.clone()),
        expected.map(|e| e.algo),
    );
    let kind = Compression::sniff(&peek(&mut outer, 8).map_err(classify)?);
    let disk = sink.size();
    let declared = input.declared_format.as_deref();
    let mut hold = HoldBack::new(SparseSink::new(sink));
    let (extent, q) = if kind == Compression::None {
        let mut ranges = input.ranges;
        let ranges = ranges.as_mut().map(|r| &mut **r as &mut dyn RangeRead);
        convert_or_copy(&mut outer, ranges, input.len, &mut hold, disk, declared)?
    } else {
        let mut dec = BufReader::with_capacity(
            READ_BUF,
            DecompressReader::new(&mut outer, kind).map_err(classify)?,
        );
        convert_or_copy(&mut dec, None, None, &mut hold, disk, declared)?
    };
    // Hash what a decompressor left unread (padding after the last frame).
    io::copy(&mut outer, &mut io::sink()).map_err(classify)?;
    if let Some(e) = expected {
        progress.set_phase(Phase::Verifying);
        outer.verify(e)?;
    }
    let image_bytes = outer.bytes;
    progress.set_phase(Phase::Committing);
    hold.commit(extent).map_err(ImageError::Write)?;
    progress.set_phase(Phase::Syncing);
    hold.flush().map_err(ImageError::Write)?;
    let skipped = hold.into_inner().skipped;
    Ok(Outcome {
        format: if q.is_some() { "qcow2" } else { "raw" },
        compression: kind.name(),
        image_bytes,
        disk_bytes: extent,
        zero_bytes_skipped: skipped,
        checksum: expected.map(|e| e.algo.name()),
        qcow2: q,
    })
}

fn convert_or_copy<R: io::BufRead>(
    src: &mut R,
    ranges: Option<&mut dyn RangeRead>,
    len: Option<u64>,
    out: &mut dyn BlockSink,
    disk: u64,
    declared: Option<&str>,
) -> Result<(u64, Option<Converted>), ImageError> {
    let head = peek(src, 4).map_err(classify)?;
    let is_qcow2 = head == qcow2::MAGIC;
    let found = if is_qcow2 { "qcow2" } else { "raw" };
    match declared.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => {}
        Some(d) if d == found => {}
        // IPA's format inspector: a declared raw image must not be qcow2 and vice versa.
        Some(d) => {
            return Err(ImageError::FormatMismatch {
                declared: d.to_owned(),
                found,
            });
        }
    }
    if is_qcow2 {
        let c = qcow2::convert(src, ranges, len, out).map_err(|e| match e {
            ConvertError::Read(io) => classify(io),
            ConvertError::TooLarge { .. } => ImageError::TooLarge { disk },
            e => ImageError::Qcow2(e),
        })?;
        return Ok((c.virtual_size, Some(c)));
    }
    if let Some(l) = len.filter(|&l| l > disk) {
        tracing::warn!(image = l, disk, "raw image larger than the disk");
        return Err(ImageError::TooLarge { disk });
    }
    // Write straight from the reader's buffer: no staging copy on this thread.
    let mut offset = 0u64;
    loop {
        let data = match src.fill_buf() {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(classify(e)),
        };
        if data.is_empty() {
            return Ok((offset, None));
        }
        let n = data.len();
        if offset + n as u64 > disk {
            return Err(ImageError::TooLarge { disk });
        }
        out.write_at(offset, data).map_err(ImageError::Write)?;
        src.consume(n);
        offset += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemSink;

    #[test]
    fn an_xz_image_over_the_memory_limit_fails_with_the_limit_named() {
        let xz = crate::decompress::tests::xz_claiming_a_4_gib_dictionary();
        let input = Input {
            reader: &xz[..],
            len: Some(xz.len() as u64),
            ranges: None,
            declared_format: None,
        };
        let mut sink = MemSink::new(1 << 20, true);
        let e = write_image(input, None, &mut sink, &Progress::new()).unwrap_err();
        assert!(matches!(e, ImageError::XzMemLimit(_)), "{e:?}");
        assert!(
            chain(&e).starts_with("the xz stream needs more than 256 MiB of memory to decode"),
            "{}",
            chain(&e)
        );
    }
}
