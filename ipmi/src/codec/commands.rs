//! The IPMI commands Ferrite uses: request builders and response parsers (no I/O).

use std::fmt;
use std::net::Ipv4Addr;

use super::message::Request;
use super::{DecodeError, Privilege};

pub const NETFN_CHASSIS: u8 = 0x00;
pub const NETFN_APP: u8 = 0x06;
pub const NETFN_TRANSPORT: u8 = 0x0c;

/// The channel number meaning "the channel this request came in on".
pub const CURRENT_CHANNEL: u8 = 0x0e;

fn need(b: &[u8], n: usize, what: &'static str) -> Result<(), DecodeError> {
    if b.len() < n {
        return Err(DecodeError::Truncated {
            what,
            need: n,
            got: b.len(),
        });
    }
    Ok(())
}

// ---- App ------------------------------------------------------------------------------

pub fn get_device_id() -> Request {
    Request::new(NETFN_APP, 0x01, vec![])
}

/// Get Device ID response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceId {
    pub device_id: u8,
    pub device_revision: u8,
    pub firmware_major: u8,
    pub firmware_minor: u8,
    /// BCD, e.g. 0x51 for 1.5, 0x02 for 2.0 (as ipmi_sim reports "2.0").
    pub ipmi_version: u8,
    pub manufacturer_id: u32,
    pub product_id: u16,
}

impl DeviceId {
    pub fn decode(d: &[u8]) -> Result<DeviceId, DecodeError> {
        need(d, 11, "Get Device ID response")?;
        Ok(DeviceId {
            device_id: d[0],
            device_revision: d[1] & 0x0f,
            firmware_major: d[2] & 0x7f,
            firmware_minor: d[3],
            ipmi_version: d[4],
            manufacturer_id: u32::from_le_bytes([d[6], d[7], d[8], 0]),
            product_id: u16::from_le_bytes([d[9], d[10]]),
        })
    }

    /// "2.0" style text of the IPMI version.
    pub fn ipmi_version_text(&self) -> String {
        format!("{}.{}", self.ipmi_version & 0x0f, self.ipmi_version >> 4)
    }
}

pub fn get_channel_auth_capabilities(channel: u8, privilege: Privilege) -> Request {
    // Bit 7 asks for the IPMI 2.0 extended data.
    Request::new(
        NETFN_APP,
        0x38,
        vec![0x80 | (channel & 0x0f), privilege as u8],
    )
}

/// Get Channel Authentication Capabilities response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCapabilities {
    pub channel: u8,
    /// Bit mask of IPMI 1.5 auth types (none, MD2, MD5, straight password, OEM).
    pub auth_types: u8,
    pub ipmi_v20: bool,
    pub ipmi_v15: bool,
    pub per_message_auth_disabled: bool,
    pub anonymous_login: bool,
    pub kg_set: bool,
}

impl AuthCapabilities {
    pub fn decode(d: &[u8]) -> Result<AuthCapabilities, DecodeError> {
        need(d, 4, "Get Channel Authentication Capabilities response")?;
        let extended = d[1] & 0x80 != 0;
        Ok(AuthCapabilities {
            channel: d[0],
            auth_types: d[1] & 0x3f,
            ipmi_v20: extended && d[3] & 0x02 != 0,
            ipmi_v15: !extended || d[3] & 0x01 != 0,
            per_message_auth_disabled: d[2] & 0x10 != 0,
            anonymous_login: d[2] & 0x01 != 0,
            kg_set: d[2] & 0x20 != 0,
        })
    }
}

pub fn get_channel_cipher_suites(channel: u8, list_index: u8) -> Request {
    // Payload type 0 (IPMI); bit 7 of the index: list algorithms by cipher suite.
    Request::new(
        NETFN_APP,
        0x54,
        vec![channel & 0x0f, 0x00, 0x80 | (list_index & 0x3f)],
    )
}

/// One record of the Get Channel Cipher Suites list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherSuiteRecord {
    pub id: u8,
    pub auth_alg: u8,
    pub integrity_alg: u8,
    pub confidentiality_alg: u8,
}

