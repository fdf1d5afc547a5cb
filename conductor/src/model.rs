//! Nodes and ports as the conductor keeps them, and their Ironic JSON views.

use serde_json::{json, Map, Value};

use crate::state::State;

pub type Obj = Map<String, Value>;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Database row id: the order of listings and pagination markers.
    pub id: i64,
    pub uuid: String,
    pub name: Option<String>,
    pub driver: String,
    pub driver_info: Obj,
    pub properties: Obj,
    pub instance_info: Obj,
    pub instance_uuid: Option<String>,
    pub extra: Obj,
    pub provision_state: State,
    pub target_provision_state: Option<State>,
    pub power_state: Option<String>,
    pub target_power_state: Option<String>,
    pub last_error: Option<String>,
    pub maintenance: bool,
    pub maintenance_reason: Option<String>,
    pub reservation: Option<String>,
    pub conductor: Option<String>,
    pub driver_internal_info: Obj,
    pub clean_step: Obj,
    pub deploy_step: Obj,
    pub resource_class: Option<String>,
    pub boot_interface: String,
    pub deploy_interface: String,
    pub power_interface: String,
    pub management_interface: String,
    pub inspect_interface: String,
    pub created_at: String,
    pub updated_at: Option<String>,
    pub provision_updated_at: Option<String>,
    pub inspection_started_at: Option<String>,
    pub inspection_finished_at: Option<String>,
    /// The [`EXTENDED_FIELDS`] that have been set (absent ones take their defaults).
    pub extended: Obj,
    pub agent_token: Option<String>,
    pub agent_url: Option<String>,
    pub agent_verify_ca: Option<String>,
    pub agent_last_heartbeat: Option<String>,
}

/// Node fields the API shows, in Ironic's order; `fields=` must name these.
pub const NODE_FIELDS: &[&str] = &[
    "uuid",
    "name",
    "driver",
    "driver_info",
    "properties",
    "instance_info",
    "instance_uuid",
    "extra",
    "provision_state",
    "target_provision_state",
    "power_state",
    "target_power_state",
    "last_error",
    "maintenance",
    "maintenance_reason",
    "reservation",
    "conductor",
    "driver_internal_info",
    "clean_step",
    "deploy_step",
    "resource_class",
    "boot_interface",
    "deploy_interface",
    "power_interface",
    "management_interface",
    "inspect_interface",
    "network_interface",
    "console_interface",
    "raid_interface",
    "rescue_interface",
    "storage_interface",
    "vendor_interface",
    "bios_interface",
    "firmware_interface",
    "console_enabled",
    "chassis_uuid",
    "protected",
    "owner",
    "lessee",
    "description",
    "conductor_group",
    "automated_clean",
    "protected_reason",
    "retired",
    "retired_reason",
    "shard",
    "parent_node",
    "disable_power_off",
    "network_data",
    "traits",
    "allocation_uuid",
    "fault",
    "raid_config",
    "target_raid_config",
    "boot_mode",
    "secure_boot",
    "service_step",
    "instance_name",
    "health",
    "created_at",
    "updated_at",
    "provision_updated_at",
    "inspection_started_at",
    "inspection_finished_at",
    "links",
    "ports",
];

