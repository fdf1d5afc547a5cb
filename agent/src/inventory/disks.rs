//! Disks: every whole block device in `/sys/block` except RAM, loop, zram, floppy and
//! read-only optical devices, with identity (model, vendor, serial, WWN), geometry, SCSI
//! address, `/dev/disk/by-path` name and transport. The udev database fills in serial and WWN
//! the way lsblk does (udev first, sysfs second).

use std::collections::BTreeMap;
use std::path::Path;

use ferrite_proto::inventory::Disk;

use super::udev::{self, UdevEntry};
use super::{link_name, Root};
use crate::disk::hints::Exclusion;

/// Kernel name prefixes that are never disks a node can be deployed to.
const SKIPPED_PREFIXES: &[&str] = &["ram", "loop", "zram", "fd"];

pub(crate) fn collect(root: &Root) -> Vec<Disk> {
    let by_path = by_path_links(root);
    root.list("/sys/block")
        .into_iter()
        .filter_map(|name| disk(root, &name, &by_path))
        .collect()
}

fn disk(root: &Root, name: &str, by_path: &BTreeMap<String, String>) -> Option<Disk> {
    if SKIPPED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    let base = format!("/sys/block/{name}");
    let read = |rel: &str| root.read(&format!("{base}/{rel}"));
    let read_only = read("ro").as_deref() == Some("1");
    if name.starts_with("sr") && read_only {
        return None;
    }
    // Device-mapper volumes other than multipath are views of other disks.
    if name.starts_with("dm-")
        && !read("dm/uuid").is_some_and(|u| u.to_ascii_lowercase().starts_with("mpath-"))
    {
        return None;
    }
    let sectors: u64 = read("size")?.parse().ok()?;
    let size = sectors.checked_mul(512)?;
    // Zero-sized entries are empty card readers and virtual floppies, as in IPA.
    if size == 0 {
        return None;
    }
    let udev = read("dev")
        .and_then(|dev| udev::block_entry(root, &dev))
        .unwrap_or_default();
    let sys_path = std::fs::canonicalize(root.path(&base))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let is_nvme = name.starts_with("nvme");
    let ids = identity(&udev, read("device/wwid").or_else(|| read("wwid")), is_nvme);
    let serial = udev
        .get("ID_SCSI_SERIAL")
        .or_else(|| udev.get("ID_SERIAL_SHORT"))
        .map(str::to_string)
        .or_else(|| read("serial"))
        .or_else(|| read("device/serial"))
        .or_else(|| {
            std::fs::read(root.path(&format!("{base}/device/vpd_pg80")))
                .ok()
                .and_then(|page| decode_vpd_serial(&page))
        });
    let by_path = by_path.get(name).cloned().or_else(|| {
        udev.links
            .iter()
            .filter(|l| l.starts_with("disk/by-path/"))
            .min()
            .map(|l| format!("/dev/{l}"))
    });
    Some(Disk {
        name: format!("/dev/{name}"),
        model: read("device/model"),
        size,
        rotational: read("queue/rotational").as_deref() == Some("1"),
        wwn: ids.wwn,
        serial,
        vendor: read("device/vendor"),
        wwn_with_extension: ids.with_extension,
        wwn_vendor_extension: ids.vendor_extension,
        hctl: root
            .list(&format!("{base}/device/scsi_device"))
            .into_iter()
            .next(),
        by_path,
        logical_sectors: read("queue/logical_block_size").and_then(|s| s.parse().ok()),
        physical_sectors: read("queue/physical_block_size").and_then(|s| s.parse().ok()),
        tran: transport(name, &sys_path).map(str::to_string),
    })
}

/// Why `disk` must not be chosen as the install disk without a root device hint, or `None`:
/// USB and removable media (a stick or card left in the server is not where an operator
/// wants the OS), and the paths of a multipath device (the `dm-` device above them is the
/// disk; writing one path behind its back corrupts it), as IPA skips them.
pub fn install_exclusion(root: &Path, disk: &Disk) -> Option<Exclusion> {
    let root = Root::new(root).ok()?;
    let kname = disk.name.strip_prefix("/dev/").unwrap_or(&disk.name);
    if let Some(holder) = multipath_holder(&root, kname) {
        return Some(Exclusion::MultipathPath(format!("/dev/{holder}")));
    }
    if disk.tran.as_deref() == Some("usb") {
        return Some(Exclusion::Usb);
    }
    if root
        .read(&format!("/sys/block/{kname}/removable"))
        .as_deref()
        == Some("1")
    {
        return Some(Exclusion::Removable);
    }
    None
}

/// The multipath `dm-` device holding `kname`, if it is one of its paths.
pub(crate) fn multipath_holder(root: &Root, kname: &str) -> Option<String> {
    root.list(&format!("/sys/block/{kname}/holders"))
        .into_iter()
        .find(|h| {
            root.read(&format!("/sys/block/{h}/dm/uuid"))
                .is_some_and(|u| u.to_ascii_lowercase().starts_with("mpath-"))
        })
}

