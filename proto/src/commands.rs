//! Agent command names, parameters and results (CONTRACT.md §1): what the conductor sends
//! in `POST /v1/commands/` and reads back from `command_result` / `command_error`, and
//! what the agent parses and answers. Field names, optionality and defaults are those of
//! Ironic and ironic-python-agent; both sides use these types, so a field renamed on one
//! side fails to compile on the other.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::image::ImageInfo;

pub const PREPARE_IMAGE: &str = "standby.prepare_image";
pub const GET_PARTITION_UUIDS: &str = "standby.get_partition_uuids";
pub const SYNC: &str = "standby.sync";
pub const GET_CLEAN_STEPS: &str = "clean.get_clean_steps";
pub const EXECUTE_CLEAN_STEP: &str = "clean.execute_clean_step";
pub const GET_DEPLOY_STEPS: &str = "deploy.get_deploy_steps";
pub const EXECUTE_DEPLOY_STEP: &str = "deploy.execute_deploy_step";
pub const GET_SERVICE_STEPS: &str = "service.get_service_steps";
pub const EXECUTE_SERVICE_STEP: &str = "service.execute_service_step";
pub const FINALIZE_RESCUE: &str = "rescue.finalize_rescue";
pub const INSTALL_BOOTLOADER: &str = "image.install_bootloader";
pub const START_ISCSI_TARGET: &str = "iscsi.start_iscsi_target";
pub const STOP_ISCSI_TARGET: &str = "iscsi.stop_iscsi_target";
/// Ferrite's own: boot the OS just written with kexec, skipping the firmware.
pub const KEXEC: &str = "ferrite.kexec";

/// Parameters of a command as the wire carries them (`params`); `{}` for a type that does
/// not serialize to an object.
pub fn to_params<T: Serialize>(p: &T) -> Map<String, Value> {
    match serde_json::to_value(p) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// `standby.prepare_image` parameters; also the `args` of the `write_image` deploy step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareImageParams {
    pub image_info: ImageInfo,
    /// Base64 of a gzipped config drive image, or an http(s) URL of one; Ironic sends
    /// `null` without one.
    #[serde(default)]
    pub configdrive: Option<String>,
}

/// `standby.prepare_image` result: IPA's one-line message, which ends with
/// `root_uuid=<id>` once the image is written, and Ferrite's details of the write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrepareImageResult {
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferrite_image: Option<Value>,
}

impl PrepareImageResult {
    /// The root UUID (or disk id) the message names, as Ironic keeps it
    /// (`root_uuid_or_disk_id`).
    pub fn root_uuid(&self) -> Option<&str> {
        self.word("root_uuid=")
    }

    /// The EFI system partition's UUID the message names (partition images in UEFI mode),
    /// which Ironic passes back to `install_bootloader`.
    pub fn efi_system_partition_uuid(&self) -> Option<&str> {
        self.word("efi_system_partition_uuid=")
    }

    fn word(&self, prefix: &str) -> Option<&str> {
        self.result
            .split_whitespace()
            .find_map(|w| w.strip_prefix(prefix))
            .map(|u| u.trim_end_matches([';', ',']))
            .filter(|u| !u.is_empty())
    }
}

/// `clean.get_clean_steps` / `deploy.get_deploy_steps` parameters: the node and its ports
/// as Ironic's API shows them (secrets masked). The result is a
/// [`crate::steps::StepsResult`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetStepsParams {
    pub node: Map<String, Value>,
    pub ports: Vec<Value>,
}

/// `clean.execute_clean_step` / `deploy.execute_deploy_step` parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteStepParams {
    /// The step as the conductor stored it: `interface`, `step`, `args`, and (not for
    /// the steps Ironic makes up itself, like `write_image`) `priority`.
    pub step: Map<String, Value>,
    pub node: Map<String, Value>,
    pub ports: Vec<Value>,
    /// The manager versions the conductor saw when it listed the clean steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_version: Option<Map<String, Value>>,
    /// Same for deploy steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_version: Option<Map<String, Value>>,
    /// Same for service steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_version: Option<Map<String, Value>>,
}

/// `rescue.finalize_rescue` parameters, as Ironic's agent client sends them: the rescue
/// user's password, as a crypt(3) hash when `hashed` (what Ironic sends), else in clear
/// (IPA's default, kept for old conductors). The result is `null`. `Debug` never shows
/// the password.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalizeRescueParams {
    #[serde(default)]
    pub rescue_password: String,
    #[serde(default)]
    pub hashed: bool,
}

