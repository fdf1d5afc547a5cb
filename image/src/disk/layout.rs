//! Partition layout of a partition-image deploy (IPA's `make_partitions`): by boot mode an
//! ESP (550 MiB) or a BIOS boot partition (1 MiB, GPT only), then ephemeral, swap and
//! root, 1 MiB aligned; room is left at the end for a config drive. Pure arithmetic.

use uuid::Uuid;

const MIB: u64 = 1 << 20;
/// IPA's `efi_system_partition_size`.
pub const ESP_MIB: u64 = 550;
/// IPA's `bios_boot_partition_size`.
pub const BIOS_BOOT_MIB: u64 = 1;
/// Left free at the end when root takes the rest of the disk: a 64 MiB config drive
/// partition plus alignment and the backup GPT.
pub const TAIL_RESERVE_MIB: u64 = 66;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Gpt,
    Mbr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    Uefi,
    Bios,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Esp,
    BiosBoot,
    Ephemeral,
    Swap,
    Root,
}

impl Role {
    /// GPT partition type GUID.
    pub fn gpt_type(self) -> &'static str {
        match self {
            Role::Esp => "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            Role::BiosBoot => "21686148-6449-6e6f-744e-656564454649",
            Role::Swap => "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
            Role::Ephemeral | Role::Root => "0fc63daf-8483-4772-8e79-3d69d8477de4",
        }
    }

    /// MBR partition type byte.
    pub fn mbr_type(self) -> u8 {
        match self {
            Role::Esp => 0xEF,
            Role::Swap => 0x82,
            Role::BiosBoot | Role::Ephemeral | Role::Root => 0x83,
        }
    }

    /// GPT partition name, and the key in `get_partition_uuids`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Esp => "efi-part",
            Role::BiosBoot => "bios-boot",
            Role::Ephemeral => "ephemeral-0",
            Role::Swap => "swap-part",
            Role::Root => "root",
        }
    }
}

/// One partition to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub role: Role,
    /// 1-based partition number.
    pub number: u32,
    pub first_lba: u64,
    pub sectors: u64,
    /// GPT unique partition GUID.
    pub uuid: Uuid,
}

impl Part {
    pub fn offset(&self, sector: u64) -> u64 {
        self.first_lba * sector
    }
    pub fn bytes(&self, sector: u64) -> u64 {
        self.sectors * sector
    }
}

/// What the operator asked for (`image_info` fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub label: Label,
    pub boot_mode: BootMode,
    /// None or 0: the rest of the disk (less the config drive reserve).
    pub root_mb: Option<u64>,
    pub swap_mb: u64,
    pub ephemeral_mb: u64,
    /// A config drive partition will be added at the end (needs an MBR slot).
    pub configdrive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub label: Label,
    pub sector: u64,
    pub disk_sectors: u64,
    pub parts: Vec<Part>,
}

impl Layout {
    pub fn part(&self, role: Role) -> Option<&Part> {
        self.parts.iter().find(|p| p.role == role)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("image_info.disk_label {0:?} is not supported: use gpt or msdos")]
    Label(String),
    #[error("image_info.deploy_boot_mode {0:?} is not supported: use uefi or bios")]
    BootMode(String),
    #[error("the partitions need {need_mib} MiB but the disk has {disk_mib} MiB: lower root_mb, swap_mb or ephemeral_mb, or choose a larger disk")]
    TooSmall { need_mib: u64, disk_mib: u64 },
    #[error("an MBR holds 4 primary partitions and this layout needs {0} (counting the config drive); use disk_label gpt or drop swap/ephemeral")]
    MbrSlots(usize),
    #[error("the disk is larger than the 2 TiB an MBR can address and the layout reaches past it; use disk_label gpt")]
    MbrTooLarge,
}

impl Label {
    /// `disk_label` as Ironic sends it; default GPT.
    pub fn parse(v: Option<&str>) -> Result<Label, LayoutError> {
        match v.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("gpt") => Ok(Label::Gpt),
            Some("msdos") | Some("mbr") | Some("dos") => Ok(Label::Mbr),
            Some(o) => Err(LayoutError::Label(o.to_owned())),
        }
    }
}

impl BootMode {
    /// `deploy_boot_mode` as Ironic sends it; default UEFI (Ironic's default too).
    pub fn parse(v: Option<&str>) -> Result<BootMode, LayoutError> {
        match v.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("uefi") => Ok(BootMode::Uefi),
            Some("bios") => Ok(BootMode::Bios),
            Some(o) => Err(LayoutError::BootMode(o.to_owned())),
        }
    }
}