/// World-wide name fields as lsblk and udev report them.
#[derive(Debug, Default, PartialEq)]
pub struct WwnIds {
    pub wwn: Option<String>,
    pub with_extension: Option<String>,
    pub vendor_extension: Option<String>,
}

/// WWN fields from udev (`ID_WWN*`), else derived from the sysfs `wwid` attribute.
/// Like lsblk, `wwn` prefers the value with the vendor extension.
fn identity(udev: &UdevEntry, wwid: Option<String>, is_nvme: bool) -> WwnIds {
    let from_sysfs = wwid.map(|w| wwn_from_wwid(&w, is_nvme)).unwrap_or_default();
    let with_extension = udev
        .get("ID_WWN_WITH_EXTENSION")
        .map(str::to_string)
        .or(from_sysfs.with_extension);
    let plain = udev.get("ID_WWN").map(str::to_string).or(from_sysfs.wwn);
    WwnIds {
        wwn: with_extension.clone().or(plain),
        with_extension,
        vendor_extension: udev
            .get("ID_WWN_VENDOR_EXTENSION")
            .map(str::to_string)
            .or(from_sysfs.vendor_extension),
    }
}

/// udev's spelling of a sysfs `wwid`: SCSI `naa.<hex>` becomes `0x<16 hex>` plus the vendor
/// extension of 32-digit (NAA 6) names; NVMe keeps its `eui.`/`nguid.`/`nvme.` form as udev
/// does; T10 vendor IDs carry no WWN.
pub fn wwn_from_wwid(wwid: &str, is_nvme: bool) -> WwnIds {
    let wwid = wwid.trim();
    if is_nvme {
        return WwnIds {
            wwn: (!wwid.is_empty()).then(|| wwid.to_string()),
            ..WwnIds::default()
        };
    }
    let Some((kind, hex)) = wwid.split_once('.') else {
        return WwnIds::default();
    };
    let hex = hex.to_ascii_lowercase();
    if !matches!(kind, "naa" | "eui") || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return WwnIds::default();
    }
    match hex.len() {
        16 => WwnIds {
            wwn: Some(format!("0x{hex}")),
            with_extension: Some(format!("0x{hex}")),
            vendor_extension: None,
        },
        32 => WwnIds {
            wwn: Some(format!("0x{}", &hex[..16])),
            with_extension: Some(format!("0x{hex}")),
            vendor_extension: Some(format!("0x{}", &hex[16..])),
        },
        _ => WwnIds::default(),
    }
}

/// The product serial number in a SCSI VPD page 0x80 (4-byte header, then ASCII).
pub fn decode_vpd_serial(page: &[u8]) -> Option<String> {
    if page.len() < 4 || page[1] != 0x80 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([page[2], page[3]]));
    let body = page.get(4..4 + len).unwrap_or(&page[4..]);
    let text = String::from_utf8_lossy(body);
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!text.is_empty() && text.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        .then(|| text.to_string())
}

/// The transport lsblk would name, judged from the kernel name and the resolved sysfs path.
pub fn transport(name: &str, sys_path: &str) -> Option<&'static str> {
    if name.starts_with("nvme") {
        return Some("nvme");
    }
    if name.starts_with("mmcblk") {
        return Some("mmc");
    }
    if sys_path.contains("/usb") {
        return Some("usb");
    }
    let scsi = sys_path.contains("/host") && sys_path.contains("/target");
    if scsi {
        if sys_path.contains("/end_device-") || sys_path.contains("/expander-") {
            return Some("sas");
        }
        if sys_path.contains("/rport-") {
            return Some("fc");
        }
        if sys_path.contains("/session") {
            return Some("iscsi");
        }
        if sys_path.contains("/ata") {
            return Some("sata");
        }
        return None;
    }
    if sys_path.contains("/virtio") {
        return Some("virtio");
    }
    None
}

