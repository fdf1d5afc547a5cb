//! Typed models of the Redfish resources Ferrite reads and the bodies it sends (DMTF
//! schemas, only the properties we use). Unknown properties are ignored; enum values a BMC
//! invents become `Other`/`Unknown` instead of failing the whole resource, and numbers some
//! BMCs send as strings (sushy-emulator's `TotalCores: "1"`) are accepted.

use serde::{Deserialize, Deserializer, Serialize};

/// A link: `{"@odata.id": "/redfish/v1/..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Link {
    #[serde(rename = "@odata.id")]
    pub id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceRoot {
    pub id: Option<String>,
    pub redfish_version: Option<String>,
    #[serde(rename = "UUID")]
    pub uuid: Option<String>,
    /// Redfish 1.5+ (e.g. "Dell", "HPE", "Lenovo", "Supermicro"); matched by [`crate::quirks`].
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub systems: Option<Link>,
    pub managers: Option<Link>,
    pub session_service: Option<Link>,
    pub task_service: Option<Link>,
    #[serde(default)]
    pub links: RootLinks,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootLinks {
    pub sessions: Option<Link>,
}

/// Any resource collection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Collection {
    #[serde(default)]
    pub members: Vec<Link>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum PowerState {
    On,
    Off,
    PoweringOn,
    PoweringOff,
    Paused,
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// `ResetType` of `#ComputerSystem.Reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ResetType {
    On,
    ForceOff,
    GracefulShutdown,
    GracefulRestart,
    ForceRestart,
    Nmi,
    ForceOn,
    PushPowerButton,
    PowerCycle,
}

impl ResetType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResetType::On => "On",
            ResetType::ForceOff => "ForceOff",
            ResetType::GracefulShutdown => "GracefulShutdown",
            ResetType::GracefulRestart => "GracefulRestart",
            ResetType::ForceRestart => "ForceRestart",
            ResetType::Nmi => "Nmi",
            ResetType::ForceOn => "ForceOn",
            ResetType::PushPowerButton => "PushPowerButton",
            ResetType::PowerCycle => "PowerCycle",
        }
    }
}

/// `BootSourceOverrideTarget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum BootSource {
    None,
    Pxe,
    Floppy,
    Cd,
    Usb,
    Hdd,
    BiosSetup,
    Utilities,
    Diags,
    UefiShell,
    UefiTarget,
    SDCard,
    UefiHttp,
    RemoteDrive,
    UefiBootNext,
    #[serde(other)]
    Other,
}

/// `BootSourceOverrideEnabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum BootOverrideEnabled {
    Disabled,
    Once,
    Continuous,
    #[serde(other)]
    Other,
}

/// `BootSourceOverrideMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum BootMode {
    Legacy,
    #[serde(rename = "UEFI")]
    Uefi,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Boot {
    pub boot_source_override_target: Option<BootSource>,
    pub boot_source_override_enabled: Option<BootOverrideEnabled>,
    pub boot_source_override_mode: Option<BootMode>,
    #[serde(rename = "BootSourceOverrideTarget@Redfish.AllowableValues", default)]
    pub allowed_targets: Vec<serde_json::Value>,
}

