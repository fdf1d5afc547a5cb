//! `ferrite-agent write-image`: the image pipeline from the command line, onto a disk named
//! explicitly (standalone use, benchmarks). Prints the outcome as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use ferrite_image::http::HttpConfig;
use ferrite_image::Progress;
use ferrite_proto::image::ImageInfo;
use serde_json::json;

use super::deploy::{deploy_whole_disk, TargetDisk};
use crate::disk::safety::Choice;

#[derive(Debug, clap::Args)]
pub struct WriteImageArgs {
    /// The target: a file or a loop device (or any disk when running in the ramdisk).
    #[arg(long)]
    pub disk: PathBuf,
    /// Image URL; give several to try them in order.
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// md5, sha256 or sha512.
    #[arg(long, default_value = "sha256")]
    pub os_hash_algo: String,
    /// Expected hex digest of the image as served.
    #[arg(long)]
    pub os_hash_value: Option<String>,
    /// Legacy checksum: hex value or URL of a sha256sum-style file.
    #[arg(long)]
    pub checksum: Option<String>,
    /// raw or qcow2: the image must be of this format.
    #[arg(long)]
    pub disk_format: Option<String>,
}

pub fn run(a: WriteImageArgs) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrite-agent: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let info = ImageInfo {
        id: a.urls[0].clone(),
        urls: a.urls,
        disk_format: a.disk_format,
        image_type: Some("whole-disk".into()),
        os_hash_algo: a.os_hash_value.as_ref().map(|_| a.os_hash_algo.clone()),
        os_hash_value: a.os_hash_value,
        checksum: a.checksum,
        ..ImageInfo::default()
    };
    let target = TargetDisk {
        path: a.disk,
        choice: Choice::Explicit,
    };
    let progress = Progress::new();
    match deploy_whole_disk(
        rt.handle(),
        &info,
        &target,
        &HttpConfig::default(),
        &progress,
    ) {
        Ok(d) => {
            let o = &d.outcome;
            println!(
                "{}",
                json!({
                    "format": o.format, "compression": o.compression, "image_bytes": o.image_bytes,
                    "disk_bytes": o.disk_bytes, "zero_bytes_skipped": o.zero_bytes_skipped,
                    "checksum": o.checksum, "backup_gpt_moved": d.backup_gpt_moved,
                    "progress": progress.snapshot(),
                })
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "ferrite-agent: writing the image to {}: {}",
                target.path.display(),
                ferrite_proto::error::chain(&e)
            );
            ExitCode::FAILURE
        }
    }
}
