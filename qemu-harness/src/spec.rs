//! What a VM is made of, as plain data: the builder fills a [`VmSpec`], the chassis program
//! reads it back from the node's state directory, and [`VmSpec::qemu_args`] turns it into a
//! QEMU command line (pure, unit-tested).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// CPU emulation. TCG always works; KVM only when asked for (guests hang with it on some
/// hosts, see ARCHITECTURE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Tcg,
    Kvm,
}

/// The first boot device, as a BMC sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootDevice {
    /// PXE first, then the disk (a server's usual order).
    Network,
    /// The disk only. The virtual CD is ejected (the BMC's virtual media is for one boot).
    Disk,
    /// The virtual CD (the node's [`VmSpec::cdrom`]), as a BMC's virtual media boots it.
    Cdrom,
}

impl BootDevice {
    fn order(self) -> &'static str {
        match self {
            BootDevice::Network => "order=nc",
            BootDevice::Disk => "order=c",
            BootDevice::Cdrom => "order=d",
        }
    }
}

/// The node's firmware.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS, QEMU's default; boots the NIC's iPXE ROM for PXE.
    #[default]
    Bios,
    /// OVMF (Debian `ovmf`): `code` read-only, `vars` the node's own NVRAM copy, kept across
    /// power cycles as a server's is. Boot order: the virtual CD when asked (bootindex), else
    /// the NVRAM's `BootOrder` (what the agent's `install_bootloader` sets). Network boot
    /// runs the node's iPXE script in the harness ([`VmSpec::netboot`], [`crate::netboot`]):
    /// the UEFI PXE client needs a TFTP boot file and a DHCP server that tells iPXE from
    /// firmware, which QEMU's user networking cannot be.
    Uefi { code: PathBuf, vars: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

/// A virtio block disk with a serial number (what the agent reports as `serial`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub path: PathBuf,
    pub format: DiskFormat,
    pub serial: String,
}

/// A NIC on QEMU user-mode networking: the guest reaches the host's loopback as 10.0.2.2;
/// `hostfwd` maps 127.0.0.1:host → guest ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub mac: String,
    /// `virtio-net-pci` (default) or `e1000`.
    pub model: String,
    pub hostfwd: Vec<(u16, u16)>,
    /// DHCP boot file for PXE (an `http://10.0.2.2:PORT/…` iPXE script URL, or a TFTP name).
    pub bootfile: Option<String>,
    pub tftp_root: Option<PathBuf>,
}

/// SMBIOS type 1 (system) strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Smbios {
    pub manufacturer: String,
    pub product: String,
    pub serial: String,
}

/// Boot a kernel directly instead of through the firmware (fast tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
}

/// Everything QEMU is started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub name: String,
    pub qemu: String,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub disks: Vec<Disk>,
    pub nics: Vec<Nic>,
    pub smbios: Option<Smbios>,
    pub kernel: Option<DirectKernel>,
    #[serde(default)]
    pub firmware: Firmware,
    /// A UEFI node's network boot: the iPXE script URL (as the guest sees it) the harness
    /// runs for it when it boots from [`BootDevice::Network`] (see [`crate::netboot`]).
    #[serde(default)]
    pub netboot: Option<String>,
    /// An ISO in the node's virtual CD drive, attached while it boots from [`BootDevice::Cdrom`].
    #[serde(default)]
    pub cdrom: Option<PathBuf>,
    /// TCP port of the BMC's `serial kcs` listener (ipmi-bmc-extern connects to it).
    pub ipmi_port: Option<u16>,
    /// Serial console output is appended here.
    pub console: PathBuf,
    pub extra_args: Vec<String>,
}