/// Parses the concatenated record bytes of all Get Channel Cipher Suites responses (each
/// response's data minus its channel byte).
pub fn parse_cipher_suite_records(mut b: &[u8]) -> Vec<CipherSuiteRecord> {
    let mut out = Vec::new();
    while let Some(&start) = b.first() {
        let skip = match start {
            0xc0 => 2,
            0xc1 => 5,
            _ => {
                b = &b[1..];
                continue;
            }
        };
        if b.len() < skip {
            break;
        }
        let mut rec = CipherSuiteRecord {
            id: b[1],
            auth_alg: 0,
            integrity_alg: 0,
            confidentiality_alg: 0,
        };
        b = &b[skip..];
        while let Some(&alg) = b.first() {
            if alg & 0xc0 == 0xc0 {
                break;
            }
            match alg & 0xc0 {
                0x00 => rec.auth_alg = alg & 0x3f,
                0x40 => rec.integrity_alg = alg & 0x3f,
                _ => rec.confidentiality_alg = alg & 0x3f,
            }
            b = &b[1..];
        }
        out.push(rec);
    }
    out
}

pub fn set_session_privilege(privilege: Privilege) -> Request {
    Request::new(NETFN_APP, 0x3b, vec![privilege as u8])
}

pub fn close_session(bmc_session_id: u32) -> Request {
    Request::new(NETFN_APP, 0x3c, bmc_session_id.to_le_bytes().to_vec())
}

// ---- Chassis --------------------------------------------------------------------------

pub fn get_chassis_status() -> Request {
    Request::new(NETFN_CHASSIS, 0x01, vec![])
}

/// System power as Chassis Status reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::On => "power on",
            PowerState::Off => "power off",
        })
    }
}

/// Get Chassis Status response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChassisStatus {
    pub power: PowerState,
    pub power_overload: bool,
    pub interlock: bool,
    pub power_fault: bool,
    pub control_fault: bool,
    /// 0 stay off, 1 restore previous, 2 power on, 3 unknown.
    pub restore_policy: u8,
}

impl ChassisStatus {
    pub fn decode(d: &[u8]) -> Result<ChassisStatus, DecodeError> {
        need(d, 3, "Get Chassis Status response")?;
        let s = d[0];
        Ok(ChassisStatus {
            power: if s & 0x01 != 0 {
                PowerState::On
            } else {
                PowerState::Off
            },
            power_overload: s & 0x02 != 0,
            interlock: s & 0x04 != 0,
            power_fault: s & 0x08 != 0,
            control_fault: s & 0x10 != 0,
            restore_policy: (s >> 5) & 0x03,
        })
    }
}

/// Chassis Control actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChassisControl {
    PowerOff,
    PowerOn,
    PowerCycle,
    HardReset,
    /// ACPI soft shutdown.
    SoftOff,
}

impl ChassisControl {
    pub fn byte(self) -> u8 {
        match self {
            ChassisControl::PowerOff => 0x00,
            ChassisControl::PowerOn => 0x01,
            ChassisControl::PowerCycle => 0x02,
            ChassisControl::HardReset => 0x03,
            ChassisControl::SoftOff => 0x05,
        }
    }
}

pub fn chassis_control(action: ChassisControl) -> Request {
    Request::new(NETFN_CHASSIS, 0x02, vec![action.byte()])
}

/// Boot device selector of the boot flags parameter (#5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDevice {
    /// No override: the BIOS's own order.
    NoOverride,
    Pxe,
    Disk,
    Safe,
    Diagnostic,
    Cdrom,
    Bios,
    Floppy,
}

impl BootDevice {
    fn selector(self) -> u8 {
        match self {
            BootDevice::NoOverride => 0x0,
            BootDevice::Pxe => 0x1,
            BootDevice::Disk => 0x2,
            BootDevice::Safe => 0x3,
            BootDevice::Diagnostic => 0x4,
            BootDevice::Cdrom => 0x5,
            BootDevice::Bios => 0x6,
            BootDevice::Floppy => 0xf,
        }
    }

    fn from_selector(s: u8) -> Result<BootDevice, DecodeError> {
        Ok(match s {
            0x0 => BootDevice::NoOverride,
            0x1 => BootDevice::Pxe,
            0x2 => BootDevice::Disk,
            0x3 => BootDevice::Safe,
            0x4 => BootDevice::Diagnostic,
            0x5 => BootDevice::Cdrom,
            0x6 => BootDevice::Bios,
            0xf => BootDevice::Floppy,
            other => {
                return Err(DecodeError::Invalid {
                    what: "boot device selector",
                    value: other as u32,
                })
            }
        })
    }

