//! Chassis commands (netFn 0x00): status, control, system boot options (boot flags).

use std::fmt;

use super::{need, NETFN_CHASSIS};
use crate::codec::message::Request;
use crate::codec::DecodeError;

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
    /// Pulse diagnostic interrupt (NMI), as `ipmitool power diag` sends it.
    DiagnosticInterrupt,
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
            ChassisControl::DiagnosticInterrupt => 0x04,
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

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(
            chassis_control(ChassisControl::DiagnosticInterrupt).data,
            [0x04]
        );
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
}
