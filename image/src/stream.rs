//! An `image_info` streamed onto a [`BlockSink`]: resolve the expected checksum (fetching
//! a checksum file if it is a URL), open the HTTP source, run the pipeline, and wipe the
//! sink's partition signatures on failure.

use ferrite_proto::image::ImageInfo;
use tokio::runtime::Handle;

use crate::checksum::{self, Expected, Spec};
use crate::disk::wipe;
use crate::http::{self, HttpConfig, HttpSource};
use crate::pipeline::{write_image, ImageError, Input, Outcome};
use crate::progress::{Phase, Progress};
use crate::qcow2::RangeRead;
use crate::sink::BlockSink;

/// Largest checksum file fetched.
const CHECKSUM_FILE_LIMIT: usize = 4 << 20;

/// The image's expected checksum, fetching a checksum file if `checksum` is a URL.
pub fn expected_checksum(
    rt: &Handle,
    info: &ImageInfo,
    cfg: &HttpConfig,
) -> Result<Expected, ImageError> {
    match checksum::spec(
        info.os_hash_algo.as_deref(),
        info.os_hash_value.as_deref(),
        info.checksum.as_deref(),
    )? {
        Spec::Value(e) => Ok(e),
        Spec::Url(url) => {
            let client = http::client(cfg)?;
            let text = http::fetch_text(rt, &client, &url, cfg, CHECKSUM_FILE_LIMIT)?;
            let image_url = info.urls.first().map(String::as_str).unwrap_or("");
            Ok(checksum::from_checksum_file(&text, &url, image_url)?)
        }
    }
}

/// Resolve the checksum, download `info`'s image and run the pipeline onto `sink` (a local
/// disk's writer or a remote LUN). Must run on a blocking thread. On any failure the
/// sink's partition tables are wiped.
pub fn stream_image(
    rt: &Handle,
    info: &ImageInfo,
    sink: &mut dyn BlockSink,
    cfg: &HttpConfig,
    progress: &Progress,
) -> Result<Outcome, ImageError> {
    let fail = |sink: &mut dyn BlockSink, e: ImageError| -> ImageError {
        progress.set_phase(Phase::Failed);
        match wipe::wipe_partition_signatures(sink) {
            Ok(()) => e,
            Err(wipe) => ImageError::WipeFailed {
                error: Box::new(e),
                wipe,
            },
        }
    };
    let expected = match expected_checksum(rt, info, cfg) {
        Ok(e) => e,
        Err(e) => return Err(fail(sink, e)),
    };
    let client = match http::client(cfg) {
        Ok(c) => c,
        Err(e) => return Err(fail(sink, e.into())),
    };
    let source = match HttpSource::open(rt, &client, &info.urls, cfg) {
        Ok(s) => s,
        Err(e) => return Err(fail(sink, e.into())),
    };
    let input = Input {
        len: source.len(),
        ranges: source
            .ranges()
            .map(|r| Box::new(r) as Box<dyn RangeRead + Send>),
        declared_format: info.disk_format.clone(),
        reader: source,
    };
    write_image(input, Some(&expected), sink, progress)
}