impl std::fmt::Debug for FinalizeRescueParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinalizeRescueParams")
            .field("rescue_password", &crate::MASKED_SECRET)
            .field("hashed", &self.hashed)
            .finish()
    }
}

/// `image.install_bootloader` parameters, as Ironic's agent client sends them (it leaves
/// out `target_boot_mode` when it retries for an old agent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallBootloaderParams {
    /// The root partition's UUID (partition image), or the disk identifier
    /// (`root_uuid_or_disk_id`) of a whole-disk image.
    #[serde(default)]
    pub root_uuid: Option<String>,
    #[serde(default)]
    pub efi_system_part_uuid: Option<String>,
    #[serde(default)]
    pub prep_boot_part_uuid: Option<String>,
    /// `bios` or `uefi`; IPA's default is `bios`.
    #[serde(default)]
    pub target_boot_mode: Option<String>,
    /// Succeed even when the boot loader could not be set up (IPA's option of the same
    /// name; its default is false).
    #[serde(default)]
    pub ignore_bootloader_failure: Option<bool>,
}

/// The iSCSI port Ironic's iscsi deploy used.
pub const ISCSI_PORT: u16 = 3260;

fn iscsi_port() -> u16 {
    ISCSI_PORT
}

/// `iscsi.start_iscsi_target` parameters. The CHAP pair is a Ferrite extension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartIscsiTargetParams {
    pub iqn: String,
    /// 0 lets the agent pick a free port.
    #[serde(default = "iscsi_port")]
    pub portal_port: u16,
    #[serde(default)]
    pub wipe_disk_metadata: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferrite_chap_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferrite_chap_secret: Option<String>,
}

/// `iscsi.start_iscsi_target` result (IPA: `iscsi_target_iqn`; the rest is Ferrite's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartIscsiTargetResult {
    pub iscsi_target_iqn: String,
    /// The port the target listens on (differs from `portal_port` when that was 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferrite_portal_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferrite_device: Option<String>,
    /// The exported "disk" is a regular file (tests, standalone use).
    #[serde(default)]
    pub ferrite_device_is_file: bool,
}

/// `iscsi.stop_iscsi_target` result: the IQN of the target that was stopped, if any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StopIscsiTargetResult {
    #[serde(default)]
    pub ferrite_stopped: Option<String>,
}

/// `command_error` of a failed command: IPA's serialised exception.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandFailure {
    /// The error class, e.g. `ImageWriteError`.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub code: u16,
    /// IPA's fixed title of the error class.
    #[serde(default)]
    pub message: String,
    /// What went wrong, with its causes.
    #[serde(default)]
    pub details: String,
}