/// The `Boot` object of a PATCH to a ComputerSystem; unset fields are not sent.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BootPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_source_override_target: Option<BootSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_source_override_enabled: Option<BootOverrideEnabled>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_source_override_mode: Option<BootMode>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActionTarget {
    pub target: String,
    #[serde(rename = "ResetType@Redfish.AllowableValues", default)]
    pub allowed_reset_types: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SystemActions {
    #[serde(rename = "#ComputerSystem.Reset")]
    pub reset: Option<ActionTarget>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SystemLinks {
    #[serde(default)]
    pub managed_by: Vec<Link>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorSummary {
    #[serde(default, deserialize_with = "lenient_u64")]
    pub count: Option<u64>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MemorySummary {
    #[serde(
        rename = "TotalSystemMemoryGiB",
        default,
        deserialize_with = "lenient_f64"
    )]
    pub total_system_memory_gib: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ComputerSystem {
    #[serde(rename = "@odata.id")]
    pub odata_id: Option<String>,
    #[serde(rename = "@odata.etag")]
    pub etag: Option<String>,
    pub id: String,
    pub name: Option<String>,
    #[serde(rename = "UUID")]
    pub uuid: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub power_state: Option<PowerState>,
    #[serde(default)]
    pub boot: Boot,
    pub processor_summary: Option<ProcessorSummary>,
    pub memory_summary: Option<MemorySummary>,
    pub processors: Option<Link>,
    pub memory: Option<Link>,
    pub ethernet_interfaces: Option<Link>,
    pub simple_storage: Option<Link>,
    pub storage: Option<Link>,
    pub virtual_media: Option<Link>,
    #[serde(default)]
    pub links: SystemLinks,
    #[serde(default)]
    pub actions: SystemActions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Processor {
    pub id: Option<String>,
    pub processor_type: Option<String>,
    /// "x86", "ARM", "MIPS", "Power", "IA-64"
    pub processor_architecture: Option<String>,
    /// "x86-64", "ARM-A64", …
    pub instruction_set: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub total_cores: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub total_threads: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Status {
    pub state: Option<String>,
    pub health: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EthernetInterface {
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "MACAddress")]
    pub mac_address: Option<String>,
    #[serde(rename = "PermanentMACAddress")]
    pub permanent_mac_address: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub speed_mbps: Option<u64>,
    pub link_status: Option<String>,
    #[serde(default)]
    pub status: Status,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SimpleStorage {
    pub id: Option<String>,
    #[serde(default)]
    pub devices: Vec<SimpleStorageDevice>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SimpleStorageDevice {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub capacity_bytes: Option<u64>,
    #[serde(default)]
    pub status: Status,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Storage {
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub drives: Vec<Link>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Drive {
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub capacity_bytes: Option<u64>,
    pub media_type: Option<String>,
    pub protocol: Option<String>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Manager {
    pub id: Option<String>,
    pub name: Option<String>,
    pub manager_type: Option<String>,
    pub model: Option<String>,
    pub firmware_version: Option<String>,
    #[serde(rename = "UUID")]
    pub uuid: Option<String>,
    pub virtual_media: Option<Link>,
    pub ethernet_interfaces: Option<Link>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct VirtualMediaActions {
    #[serde(rename = "#VirtualMedia.InsertMedia")]
    pub insert: Option<ActionTarget>,
    #[serde(rename = "#VirtualMedia.EjectMedia")]
    pub eject: Option<ActionTarget>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VirtualMedia {
    #[serde(rename = "@odata.id")]
    pub odata_id: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub media_types: Vec<String>,
    pub image: Option<String>,
    pub image_name: Option<String>,
    pub inserted: Option<bool>,
    pub write_protected: Option<bool>,
    #[serde(default)]
    pub actions: VirtualMediaActions,
}

impl VirtualMedia {
    /// Whether this device takes CD/DVD images.
    pub fn is_cd(&self) -> bool {
        self.media_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case("CD") || t.eq_ignore_ascii_case("DVD"))
    }
    /// Whether an image is in the device (an empty `Image` counts as none).
    pub fn has_image(&self) -> bool {
        self.inserted.unwrap_or(false) || self.image.as_deref().is_some_and(|i| !i.is_empty())
    }
}

/// The body of `#VirtualMedia.InsertMedia`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InsertMedia {
    pub image: String,
    pub inserted: bool,
    pub write_protected: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TaskState {
    New,
    Starting,
    Running,
    Suspended,
    Interrupted,
    Pending,
    Stopping,
    Completed,
    Killed,
    Exception,
    Service,
    Cancelling,
    Cancelled,
    #[serde(other)]
    Unknown,
}

impl TaskState {
    /// Whether the task is over, and whether it succeeded.
    pub fn outcome(self) -> Option<bool> {
        match self {
            TaskState::Completed => Some(true),
            TaskState::Killed | TaskState::Exception | TaskState::Cancelled => Some(false),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Message {
    pub message: Option<String>,
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    pub id: Option<String>,
    pub task_state: Option<TaskState>,
    pub task_status: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub percent_complete: Option<u64>,
    #[serde(default)]
    pub messages: Vec<Message>,
}

/// A Redfish error body: `{"error": {"message": …, "@Message.ExtendedInfo": [...]}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorDetail {
    pub code: Option<serde_json::Value>,
    pub message: Option<String>,
    #[serde(rename = "@Message.ExtendedInfo", default)]
    pub extended: Vec<Message>,
}

impl ErrorBody {
    /// The most specific message a Redfish error body carries, if any.
    pub fn summary(body: &[u8]) -> Option<String> {
        let b: ErrorBody = serde_json::from_slice(body).ok()?;
        let ext: Vec<String> = b
            .error
            .extended
            .iter()
            .filter_map(|m| m.message.clone())
            .collect();
        if !ext.is_empty() {
            return Some(ext.join("; "));
        }
        b.error.message
    }
}

/// A number, a numeric string, or null.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_computer_system_parses_with_quirky_values() {
        let s: ComputerSystem = serde_json::from_value(json!({
            "@odata.id": "/redfish/v1/Systems/1", "Id": "1", "PowerState": "PoweringOn",
            "Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once",
                     "BootSourceOverrideMode": "UEFI",
                     "BootSourceOverrideTarget@Redfish.AllowableValues": ["Pxe", "Hdd"]},
            "ProcessorSummary": {"Count": "8"}, "MemorySummary": {"TotalSystemMemoryGiB": 15.5},
            "Actions": {"#ComputerSystem.Reset": {"target": "/x/Reset",
                        "ResetType@Redfish.AllowableValues": ["On", "ForceOff"]}},
            "Links": {"ManagedBy": [{"@odata.id": "/redfish/v1/Managers/bmc"}]},
            "Oem": {"Vendor": {"Anything": 1}}
        }))
        .unwrap();
        assert_eq!(s.power_state, Some(PowerState::PoweringOn));
        assert_eq!(s.boot.boot_source_override_target, Some(BootSource::Pxe));
        assert_eq!(s.boot.boot_source_override_mode, Some(BootMode::Uefi));
        assert_eq!(s.processor_summary.unwrap().count, Some(8));
        assert_eq!(
            s.memory_summary.unwrap().total_system_memory_gib,
            Some(15.5)
        );
        assert_eq!(s.actions.reset.unwrap().allowed_reset_types.len(), 2);
        assert_eq!(s.links.managed_by[0].id, "/redfish/v1/Managers/bmc");
        let odd: ComputerSystem =
            serde_json::from_value(json!({"Id": "x", "PowerState": "Sleeping",
                "Boot": {"BootSourceOverrideTarget": "VendorThing"}}))
            .unwrap();
        assert_eq!(odd.power_state, Some(PowerState::Unknown));
        assert_eq!(
            odd.boot.boot_source_override_target,
            Some(BootSource::Other)
        );
    }

    #[test]
    fn boot_patch_sends_only_what_is_set() {
        let p = BootPatch {
            boot_source_override_target: Some(BootSource::Cd),
            boot_source_override_mode: Some(BootMode::Uefi),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(p).unwrap(),
            json!({"BootSourceOverrideTarget": "Cd", "BootSourceOverrideMode": "UEFI"})
        );
    }

    #[test]
    fn error_bodies_give_their_most_specific_message() {
        let b = br#"{"error": {"code": "Base.1.0.GeneralError", "message": "general",
            "@Message.ExtendedInfo": [{"Message": "The property Foo is unknown"}]}}"#;
        assert_eq!(
            ErrorBody::summary(b).as_deref(),
            Some("The property Foo is unknown")
        );
        assert_eq!(
            ErrorBody::summary(br#"{"error": {"message": "m"}}"#).as_deref(),
            Some("m")
        );
        assert_eq!(ErrorBody::summary(b"<html>"), None);
    }

    #[test]
    fn storage_and_media_parse() {
        let ss: SimpleStorage = serde_json::from_value(json!({"Id": "1", "Devices": [
            {"Name": "disk", "CapacityBytes": 1_000_000_000u64, "Status": {"State": "Enabled"}},
            {"Name": "empty bay", "Status": {"State": "Absent"}}]}))
        .unwrap();
        assert_eq!(ss.devices[0].capacity_bytes, Some(1_000_000_000));
        assert_eq!(ss.devices[1].capacity_bytes, None);
        let vm: VirtualMedia = serde_json::from_value(json!({"Id": "Cd",
            "MediaTypes": ["CD", "DVD"], "Image": "", "Inserted": false,
            "Actions": {"#VirtualMedia.InsertMedia": {"target": "/i"}}}))
        .unwrap();
        assert!(vm.is_cd() && !vm.has_image());
        assert_eq!(vm.actions.insert.unwrap().target, "/i");
        let t: Task = serde_json::from_value(json!({"TaskState": "Exception",
            "Messages": [{"Message": "disk on fire"}]}))
        .unwrap();
        assert_eq!(t.task_state.and_then(TaskState::outcome), Some(false));
    }
}
