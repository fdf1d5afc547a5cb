//! `image_info` of `standby.prepare_image` (CONTRACT.md §5).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub id: String,
    pub urls: Vec<String>,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub image_type: Option<String>,
    #[serde(default)]
    pub os_hash_algo: Option<String>,
    #[serde(default)]
    pub os_hash_value: Option<String>,
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub stream_raw_images: Option<bool>,
    #[serde(default)]
    pub root_mb: Option<u64>,
    #[serde(default)]
    pub swap_mb: Option<u64>,
    #[serde(default)]
    pub ephemeral_mb: Option<u64>,
    #[serde(default)]
    pub ephemeral_format: Option<String>,
    #[serde(default)]
    pub preserve_ephemeral: Option<bool>,
    #[serde(default)]
    pub node_uuid: Option<String>,
    #[serde(default)]
    pub image_download_source: Option<String>,
    /// Partition images: `gpt` (default) or `msdos`.
    #[serde(default)]
    pub disk_label: Option<String>,
    /// Partition images: `uefi` (default; an ESP is created) or `bios` (a BIOS boot
    /// partition on GPT).
    #[serde(default)]
    pub deploy_boot_mode: Option<String>,
}