/// The JSON type of an extended node field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtTy {
    /// A string or null.
    Str,
    Bool,
    /// A boolean or null (`automated_clean`: null = the conductor's default).
    OptBool,
    Obj,
    /// One of these interface implementations.
    Iface(&'static [&'static str]),
    /// Not settable by create or PATCH (`traits` have their own endpoints, the allocation
    /// is set by `/v1/allocations`).
    ReadOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtDefault {
    Null,
    False,
    Empty,
    EmptyObj,
    EmptyList,
    Str(&'static str),
}

impl ExtDefault {
    pub fn value(self) -> Value {
        match self {
            ExtDefault::Null => Value::Null,
            ExtDefault::False => json!(false),
            ExtDefault::Empty => json!(""),
            ExtDefault::EmptyObj => json!({}),
            ExtDefault::EmptyList => json!([]),
            ExtDefault::Str(s) => json!(s),
        }
    }
}

/// A node field Ironic defines that Ferrite stores and shows in `Node::extended`; the
/// behaviour it has in Ferrite (if any) is in `api/nodes.rs` (retired, protected, traits).
#[derive(Debug)]
pub struct ExtField {
    pub name: &'static str,
    pub ty: ExtTy,
    pub default: ExtDefault,
}

const fn ext(name: &'static str, ty: ExtTy, default: ExtDefault) -> ExtField {
    ExtField { name, ty, default }
}

pub const EXTENDED_FIELDS: &[ExtField] = &[
    ext(
        "network_interface",
        ExtTy::Iface(&["noop", "flat"]),
        ExtDefault::Str("noop"),
    ),
    ext(
        "console_interface",
        ExtTy::Iface(&["no-console"]),
        ExtDefault::Str("no-console"),
    ),
    ext(
        "raid_interface",
        ExtTy::Iface(&["no-raid"]),
        ExtDefault::Str("no-raid"),
    ),
    ext(
        "rescue_interface",
        // drivers::NO_RESCUE, AGENT_RESCUE, FAKE_RESCUE.
        ExtTy::Iface(&["no-rescue", "agent", "fake"]),
        ExtDefault::Str("no-rescue"),
    ),
    ext(
        "storage_interface",
        ExtTy::Iface(&["noop"]),
        ExtDefault::Str("noop"),
    ),
    ext(
        "vendor_interface",
        ExtTy::Iface(&["no-vendor"]),
        ExtDefault::Str("no-vendor"),
    ),
    ext(
        "bios_interface",
        ExtTy::Iface(&["no-bios"]),
        ExtDefault::Str("no-bios"),
    ),
    ext(
        "firmware_interface",
        ExtTy::Iface(&["no-firmware"]),
        ExtDefault::Str("no-firmware"),
    ),
    ext("chassis_uuid", ExtTy::Str, ExtDefault::Null),
    ext("protected", ExtTy::Bool, ExtDefault::False),
    ext("protected_reason", ExtTy::Str, ExtDefault::Null),
    ext("retired", ExtTy::Bool, ExtDefault::False),
    ext("retired_reason", ExtTy::Str, ExtDefault::Null),
    ext("owner", ExtTy::Str, ExtDefault::Null),
    ext("lessee", ExtTy::Str, ExtDefault::Null),
    ext("description", ExtTy::Str, ExtDefault::Null),
    ext("conductor_group", ExtTy::Str, ExtDefault::Empty),
    ext("shard", ExtTy::Str, ExtDefault::Null),
    ext("parent_node", ExtTy::Str, ExtDefault::Null),
    ext("automated_clean", ExtTy::OptBool, ExtDefault::Null),
    ext("disable_power_off", ExtTy::Bool, ExtDefault::False),
    ext("network_data", ExtTy::Obj, ExtDefault::EmptyObj),
    ext("traits", ExtTy::ReadOnly, ExtDefault::EmptyList),
    ext("allocation_uuid", ExtTy::ReadOnly, ExtDefault::Null),
    ext("instance_name", ExtTy::Str, ExtDefault::Null),
    // Set through `/states/raid`; Ferrite builds no RAID, so `raid_config` stays empty.
    ext("raid_config", ExtTy::ReadOnly, ExtDefault::EmptyObj),
    ext("target_raid_config", ExtTy::ReadOnly, ExtDefault::EmptyObj),
    // What the management interface reports; neither of Ferrite's can read them.
    ext("boot_mode", ExtTy::ReadOnly, ExtDefault::Null),
    ext("secure_boot", ExtTy::ReadOnly, ExtDefault::Null),
    ext("service_step", ExtTy::ReadOnly, ExtDefault::EmptyObj),
    ext("health", ExtTy::ReadOnly, ExtDefault::Null),
];

/// Fields of the short (non-detail) listing, as Ironic shows them.
pub const NODE_SHORT_FIELDS: &[&str] = &[
    "uuid",
    "name",
    "instance_uuid",
    "power_state",
    "provision_state",
    "maintenance",
    "links",
];

/// `driver_info`/`instance_info` keys whose values never leave the conductor.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.ends_with("token") || k == "configdrive"
}

/// `obj` with the value of every secret key replaced by the mask, at any depth (inside
/// nested objects and arrays too), as Ironic's `mask_dict_password` does.
pub fn mask(obj: &Obj) -> Value {
    Value::Object(mask_map(obj))
}

/// [`mask`], as the object itself.
pub fn mask_map(obj: &Obj) -> Obj {
    let mut out = Obj::new();
    for (k, v) in obj {
        if is_secret_key(k) && !v.is_null() {
            out.insert(
                k.clone(),
                Value::String(ferrite_proto::MASKED_SECRET.into()),
            );
        } else {
            out.insert(k.clone(), mask_value(v));
        }
    }
    out
}

fn mask_value(v: &Value) -> Value {
    match v {
        Value::Object(o) => mask(o),
        Value::Array(a) => Value::Array(a.iter().map(mask_value).collect()),
        other => other.clone(),
    }
}

/// The boot mode of a node without a `boot_mode` capability (Ironic's
/// `[deploy]default_boot_mode`).
pub const DEFAULT_BOOT_MODE: &str = "uefi";