    /// Parses Ironic's boot device names (pxe, disk, cdrom, bios, safe) and "none".
    pub fn parse(s: &str) -> Option<BootDevice> {
        Some(match s.to_ascii_lowercase().as_str() {
            "pxe" | "network" => BootDevice::Pxe,
            "disk" | "hdd" => BootDevice::Disk,
            "cdrom" | "cd" => BootDevice::Cdrom,
            "bios" | "setup" => BootDevice::Bios,
            "safe" => BootDevice::Safe,
            "diag" | "diagnostic" => BootDevice::Diagnostic,
            "floppy" => BootDevice::Floppy,
            "none" | "default" => BootDevice::NoOverride,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            BootDevice::NoOverride => "none",
            BootDevice::Pxe => "pxe",
            BootDevice::Disk => "disk",
            BootDevice::Safe => "safe",
            BootDevice::Diagnostic => "diag",
            BootDevice::Cdrom => "cdrom",
            BootDevice::Bios => "bios",
            BootDevice::Floppy => "floppy",
        }
    }
}

/// The boot flags parameter (#5) of the system boot options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootOptions {
    pub device: BootDevice,
    /// Applies to all future boots, not only the next one.
    pub persistent: bool,
    /// Boot in UEFI mode rather than legacy BIOS.
    pub uefi: bool,
    /// The BMC marked the flags valid (some BMCs, ipmi_sim among them, never do).
    pub valid: bool,
}

const BOOT_FLAGS_PARAM: u8 = 5;

pub fn set_system_boot_options(opts: BootOptions) -> Request {
    let mut b1 = 0x80;
    if opts.persistent {
        b1 |= 0x40;
    }
    if opts.uefi {
        b1 |= 0x20;
    }
    Request::new(
        NETFN_CHASSIS,
        0x08,
        vec![BOOT_FLAGS_PARAM, b1, opts.device.selector() << 2, 0, 0, 0],
    )
}

pub fn get_system_boot_options() -> Request {
    Request::new(NETFN_CHASSIS, 0x09, vec![BOOT_FLAGS_PARAM, 0, 0])
}

impl BootOptions {
    /// Decodes the Get System Boot Options response for parameter 5.
    pub fn decode(d: &[u8]) -> Result<BootOptions, DecodeError> {
        need(d, 4, "Get System Boot Options response")?;
        if d[1] & 0x7f != BOOT_FLAGS_PARAM {
            return Err(DecodeError::Invalid {
                what: "boot options parameter selector (want 5)",
                value: d[1] as u32,
            });
        }
        let b1 = d[2];
        Ok(BootOptions {
            valid: b1 & 0x80 != 0,
            persistent: b1 & 0x40 != 0,
            uefi: b1 & 0x20 != 0,
            device: BootDevice::from_selector((d[3] >> 2) & 0x0f)?,
        })
    }
}

// ---- Transport ------------------------------------------------------------------------

/// LAN configuration parameters we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanParam {
    IpAddress = 3,
    IpSource = 4,
    MacAddress = 5,
    SubnetMask = 6,
    DefaultGateway = 12,
}

pub fn get_lan_config(channel: u8, param: LanParam) -> Request {
    Request::new(
        NETFN_TRANSPORT,
        0x02,
        vec![channel & 0x0f, param as u8, 0, 0],
    )
}

/// Strips the parameter revision byte of a Get LAN Configuration Parameters response.
pub fn lan_config_data(d: &[u8]) -> Result<&[u8], DecodeError> {
    need(d, 1, "Get LAN Configuration Parameters response")?;
    Ok(&d[1..])
}

