//! `image_info` of `standby.prepare_image` and of the `write_image` deploy step
//! (CONTRACT.md §5), as Ironic's `agent.py` builds it.
//!
//! Every field but `id` and `urls` is optional: Ironic leaves out what the node does not
//! set (or sends `null`), and both parse as `None`. Fields this agent has no use for
//! (`container_format`, `proxies`, `kernel`, ...) are kept in `other`, so what Ironic sent
//! is not lost on the way through.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `image_type` of a whole-disk image (the default).
pub const WHOLE_DISK: &str = "whole-disk";
/// `image_type` of a partition image: the agent lays out the disk.
pub const PARTITION: &str = "partition";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub id: String,
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_format: Option<String>,
    /// [`WHOLE_DISK`] or [`PARTITION`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hash_algo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hash_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_raw_images: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_ephemeral: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_download_source: Option<String>,
    /// Partition images: `gpt` (default) or `msdos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_label: Option<String>,
    /// Partition images: `uefi` (default; an ESP is created) or `bios` (a BIOS boot
    /// partition on GPT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_boot_mode: Option<String>,
    /// Partition images: `local` (the only one Ironic still supports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_option: Option<String>,
    /// Whatever else Ironic sent, untouched.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ImageInfo {
    /// Whether this is a partition image (anything else is written whole).
    pub fn is_partition(&self) -> bool {
        self.image_type.as_deref() == Some(PARTITION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ironic_whole_disk_image_info_round_trips() {
        // ironic/drivers/modules/agent.py write_image(), whole-disk image, glance
        // image with a proxy configured.
        let ironic = json!({
            "id": "5d6b2a5c-8f1e-4f4e-9a7e-0c2b1d3e4f5a",
            "urls": ["http://swift:8080/v1/AUTH_x/glance/5d6b2a5c?temp_url_sig=ab&temp_url_expires=1"],
            "disk_format": "qcow2",
            "container_format": "bare",
            "stream_raw_images": true,
            "checksum": "d41d8cd98f00b204e9800998ecf8427e",
            "os_hash_algo": "sha512",
            "os_hash_value": "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
            "proxies": {"http": "http://proxy:3128"},
            "no_proxy": ".example.org",
            "node_uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123",
            "image_type": "whole-disk",
        });
        let info: ImageInfo = serde_json::from_value(ironic.clone()).unwrap();
        assert_eq!(info.disk_format.as_deref(), Some("qcow2"));
        assert_eq!(info.os_hash_algo.as_deref(), Some("sha512"));
        assert_eq!(info.stream_raw_images, Some(true));
        assert!(!info.is_partition());
        assert_eq!(info.other["container_format"], "bare");
        assert_eq!(info.other["proxies"]["http"], "http://proxy:3128");
        assert_eq!(serde_json::to_value(&info).unwrap(), ironic);
    }

    #[test]
    fn ironic_partition_image_info_round_trips() {
        // The same for a partition image: the layout keys come from instance_info
        // (`null` when unset), then boot_option, deploy_boot_mode, disk_label.
        let ironic = json!({
            "id": "cirros-0.6.2-x86_64-disk",
            "urls": ["http://10.0.2.2:8080/cirros.img"],
            "disk_format": null,
            "container_format": null,
            "stream_raw_images": true,
            "checksum": "c8fc807773e5354afe61636071771906",
            "node_uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123",
            "kernel": null,
            "ramdisk": null,
            "root_gb": "10",
            "root_mb": 10240,
            "swap_mb": 0,
            "ephemeral_mb": 2048,
            "ephemeral_format": "ext4",
            "configdrive": null,
            "preserve_ephemeral": false,
            "image_type": "partition",
            "deploy_boot_mode": "uefi",
            "boot_option": "local",
            "disk_label": "gpt",
        });
        let info: ImageInfo = serde_json::from_value(ironic.clone()).unwrap();
        assert!(info.is_partition());
        assert_eq!(info.disk_format, None, "null is the same as absent");
        assert_eq!(info.root_mb, Some(10240));
        assert_eq!(info.swap_mb, Some(0));
        assert_eq!(info.ephemeral_format.as_deref(), Some("ext4"));
        assert_eq!(info.preserve_ephemeral, Some(false));
        assert_eq!(info.boot_option.as_deref(), Some("local"));
        assert_eq!(info.other["root_gb"], "10");
        // Ironic's `null` for a field we know reads as `None` and is then left out, which
        // every reader (IPA's `.get`, serde's `default`) takes the same way; the others
        // pass through untouched.
        let back = serde_json::to_value(&info).unwrap();
        let mut expected = ironic.clone();
        expected.as_object_mut().unwrap().remove("disk_format");
        assert_eq!(back, expected);
        assert_eq!(serde_json::from_value::<ImageInfo>(back).unwrap(), info);
    }

    #[test]
    fn the_smallest_image_info_is_id_and_urls() {
        let info: ImageInfo =
            serde_json::from_value(json!({"id": "x", "urls": ["http://h/x"]})).unwrap();
        assert_eq!(info.urls, ["http://h/x"]);
        assert_eq!(info.image_type, None);
        for missing in [json!({"id": "x"}), json!({"urls": []})] {
            let e = serde_json::from_value::<ImageInfo>(missing).unwrap_err();
            assert!(e.to_string().contains("missing field"), "{e}");
        }
    }
}