impl Node {
    /// A capability: instance_info's `capabilities` first, then properties', each either a
    /// dict or Ironic's "key:value,key:value" string.
    pub fn capability(&self, key: &str) -> Option<String> {
        [&self.instance_info, &self.properties]
            .iter()
            .find_map(|o| match o.get("capabilities")? {
                Value::Object(m) => m.get(key).and_then(Value::as_str).map(str::to_owned),
                Value::String(s) => s.split(',').find_map(|kv| {
                    let (k, v) = kv.split_once(':')?;
                    (k.trim() == key).then(|| v.trim().to_owned())
                }),
                _ => None,
            })
    }

    /// `uefi` or `bios`: the `boot_mode` capability, else [`DEFAULT_BOOT_MODE`]. Used for the
    /// BMC's boot flags and a partition image's layout alike.
    pub fn boot_mode(&self) -> String {
        self.capability("boot_mode")
            .unwrap_or_else(|| DEFAULT_BOOT_MODE.to_owned())
    }

    /// The full API view with secrets masked and links under `base` (e.g. `http://h:6385`).
    pub fn to_api(&self, base: &str) -> Obj {
        let mut dii = self.driver_internal_info.clone();
        if self.agent_token.is_some() {
            dii.insert(
                "agent_secret_token".into(),
                json!(ferrite_proto::MASKED_SECRET),
            );
        }
        if let Some(u) = &self.agent_url {
            dii.insert("agent_url".into(), json!(u));
        }
        if let Some(t) = &self.agent_last_heartbeat {
            dii.insert("agent_last_heartbeat".into(), json!(t));
        }
        let v = json!({
            "uuid": self.uuid,
            "name": self.name,
            "driver": self.driver,
            "driver_info": mask(&self.driver_info),
            "properties": mask(&self.properties),
            "instance_info": mask(&self.instance_info),
            "instance_uuid": self.instance_uuid,
            "extra": mask(&self.extra),
            "provision_state": self.provision_state.as_str(),
            "target_provision_state": self.target_provision_state.map(|s| s.as_str()),
            "power_state": self.power_state,
            "target_power_state": self.target_power_state,
            "last_error": self.last_error,
            "maintenance": self.maintenance,
            "maintenance_reason": self.maintenance_reason,
            "reservation": self.reservation,
            "conductor": self.conductor,
            "driver_internal_info": mask(&dii),
            // Ironic answers `{}` for a node without a current step.
            "clean_step": self.clean_step,
            "deploy_step": self.deploy_step,
            "resource_class": self.resource_class,
            "boot_interface": self.boot_interface,
            "deploy_interface": self.deploy_interface,
            "power_interface": self.power_interface,
            "management_interface": self.management_interface,
            "inspect_interface": self.inspect_interface,
            "console_enabled": false,
            "fault": null,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "provision_updated_at": self.provision_updated_at,
            "inspection_started_at": self.inspection_started_at,
            "inspection_finished_at": self.inspection_finished_at,
            "links": links(base, "nodes", &self.uuid),
            "ports": [
                {"href": format!("{base}/v1/nodes/{}/ports", self.uuid), "rel": "self"},
                {"href": format!("{base}/nodes/{}/ports", self.uuid), "rel": "bookmark"},
            ],
        });
        let mut o = match v {
            Value::Object(o) => o,
            _ => Obj::new(),
        };
        for f in EXTENDED_FIELDS {
            o.insert(f.name.into(), self.ext(f.name));
        }
        o
    }

    /// An [`EXTENDED_FIELDS`] value, or its default.
    pub fn ext(&self, name: &str) -> Value {
        self.extended
            .get(name)
            .cloned()
            .or_else(|| {
                EXTENDED_FIELDS
                    .iter()
                    .find(|f| f.name == name)
                    .map(|f| f.default.value())
            })
            .unwrap_or(Value::Null)
    }

    /// Whether an [`EXTENDED_FIELDS`] boolean is set.
    pub fn ext_flag(&self, name: &str) -> bool {
        self.ext(name).as_bool().unwrap_or(false)
    }

    /// The view restricted to `fields` (already validated against [`NODE_FIELDS`]), with
    /// its `links` always, as Ironic answers.
    pub fn to_api_fields(&self, base: &str, fields: &[&str]) -> Obj {
        let mut all = self.to_api(base);
        let mut out = Obj::new();
        for f in fields.iter().chain(&["links"]) {
            if let Some(v) = all.remove(*f) {
                out.insert((*f).to_string(), v);
            }
        }
        out
    }
}

pub fn links(base: &str, kind: &str, uuid: &str) -> Value {
    json!([
        {"href": format!("{base}/v1/{kind}/{uuid}"), "rel": "self"},
        {"href": format!("{base}/{kind}/{uuid}"), "rel": "bookmark"},
    ])
}

#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub id: i64,
    pub uuid: String,
    pub address: String,
    pub node_uuid: String,
    pub pxe_enabled: bool,
    pub extra: Obj,
    pub local_link_connection: Obj,
    pub physical_network: Option<String>,
    /// The Ironic port fields without a column (`api::ports::EXTENDED`); absent ones
    /// take their defaults.
    pub extended: Obj,
    pub created_at: String,
    pub updated_at: Option<String>,
}