pub fn decode_ipv4(d: &[u8]) -> Result<Ipv4Addr, DecodeError> {
    let d = lan_config_data(d)?;
    need(d, 4, "IPv4 address parameter")?;
    Ok(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
}

pub fn decode_mac(d: &[u8]) -> Result<[u8; 6], DecodeError> {
    let d = lan_config_data(d)?;
    need(d, 6, "MAC address parameter")?;
    Ok(d[..6].try_into().expect("6 bytes"))
}

/// Formats a MAC as aa:bb:cc:dd:ee:ff.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_from_ipmi_sim() {
        // ipmi_sim's answer for `mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02`.
        let d = [
            0x00, 0x03, 0x09, 0x08, 0x02, 0x9f, 0x91, 0x12, 0x00, 0x02, 0x0f,
        ];
        let id = DeviceId::decode(&d).unwrap();
        assert_eq!(id.manufacturer_id, 4753);
        assert_eq!(id.product_id, 0x0f02);
        assert_eq!((id.firmware_major, id.firmware_minor), (9, 8));
        assert_eq!(id.ipmi_version_text(), "2.0");
        assert!(DeviceId::decode(&d[..10]).is_err());
    }

    #[test]
    fn auth_caps() {
        let r = get_channel_auth_capabilities(CURRENT_CHANNEL, Privilege::Administrator);
        assert_eq!(r.data, [0x8e, 0x04]);
        let c = AuthCapabilities::decode(&[0x01, 0x97, 0x04, 0x03, 0, 0, 0, 0]).unwrap();
        assert!(c.ipmi_v20 && c.ipmi_v15);
        assert_eq!(c.auth_types, 0x17);
        assert!(AuthCapabilities::decode(&[1, 2]).is_err());
    }

    #[test]
    fn cipher_suite_records() {
        // Suite 3 (SHA1/SHA1-96/AES) and 17 (SHA256/SHA256-128/AES), then an OEM one.
        let b = [
            0xc0, 0x03, 0x01, 0x41, 0x81, 0xc0, 0x11, 0x03, 0x44, 0x81, 0xc1, 0x80, 0, 0, 0, 0x01,
        ];
        let r = parse_cipher_suite_records(&b);
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            CipherSuiteRecord {
                id: 3,
                auth_alg: 1,
                integrity_alg: 1,
                confidentiality_alg: 1
            }
        );
        assert_eq!((r[1].id, r[1].auth_alg, r[1].integrity_alg), (17, 3, 4));
        assert_eq!(r[2].id, 0x80);
        assert!(parse_cipher_suite_records(&[0xc0]).is_empty());
    }

    #[test]
    fn chassis_status_and_control() {
        assert_eq!(
            ChassisStatus::decode(&[0x01, 0, 0]).unwrap().power,
            PowerState::On
        );
        let s = ChassisStatus::decode(&[0x40, 0, 0]).unwrap();
        assert_eq!((s.power, s.restore_policy), (PowerState::Off, 2));
        assert!(ChassisStatus::decode(&[0x01]).is_err());
        assert_eq!(chassis_control(ChassisControl::SoftOff).data, [0x05]);
        assert_eq!(chassis_control(ChassisControl::HardReset).data, [0x03]);
    }

    #[test]
    fn boot_options_bytes_match_ironic_raw_commands() {
        // Ironic's UEFI persistent PXE: raw 0x00 0x08 0x05 0xe0 0x04 0x00 0x00 0x00.
        let r = set_system_boot_options(BootOptions {
            device: BootDevice::Pxe,
            persistent: true,
            uefi: true,
            valid: true,
        });
        assert_eq!((r.netfn, r.cmd), (0x00, 0x08));
        assert_eq!(r.data, [0x05, 0xe0, 0x04, 0, 0, 0]);
        let r = set_system_boot_options(BootOptions {
            device: BootDevice::Disk,
            persistent: false,
            uefi: false,
            valid: true,
        });
        assert_eq!(r.data, [0x05, 0x80, 0x08, 0, 0, 0]);
        // ipmi_sim's answer after `chassis bootdev pxe`.
        let o = BootOptions::decode(&[0x01, 0x05, 0x00, 0x04, 0x00, 0x00, 0x00]).unwrap();
        assert_eq!(o.device, BootDevice::Pxe);
        assert!(!o.valid && !o.persistent);
        assert!(BootOptions::decode(&[0x01, 0x04, 0, 0]).is_err());
        assert!(BootOptions::decode(&[0x01, 0x05, 0, 0x20]).is_err());
        for name in ["pxe", "disk", "cdrom", "bios", "safe", "none"] {
            assert_eq!(BootDevice::parse(name).unwrap().name(), name);
        }
        assert_eq!(BootDevice::parse("usb"), None);
    }

    #[test]
    fn lan_config() {
        let r = get_lan_config(1, LanParam::MacAddress);
        assert_eq!(
            (r.netfn, r.cmd, r.data.clone()),
            (0x0c, 0x02, vec![1, 5, 0, 0])
        );
        assert_eq!(
            decode_ipv4(&[0x11, 10, 0, 0, 7]).unwrap(),
            Ipv4Addr::new(10, 0, 0, 7)
        );
        let mac = decode_mac(&[0x11, 0x52, 0x54, 0, 0x12, 0x34, 0x56]).unwrap();
        assert_eq!(mac_text(&mac), "52:54:00:12:34:56");
        assert!(decode_mac(&[0x11, 1, 2]).is_err());
        assert!(lan_config_data(&[]).is_err());
    }
}