/// `/dev/disk/by-path` links keyed by the kernel name they point to (first name in sort
/// order when several do, e.g. `…-ata-1` and `…-ata-1.0`).
fn by_path_links(root: &Root) -> BTreeMap<String, String> {
    let dir = root.path("/dev/disk/by-path");
    let mut map = BTreeMap::new();
    for link in root.list("/dev/disk/by-path") {
        if let Some(target) = link_name(&dir.join(&link)) {
            map.entry(target)
                .or_insert_with(|| format!("/dev/disk/by-path/{link}"));
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 finding 2: what sysfs says about USB, removable media and multipath paths.
    #[test]
    fn install_exclusions_from_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let put = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put("sys/block/sda/removable", "0\n");
        put("sys/block/sdb/removable", "1\n");
        put("sys/block/sdc/removable", "0\n");
        std::fs::create_dir_all(dir.path().join("sys/block/sdc/holders/dm-0")).unwrap();
        put(
            "sys/block/dm-0/dm/uuid",
            "mpath-3600508b400105e210000900000490000\n",
        );
        std::fs::create_dir_all(dir.path().join("sys/block/sdd/holders/dm-1")).unwrap();
        put("sys/block/dm-1/dm/uuid", "LVM-abc\n");
        let d = |name: &str, tran: Option<&str>| Disk {
            name: format!("/dev/{name}"),
            tran: tran.map(str::to_string),
            ..Disk::default()
        };
        let x = |disk: Disk| install_exclusion(dir.path(), &disk);
        assert_eq!(x(d("sda", Some("sata"))), None);
        assert_eq!(x(d("sda", Some("usb"))), Some(Exclusion::Usb));
        assert_eq!(x(d("sdb", None)), Some(Exclusion::Removable));
        assert_eq!(
            x(d("sdc", Some("sas"))),
            Some(Exclusion::MultipathPath("/dev/dm-0".into()))
        );
        assert_eq!(x(d("sdd", None)), None, "an LVM holder is not multipath");
        assert_eq!(
            x(d("dm-0", None)),
            None,
            "the multipath device itself is fine"
        );
    }

    #[test]
    fn wwids() {
        let sata = wwn_from_wwid("naa.5000C500A1B2C3D4\n", false);
        assert_eq!(sata.wwn.as_deref(), Some("0x5000c500a1b2c3d4"));
        assert_eq!(sata.with_extension.as_deref(), Some("0x5000c500a1b2c3d4"));
        assert_eq!(sata.vendor_extension, None);
        let naa6 = wwn_from_wwid("naa.600508b1001c4d6f0123456789abcdef", false);
        assert_eq!(naa6.wwn.as_deref(), Some("0x600508b1001c4d6f"));
        assert_eq!(
            naa6.with_extension.as_deref(),
            Some("0x600508b1001c4d6f0123456789abcdef")
        );
        assert_eq!(naa6.vendor_extension.as_deref(), Some("0x0123456789abcdef"));
        assert_eq!(
            wwn_from_wwid("t10.ATA     QEMU HARDDISK    QM00001", false),
            WwnIds::default()
        );
        assert_eq!(wwn_from_wwid("naa.xyz", false), WwnIds::default());
        let nvme = wwn_from_wwid("eui.0025385b71b07e2f", true);
        assert_eq!(nvme.wwn.as_deref(), Some("eui.0025385b71b07e2f"));
    }

    #[test]
    fn udev_wwn_wins_and_prefers_extension() {
        let udev = udev::parse_udev_db(
            "E:ID_WWN=0x600508b1001c4d6f\nE:ID_WWN_WITH_EXTENSION=0x600508b1001c4d6f0123\n\
             E:ID_WWN_VENDOR_EXTENSION=0x0123\n",
        );
        let ids = identity(&udev, Some("naa.5000c500a1b2c3d4".into()), false);
        assert_eq!(ids.wwn.as_deref(), Some("0x600508b1001c4d6f0123"));
        assert_eq!(ids.vendor_extension.as_deref(), Some("0x0123"));
    }

    #[test]
    fn vpd_serial() {
        let mut page = vec![0, 0x80, 0, 10];
        page.extend_from_slice(b"  ZC1234AB");
        assert_eq!(decode_vpd_serial(&page).as_deref(), Some("ZC1234AB"));
        assert_eq!(decode_vpd_serial(&[0, 0x83, 0, 0]), None);
        assert_eq!(decode_vpd_serial(&[0, 0x80]), None);
        assert_eq!(decode_vpd_serial(&[0, 0x80, 0, 2, 0xff, 0x01]), None);
    }

    #[test]
    fn transports() {
        let sata = "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda";
        assert_eq!(transport("sda", sata), Some("sata"));
        let sas = "/sys/devices/pci0000:00/0000:3b:00.0/host2/port-2:0/end_device-2:0/\
                   target2:0:0/2:0:0:0/block/sdb";
        assert_eq!(transport("sdb", sas), Some("sas"));
        let usb = "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/\
                   6:0:0:0/block/sdc";
        assert_eq!(transport("sdc", usb), Some("usb"));
        let vd = "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda";
        assert_eq!(transport("vda", vd), Some("virtio"));
        let vscsi =
            "/sys/devices/pci0000:00/0000:00:05.0/virtio3/host0/target0:0:0/0:0:0:0/block/sda";
        assert_eq!(transport("sda", vscsi), None);
        let iscsi = "/sys/devices/platform/host3/session1/target3:0:0/3:0:0:0/block/sdd";
        assert_eq!(transport("sdd", iscsi), Some("iscsi"));
        let nvme = "/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1";
        assert_eq!(transport("nvme0n1", nvme), Some("nvme"));
        assert_eq!(transport("md0", "/sys/devices/virtual/block/md0"), None);
    }
}