pub const PORT_FIELDS: &[&str] = &[
    "uuid",
    "address",
    "node_uuid",
    "pxe_enabled",
    "extra",
    "local_link_connection",
    "physical_network",
    "internal_info",
    "is_smartnic",
    "portgroup_uuid",
    "name",
    "description",
    "vendor",
    "category",
    "available_for_dynamic_portgroup",
    "created_at",
    "updated_at",
    "links",
];

impl Port {
    pub fn to_api(&self, base: &str) -> Obj {
        let v = json!({
            "uuid": self.uuid,
            "address": self.address,
            "node_uuid": self.node_uuid,
            "pxe_enabled": self.pxe_enabled,
            "extra": mask(&self.extra),
            "local_link_connection": self.local_link_connection,
            "physical_network": self.physical_network,
            "internal_info": {},
            "is_smartnic": self.extended.get("is_smartnic").cloned().unwrap_or(json!(false)),
            "portgroup_uuid": self.extended.get("portgroup_uuid").cloned().unwrap_or(Value::Null),
            "name": self.extended.get("name").cloned().unwrap_or(Value::Null),
            "description": self.extended.get("description").cloned().unwrap_or(Value::Null),
            "vendor": self.extended.get("vendor").cloned().unwrap_or(Value::Null),
            "category": self.extended.get("category").cloned().unwrap_or(Value::Null),
            "available_for_dynamic_portgroup": self
                .extended
                .get("available_for_dynamic_portgroup")
                .cloned()
                .unwrap_or(json!(true)),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "links": links(base, "ports", &self.uuid),
        });
        match v {
            Value::Object(o) => o,
            _ => Obj::new(),
        }
    }
}

/// A text that is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Expected a MAC address but received {0}: use six hex octets like 52:54:00:12:34:56")]
pub struct NotAMac(pub String);

/// Normalises a MAC address to lower-case colon form, or says why it is not one.
pub fn normalize_mac(s: &str) -> Result<String, NotAMac> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(NotAMac(s.to_owned()));
    }
    Ok(parts.join(":").to_ascii_lowercase())
}

pub fn is_uuid_like(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// Now as Ironic formats timestamps (ISO 8601 with offset).
pub fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Seconds since `ts` (an RFC 3339 string), or `None` when unparsable.
pub fn age_secs(ts: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    Some((time::OffsetDateTime::now_utc() - t).as_seconds_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_and_boot_mode_follow_ironic() {
        let mut n = crate::api::nodes::blank_node();
        assert_eq!(n.boot_mode(), "uefi", "Ironic's default boot mode");
        n.properties.insert(
            "capabilities".into(),
            json!("disk_label:gpt, boot_mode:bios"),
        );
        assert_eq!(n.boot_mode(), "bios");
        assert_eq!(n.capability("disk_label").as_deref(), Some("gpt"));
        n.instance_info
            .insert("capabilities".into(), json!({"boot_mode": "uefi"}));
        assert_eq!(n.boot_mode(), "uefi", "instance_info's capabilities win");
        assert_eq!(n.capability("nothing"), None);
    }

    #[test]
    fn macs_normalise_or_explain() {
        assert_eq!(
            normalize_mac("52-54-00-AB-cd-01").unwrap(),
            "52:54:00:ab:cd:01"
        );
        assert_eq!(
            normalize_mac("52:54:00:ab:cd").unwrap_err().to_string(),
            "Expected a MAC address but received 52:54:00:ab:cd: use six hex octets like \
             52:54:00:12:34:56"
        );
        assert_eq!(
            normalize_mac("zz:54:00:ab:cd:01"),
            Err(NotAMac("zz:54:00:ab:cd:01".into()))
        );
    }

    #[test]
    fn secrets_are_masked() {
        let mut o = Obj::new();
        o.insert("ipmi_password".into(), json!("hunter2"));
        o.insert("ipmi_username".into(), json!("admin"));
        o.insert(
            "nested".into(),
            json!({"redfish": {"Password": "p1", "user": "u"}, "list": [{"auth_token": "t"}, 1]}),
        );
        let m = mask(&o);
        assert_eq!(m["ipmi_password"], "******");
        assert_eq!(m["ipmi_username"], "admin");
        assert_eq!(m["nested"]["redfish"]["Password"], "******");
        assert_eq!(m["nested"]["redfish"]["user"], "u");
        assert_eq!(m["nested"]["list"], json!([{"auth_token": "******"}, 1]));
    }

    #[test]
    fn timestamps_round_trip() {
        let n = now();
        assert!(age_secs(&n).unwrap() < 5.0);
        assert!(age_secs("garbage").is_none());
    }
}