impl CommandFailure {
    /// One line for `last_error`: the details, after the title when they add to it.
    /// `command_error` that is not IPA's object is shown as JSON.
    pub fn describe(error: Option<&Value>) -> String {
        let Some(v) = error else {
            return "the agent reported failure without details".into();
        };
        let Ok(f) = serde_json::from_value::<CommandFailure>(v.clone()) else {
            return v.to_string();
        };
        match (f.message.as_str(), f.details.as_str()) {
            ("", "") => v.to_string(),
            (m, "") => m.to_string(),
            ("", d) => d.to_string(),
            (m, d) if m == d => m.to_string(),
            (m, d) => format!("{m}: {d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ironic_prepare_image_params_round_trip() {
        // ironic/drivers/modules/agent_client.py prepare_image(): image_info and the
        // config drive (null without one).
        let ironic = json!({
            "image_info": {"id": "img", "urls": ["http://h/img.raw"], "disk_format": "raw",
                           "container_format": "bare", "stream_raw_images": true,
                           "os_hash_algo": "sha256", "os_hash_value": "ab",
                           "node_uuid": "n1", "image_type": "whole-disk"},
            "configdrive": null,
        });
        let p: PrepareImageParams = params(ironic.clone());
        assert_eq!(p.configdrive, None);
        assert_eq!(p.image_info.other["container_format"], "bare");
        assert_eq!(serde_json::to_value(&p).unwrap(), ironic);
        let e = serde_json::from_value::<PrepareImageParams>(json!({
            "image_info": {"id": "i", "urls": []}, "bogus": 1
        }))
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
    }

    #[test]
    fn ironic_execute_step_params_round_trip() {
        // agent_client.py execute_deploy_step() for Ironic's own write_image step: the
        // step has no priority.
        let ironic = json!({
            "step": {"interface": "deploy", "step": "write_image",
                     "args": {"image_info": {"id": "i", "urls": ["http://h/i"]},
                              "configdrive": "H4sI"}},
            "node": {"uuid": "n1", "properties": {}, "instance_info": {},
                     "driver_internal_info": {}},
            "ports": [{"uuid": "p1", "address": "52:54:00:12:34:56", "pxe_enabled": true}],
            "deploy_version": {"generic_hardware_manager": "1.2"},
        });
        let p: ExecuteStepParams = params(ironic.clone());
        assert_eq!(p.step["step"], "write_image");
        assert_eq!(p.clean_version, None);
        assert_eq!(serde_json::to_value(&p).unwrap(), ironic);
        let args: PrepareImageParams =
            params(Value::Object(p.step["args"].as_object().unwrap().clone()));
        assert_eq!(args.configdrive.as_deref(), Some("H4sI"));

        let g: GetStepsParams = params(json!({"node": {"uuid": "n1"}, "ports": []}));
        assert_eq!(g.node["uuid"], "n1");
    }

    #[test]
    fn ironic_install_bootloader_params_parse() {
        // agent_client.py install_bootloader() for a whole-disk UEFI node, and its retry
        // without target_boot_mode.
        let p: InstallBootloaderParams = params(json!({
            "root_uuid": "0x1234abcd", "efi_system_part_uuid": null,
            "prep_boot_part_uuid": null, "target_boot_mode": "uefi"
        }));
        assert_eq!(p.target_boot_mode.as_deref(), Some("uefi"));
        assert_eq!(p.root_uuid.as_deref(), Some("0x1234abcd"));
        let old: InstallBootloaderParams = params(json!({
            "root_uuid": null, "efi_system_part_uuid": null, "prep_boot_part_uuid": null
        }));
        assert_eq!(old, InstallBootloaderParams::default());
    }

    #[test]
    fn iscsi_target_params_take_ironic_defaults() {
        // What Ironic's old iscsi deploy sent; the port defaults to 3260.
        let p: StartIscsiTargetParams = params(json!({
            "iqn": "iqn.2008-10.org.openstack:n1", "wipe_disk_metadata": true
        }));
        assert_eq!(p.portal_port, 3260);
        assert_eq!(p.ferrite_chap_user, None);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"iqn": "iqn.2008-10.org.openstack:n1", "portal_port": 3260,
                   "wipe_disk_metadata": true})
        );
        let r: StartIscsiTargetResult =
            params(json!({"iscsi_target_iqn": "iqn.2008-10.org.openstack:n1"}));
        assert_eq!(r.ferrite_portal_port, None);
        assert!(!r.ferrite_device_is_file);
    }

    #[test]
    fn prepare_image_result_names_the_root_uuid() {
        let r = |m: &str| PrepareImageResult {
            result: m.into(),
            ferrite_image: None,
        };
        assert_eq!(
            r("prepare_image: image (x) written to device /dev/sda root_uuid=0x1234abcd; config drive written")
                .root_uuid(),
            Some("0x1234abcd")
        );
        assert_eq!(r("written root_uuid=").root_uuid(), None);
        assert_eq!(r("no uuid").root_uuid(), None);
    }

    #[test]
    fn command_failures_read_as_one_line() {
        let ipa = json!({"type": "ImageDownloadError", "code": 500,
                         "message": "Error downloading image",
                         "details": "Download of image x failed: 404"});
        assert_eq!(
            CommandFailure::describe(Some(&ipa)),
            "Error downloading image: Download of image x failed: 404"
        );
        let f: CommandFailure = params(ipa);
        assert_eq!((f.kind.as_str(), f.code), ("ImageDownloadError", 500));
        assert_eq!(
            CommandFailure::describe(Some(&json!({"message": "same", "details": "same"}))),
            "same"
        );
        assert_eq!(CommandFailure::describe(Some(&json!("text"))), "\"text\"");
        assert_eq!(CommandFailure::describe(Some(&json!({}))), "{}");
        assert!(CommandFailure::describe(None).contains("without details"));
    }
}