/// Plan the partitions of a disk of `disk_bytes` with logical sector size `sector`.
pub fn plan(req: &Request, disk_bytes: u64, sector: u64) -> Result<Layout, LayoutError> {
    let mut sizes: Vec<(Role, Option<u64>)> = vec![];
    match (req.boot_mode, req.label) {
        (BootMode::Uefi, _) => sizes.push((Role::Esp, Some(ESP_MIB))),
        (BootMode::Bios, Label::Gpt) => sizes.push((Role::BiosBoot, Some(BIOS_BOOT_MIB))),
        (BootMode::Bios, Label::Mbr) => {}
    }
    if req.ephemeral_mb > 0 {
        sizes.push((Role::Ephemeral, Some(req.ephemeral_mb)));
    }
    if req.swap_mb > 0 {
        sizes.push((Role::Swap, Some(req.swap_mb)));
    }
    sizes.push((Role::Root, req.root_mb.filter(|&m| m > 0)));
    let slots = sizes.len() + usize::from(req.configdrive);
    if req.label == Label::Mbr && slots > 4 {
        return Err(LayoutError::MbrSlots(slots));
    }
    let disk_mib = disk_bytes / MIB;
    // 1 MiB at the start (tables, alignment), the reserve at the end.
    let fixed: u64 = sizes.iter().filter_map(|(_, s)| *s).sum();
    let root_fixed = sizes.iter().any(|(r, s)| *r == Role::Root && s.is_some());
    let need = 1 + fixed + if root_fixed { 1 } else { TAIL_RESERVE_MIB + 1 };
    if need > disk_mib {
        return Err(LayoutError::TooSmall {
            need_mib: need,
            disk_mib,
        });
    }
    let mib_sectors = MIB / sector;
    let mut at = mib_sectors;
    let mut parts = vec![];
    for (i, (role, mib)) in sizes.into_iter().enumerate() {
        let mib = mib.unwrap_or(disk_mib - need + 1);
        let sectors = mib * mib_sectors;
        parts.push(Part {
            role,
            number: i as u32 + 1,
            first_lba: at,
            sectors,
            uuid: Uuid::new_v4(),
        });
        at += sectors;
    }
    // MBR entries hold 32-bit sector numbers.
    if req.label == Label::Mbr && at > u64::from(u32::MAX) {
        return Err(LayoutError::MbrTooLarge);
    }
    Ok(Layout {
        label: req.label,
        sector,
        disk_sectors: disk_bytes / sector,
        parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(label: Label, boot_mode: BootMode) -> Request {
        Request {
            label,
            boot_mode,
            root_mb: Some(1024),
            swap_mb: 0,
            ephemeral_mb: 0,
            configdrive: false,
        }
    }

    #[test]
    fn uefi_gpt_has_esp_then_swap_then_root() {
        let r = Request {
            swap_mb: 128,
            ..req(Label::Gpt, BootMode::Uefi)
        };
        let l = plan(&r, 4 << 30, 512).unwrap();
        let roles: Vec<_> = l.parts.iter().map(|p| (p.role, p.number)).collect();
        assert_eq!(
            roles,
            vec![(Role::Esp, 1), (Role::Swap, 2), (Role::Root, 3)]
        );
        assert_eq!(l.parts[0].first_lba, 2048);
        assert_eq!(l.parts[0].bytes(512), 550 * MIB);
        assert_eq!(l.parts[1].first_lba, 2048 + 550 * 2048);
        assert_eq!(l.parts[2].bytes(512), 1024 * MIB);
    }

    #[test]
    fn bios_gets_a_bios_boot_partition_on_gpt_only() {
        let l = plan(&req(Label::Gpt, BootMode::Bios), 2 << 30, 512).unwrap();
        assert_eq!(l.parts[0].role, Role::BiosBoot);
        assert_eq!(l.parts[0].bytes(512), MIB);
        let l = plan(&req(Label::Mbr, BootMode::Bios), 2 << 30, 512).unwrap();
        assert_eq!(l.parts.len(), 1);
        assert_eq!(l.parts[0].role, Role::Root);
    }

    #[test]
    fn root_takes_the_rest_less_the_reserve_on_4kn() {
        let r = Request {
            root_mb: None,
            ..req(Label::Gpt, BootMode::Uefi)
        };
        let l = plan(&r, 2 << 30, 4096).unwrap();
        let root = l.part(Role::Root).unwrap();
        assert_eq!(root.first_lba, 256 + 550 * 256);
        let end = root.offset(4096) + root.bytes(4096);
        assert_eq!((2 << 30) - end, TAIL_RESERVE_MIB * MIB);
    }

    #[test]
    fn refusals_name_the_cause() {
        let e = plan(&req(Label::Gpt, BootMode::Uefi), 1 << 30, 512).unwrap_err();
        assert!(
            matches!(
                e,
                LayoutError::TooSmall {
                    need_mib: 1576,
                    disk_mib: 1024
                }
            ),
            "{e}"
        );
        let r = Request {
            swap_mb: 1,
            ephemeral_mb: 1,
            configdrive: true,
            ..req(Label::Mbr, BootMode::Uefi)
        };
        assert_eq!(plan(&r, 4 << 30, 512), Err(LayoutError::MbrSlots(5)));
        let r = Request {
            root_mb: None,
            ..req(Label::Mbr, BootMode::Bios)
        };
        assert_eq!(plan(&r, 3 << 40, 512), Err(LayoutError::MbrTooLarge));
        assert!(Label::parse(Some("sun")).is_err());
        assert_eq!(Label::parse(Some("msdos")), Ok(Label::Mbr));
        assert!(BootMode::parse(Some("legacy")).is_err());
    }
}