impl VmSpec {
    /// The QEMU command line (without the program) for booting from `boot`.
    pub fn qemu_args(&self, boot: BootDevice) -> Vec<String> {
        let mut a: Vec<String> = vec![];
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        let accel = match self.accel {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        };
        push(&["-name", &self.name, "-machine", "pc", "-accel", accel]);
        push(&[
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ]);
        // -nographic makes SeaBIOS and iPXE print on the serial port too.
        push(&["-nographic", "-monitor", "none"]);
        push(&[
            "-chardev",
            &format!("file,id=console0,path={},append=on", self.console.display()),
            "-serial",
            "chardev:console0",
        ]);
        push(&["-boot", boot.order()]);
        if let Firmware::Uefi { code, vars } = &self.firmware {
            push(&[
                "-drive",
                &format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    code.display()
                ),
                "-drive",
                &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
            ]);
        }
        if let (Some(iso), BootDevice::Cdrom) = (&self.cdrom, boot) {
            let index = match self.firmware {
                Firmware::Uefi { .. } => ",bootindex=0",
                Firmware::Bios => "",
            };
            push(&[
                "-drive",
                &format!(
                    "file={},if=none,id=cd0,media=cdrom,readonly=on",
                    iso.display()
                ),
                "-device",
                &format!("ide-cd,drive=cd0{index}"),
            ]);
        }
        if let Some(s) = &self.smbios {
            push(&[
                "-smbios",
                &format!(
                    "type=1,manufacturer={},product={},serial={}",
                    s.manufacturer, s.product, s.serial
                ),
            ]);
        }
        for (i, d) in self.disks.iter().enumerate() {
            let format = match d.format {
                DiskFormat::Raw => "raw",
                DiskFormat::Qcow2 => "qcow2",
            };
            // discard=unmap + detect-zeroes=unmap: a guest erase (write-zeroes, or zero
            // buffers) punches holes in the backing file instead of allocating it, so a
            // full erase of a test node's disk cannot fill the host's disk.
            push(&[
                "-drive",
                &format!(
                    "file={},if=none,id=disk{i},format={format},cache=unsafe,discard=unmap,detect-zeroes=unmap",
                    d.path.display()
                ),
                "-device",
                &format!("virtio-blk-pci,drive=disk{i},serial={}", d.serial),
            ]);
        }
        for (i, n) in self.nics.iter().enumerate() {
            let mut netdev = format!("user,id=net{i}");
            for (host, guest) in &n.hostfwd {
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
            }
            if let Some(t) = &n.tftp_root {
                netdev.push_str(&format!(",tftp={}", t.display()));
            }
            if let Some(b) = &n.bootfile {
                netdev.push_str(&format!(",bootfile={b}"));
            }
            push(&[
                "-netdev",
                &netdev,
                "-device",
                &format!("{},netdev=net{i},mac={}", n.model, n.mac),
            ]);
        }
        if self.nics.is_empty() {
            push(&["-nic", "none"]);
        }
        if let Some(port) = self.ipmi_port {
            push(&[
                "-chardev",
                &format!("socket,id=ipmi0,host=127.0.0.1,port={port},reconnect=10"),
                "-device",
                "ipmi-bmc-extern,chardev=ipmi0,id=bmc0",
                "-device",
                "isa-ipmi-kcs,bmc=bmc0",
            ]);
        }
        if let Some(k) = &self.kernel {
            push(&[
                "-kernel",
                &k.kernel.display().to_string(),
                "-initrd",
                &k.initrd.display().to_string(),
                "-append",
                &k.append,
            ]);
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec {
            name: "node-0".into(),
            qemu: "qemu-system-x86_64".into(),
            accel: Accel::Tcg,
            memory_mib: 256,
            cpus: 1,
            disks: vec![Disk {
                path: "/tmp/d0.raw".into(),
                format: DiskFormat::Raw,
                serial: "FERRITE-D0".into(),
            }],
            nics: vec![Nic {
                mac: "52:54:00:fe:00:01".into(),
                model: "virtio-net-pci".into(),
                hostfwd: vec![(40001, 9999)],
                bootfile: Some("http://10.0.2.2:8080/boot.ipxe".into()),
                tftp_root: None,
            }],
            smbios: Some(Smbios {
                manufacturer: "Ferrite".into(),
                product: "QEMU node".into(),
                serial: "SN-0".into(),
            }),
            kernel: None,
            netboot: None,
            firmware: Firmware::Bios,
            cdrom: None,
            ipmi_port: Some(9002),
            console: "/tmp/console.log".into(),
            extra_args: vec![],
        }
    }

    fn joined(boot: BootDevice) -> String {
        spec().qemu_args(boot).join(" ")
    }

    #[test]
    fn command_line_has_every_part() {
        let a = joined(BootDevice::Network);
        for needle in [
            "-accel tcg",
            "-m 256",
            "-boot order=nc",
            "type=1,manufacturer=Ferrite,product=QEMU node,serial=SN-0",
            "virtio-blk-pci,drive=disk0,serial=FERRITE-D0",
            "cache=unsafe,discard=unmap,detect-zeroes=unmap",
            "user,id=net0,hostfwd=tcp:127.0.0.1:40001-:9999,bootfile=http://10.0.2.2:8080/boot.ipxe",
            "virtio-net-pci,netdev=net0,mac=52:54:00:fe:00:01",
            "socket,id=ipmi0,host=127.0.0.1,port=9002,reconnect=10",
            "isa-ipmi-kcs,bmc=bmc0",
            "file,id=console0,path=/tmp/console.log,append=on",
        ] {
            assert!(a.contains(needle), "missing {needle:?} in {a}");
        }
        assert!(joined(BootDevice::Disk).contains("-boot order=c "));
        assert!(!a.contains("-kernel"));
    }

    #[test]
    fn uefi_has_its_flash_and_the_cd_boots_only_when_asked() {
        let mut s = spec();
        s.firmware = Firmware::Uefi {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars: "/n/vars.fd".into(),
        };
        s.cdrom = Some("/n/boot.iso".into());
        let cd = s.qemu_args(BootDevice::Cdrom).join(" ");
        for needle in [
            "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            "if=pflash,format=raw,unit=1,file=/n/vars.fd",
            "file=/n/boot.iso,if=none,id=cd0,media=cdrom,readonly=on",
            "ide-cd,drive=cd0,bootindex=0",
        ] {
            assert!(cd.contains(needle), "missing {needle:?} in {cd}");
        }
        let disk = s.qemu_args(BootDevice::Disk).join(" ");
        assert!(
            !disk.contains("cd0"),
            "the CD is ejected for a disk boot: {disk}"
        );
        assert!(
            !disk.contains("bootindex"),
            "UEFI keeps its NVRAM order: {disk}"
        );
        // BIOS: the CD by boot order, no flash.
        let mut b = spec();
        b.cdrom = Some("/n/boot.iso".into());
        let bios = b.qemu_args(BootDevice::Cdrom).join(" ");
        assert!(bios.contains("-boot order=d ") && bios.contains("ide-cd,drive=cd0 "));
        assert!(!bios.contains("pflash"));
        // Specs written before these fields existed still read.
        let old = serde_json::to_value(spec()).unwrap();
        let mut old = old.as_object().unwrap().clone();
        old.remove("firmware");
        old.remove("cdrom");
        let back: VmSpec = serde_json::from_value(old.into()).unwrap();
        assert_eq!(back.firmware, Firmware::Bios);
    }

    #[test]
    fn spec_round_trips_through_json() {
        let s = spec();
        let back: VmSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(s, back);
    }
}
