//! Builds the real ramdisk and test image from the pinned Debian packages (downloaded once into
//! target/ramdisk-cache) and checks their contents, reproducibility and budgets.

use std::io::Read;
use std::path::PathBuf;

use ferrite_ramdisk_build::cpio::{Archive, Kind};
use ferrite_ramdisk_build::{
    coldplug, deb, ramdisk, test_image, Error, Profile, RamdiskBuilder, TestImageBuilder,
};

fn cache() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ramdisk-cache")
}

/// The builder takes the agent as an input file; any fixed bytes show reproducibility.
fn stand_in_agent(dir: &std::path::Path) -> PathBuf {
    let agent = dir.join("ferrite-agent");
    std::fs::write(&agent, b"\x7fELF stand-in agent for the build test").unwrap();
    agent
}

fn unpack(initramfs: &[u8]) -> Archive {
    let mut cpio = vec![];
    flate2::read::GzDecoder::new(initramfs)
        .read_to_end(&mut cpio)
        .unwrap();
    Archive::parse(&cpio).unwrap()
}

#[test]
fn ramdisk_is_reproducible_complete_and_within_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = stand_in_agent(tmp.path());
    let a = RamdiskBuilder::new(&agent, tmp.path().join("a"))
        .cache_dir(cache())
        .build()
        .unwrap();
    let b = RamdiskBuilder::new(&agent, tmp.path().join("b"))
        .cache_dir(cache())
        .build()
        .unwrap();
    assert_eq!(a, b, "two builds from the same inputs differ");
    let initrd = std::fs::read(tmp.path().join("a").join(ramdisk::INITRAMFS_FILE)).unwrap();
    assert_eq!(
        initrd,
        std::fs::read(tmp.path().join("b").join(ramdisk::INITRAMFS_FILE)).unwrap()
    );
    assert_eq!(deb::sha256_hex(&initrd), a.initramfs.sha256);
    assert_eq!(initrd.len() as u64, a.initramfs.bytes);
    assert!(
        a.initramfs.bytes <= 12 * 1024 * 1024,
        "{} bytes",
        a.initramfs.bytes
    );
    let kernel = std::fs::read(tmp.path().join("a").join(ramdisk::KERNEL_FILE)).unwrap();
    assert_eq!(kernel.len() as u64, a.kernel.bytes);
    assert_eq!(&kernel[0x202..0x206], b"HdrS", "not a bzImage");

    let manifest: ramdisk::Manifest = serde_json::from_slice(
        &std::fs::read(tmp.path().join("a").join(ramdisk::MANIFEST_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest, a);
    assert_eq!(manifest.kernel_package.name, deb::KERNEL.name);

    let archive = unpack(&initrd);
    let init = archive.get("init").unwrap();
    assert_eq!(init.perm, 0o755);
    let Kind::File(script) = &init.kind else {
        panic!("init is not a file")
    };
    let script = String::from_utf8_lossy(script);
    for needle in [
        "devtmpfs",
        "udhcpc",
        "exec /etc/ferrite/agent-supervisor.sh",
    ] {
        assert!(script.contains(needle), "init lacks {needle}");
    }
    let supervisor = archive.get("etc/ferrite/agent-supervisor.sh").unwrap();
    assert_eq!(supervisor.perm, 0o755);
    let Kind::File(script) = &supervisor.kind else {
        panic!("the agent supervisor is not a file")
    };
    let script = String::from_utf8_lossy(script);
    for needle in ["/bin/ferrite-agent", "ferrite-debug-shell=1", "cttyhack sh"] {
        assert!(script.contains(needle), "the supervisor lacks {needle}");
    }
    assert_eq!(
        archive.get("bin/ferrite-agent").unwrap().kind,
        Kind::File(std::fs::read(&agent).unwrap())
    );
    assert_eq!(
        archive.get("dev/console").unwrap().kind,
        Kind::CharDev { major: 5, minor: 1 }
    );
    assert!(matches!(
        archive.get("sbin/udhcpc").unwrap().kind,
        Kind::Symlink(_)
    ));
    // The load list puts dependencies first.
    let Kind::File(list) = &archive.get("etc/ferrite/modules").unwrap().kind else {
        panic!("no module list")
    };
    let list = String::from_utf8_lossy(list);
    let pos = |m: &str| {
        list.lines()
            .position(|l| l.ends_with(&format!("/{m}.ko")))
            .unwrap_or_else(|| panic!("{m} not in the load list"))
    };
    assert!(pos("virtio") < pos("virtio_pci"));
    assert!(pos("net_failover") < pos("virtio_net"));
    assert!(pos("ipmi_msghandler") < pos("ipmi_si"));
    assert!(pos("scsi_mod") < pos("sd_mod"));
    for m in [
        "e1000",
        "e1000e",
        "nvme",
        "ahci",
        "ipmi_devintf",
        "virtio_blk",
        "virtio_scsi",
    ] {
        pos(m);
        let path = list.lines().nth(pos(m)).unwrap().trim_start_matches('/');
        assert!(
            matches!(archive.get(path).unwrap().kind, Kind::File(_)),
            "{m}"
        );
    }
    assert!(manifest.modules.contains(&"virtio_net".to_string()));
    assert_eq!(manifest.profile, Profile::Virtual);
    // The cold-plug table the agent reads at boot.
    let Kind::File(table) = &archive.get(coldplug::TABLE).unwrap().kind else {
        panic!("no cold-plug table")
    };
    let table = String::from_utf8_lossy(table);
    assert!(
        table.contains("alias virtio:d00000001v* virtio_net\n"),
        "{table}"
    );
    assert!(table.contains("always sd_mod\n"));
    assert!(table.contains("with ipmi_devintf ipmi_si\n"));
    assert!(init_has_coldplug(&archive), "init does not cold-plug");
}

fn init_has_coldplug(archive: &Archive) -> bool {
    let Kind::File(init) = &archive.get("init").unwrap().kind else {
        return false;
    };
    String::from_utf8_lossy(init).contains("/bin/ferrite-agent coldplug")
}

/// The `server` profile (issue 18): within its 48 MiB budget, every listed NIC and
/// controller driver in, their aliases in the cold-plug table, firmware from the Debian
/// packages, and sizes by category in the manifest.
#[test]
fn server_ramdisk_has_the_server_drivers_within_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = stand_in_agent(tmp.path());
    let m = RamdiskBuilder::new(&agent, tmp.path().join("server"))
        .cache_dir(cache())
        .profile(Profile::Server)
        .build()
        .unwrap();
    assert_eq!(m.profile, Profile::Server);
    assert!(
        m.initramfs.bytes <= 48 * 1024 * 1024,
        "{}",
        m.initramfs.bytes
    );
    assert_eq!(m.initramfs_budget_bytes, 48 * 1024 * 1024);
    for d in &m.module_details {
        assert!(!d.reason.is_empty() && !d.category.is_empty(), "{d:?}");
    }
    let detail = |name: &str| {
        m.module_details
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{name} not in the server ramdisk"))
    };
    assert_eq!(detail("mpt3sas").load, "match");
    assert_eq!(detail("mpt3sas").category, "storage");
    assert_eq!(detail("scsi_transport_sas").load, "dependency");
    assert_eq!(detail("mlx4_en").load, "with:mlx4_core");
    assert_eq!(detail("ixgbe").category, "nic");
    // bnx2x's firmware comes from firmware-bnx2x.
    assert!(
        !detail("bnx2x").firmware.is_empty(),
        "{:?}",
        m.firmware_missing
    );
    let categories: Vec<&str> = m.sizes.iter().map(|c| c.category.as_str()).collect();
    for c in [
        "nic", "storage", "usb", "bmc", "fs", "agent", "busybox", "base",
    ] {
        assert!(categories.contains(&c), "{c} missing from {categories:?}");
    }
    let files: u64 = m.sizes.iter().map(|c| c.bytes).sum();
    assert!(files < m.initramfs_uncompressed_bytes);

    let archive =
        unpack(&std::fs::read(tmp.path().join("server").join(ramdisk::INITRAMFS_FILE)).unwrap());
    let Kind::File(table) = &archive.get(coldplug::TABLE).unwrap().kind else {
        panic!("no cold-plug table")
    };
    let table = String::from_utf8_lossy(table);
    // The issue's example: e1000e's alias for the 82574L.
    assert!(table.contains("alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n"));
    assert!(table.contains("alias pci:v00001000d00000060sv*sd*bc*sc*i* megaraid_sas\n"));
    assert!(table.contains("always usb_storage\n"));
    let fw = &detail("bnx2x").firmware[0];
    assert!(matches!(
        archive.get(&format!("lib/firmware/{fw}")).unwrap().kind,
        Kind::File(_)
    ));
}

#[test]
fn missing_agent_and_tight_budget_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let e = RamdiskBuilder::new(tmp.path().join("no-agent"), tmp.path().join("out"))
        .cache_dir(cache())
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::MissingInput { .. }));
    assert!(e.to_string().contains("cargo xtask agent"), "{e}");

    let e = RamdiskBuilder::new(stand_in_agent(tmp.path()), tmp.path().join("out"))
        .cache_dir(cache())
        .budget(1024 * 1024)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::OverBudget { .. }), "{e}");
    assert!(!tmp
        .path()
        .join("out")
        .join(ramdisk::INITRAMFS_FILE)
        .exists());

    let e = RamdiskBuilder::new(stand_in_agent(tmp.path()), tmp.path().join("out"))
        .cache_dir(cache())
        .modules(&["virtio_net", "no_such_driver"])
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("no_such_driver"), "{e}");
}

#[test]
fn test_image_is_reproducible_and_takes_a_config_drive() {
    let tmp = tempfile::tempdir().unwrap();
    let a = TestImageBuilder::new(tmp.path().join("a"))
        .cache_dir(cache())
        .build()
        .unwrap();
    let b = TestImageBuilder::new(tmp.path().join("b"))
        .cache_dir(cache())
        .build()
        .unwrap();
    assert_eq!(a.raw_sha256, b.raw_sha256);
    let partition = std::fs::read(&a.partition).unwrap();
    assert_eq!(deb::sha256_hex(&partition), a.partition_sha256);
    assert_eq!(
        ferrite_image::disk::mkfs::filesystem_uuid(&partition[..68 << 10])
            .unwrap()
            .to_string(),
        ferrite_ramdisk_build::partition_image::ROOT_FS_UUID,
        "an ext4 root with the UUID its GRUB searches for"
    );
    let raw = std::fs::read(&a.raw).unwrap();
    assert_eq!(deb::sha256_hex(&raw), a.raw_sha256);
    let qcow2 = std::fs::read(&a.qcow2).unwrap();
    assert_eq!(&qcow2[..4], b"QFI\xfb");
    assert_eq!(deb::sha256_hex(&qcow2), a.qcow2_sha256);
    let sums = std::fs::read_to_string(tmp.path().join("a").join(test_image::SUMS_FILE)).unwrap();
    assert!(sums.contains(&format!("{}  {}", a.raw_sha256, test_image::RAW_FILE)));
    assert!(sums.contains(&format!("{}  {}", a.qcow2_sha256, test_image::QCOW2_FILE)));
    assert!(sums.contains(&format!(
        "{}  {}",
        a.partition_sha256,
        ferrite_ramdisk_build::partition_image::PARTITION_FILE
    )));
    let s0: [u8; 512] = raw[..512].try_into().unwrap();
    let parts = ferrite_image::disk::mbr::read_table(&s0).unwrap();
    let p1 = parts[0].unwrap();
    assert!(p1.bootable);
    assert_eq!(
        &raw[p1.start as usize * 512 + 3..][..8],
        b"SYSLINUX",
        "no syslinux VBR"
    );

    let disk = tmp.path().join("disk.raw");
    std::fs::copy(&a.raw, &disk).unwrap();
    test_image::add_config_drive(&disk, r#"{"uuid": "u-1", "hostname": "h"}"#).unwrap();
    let raw = std::fs::read(&disk).unwrap();
    let parts = ferrite_image::disk::mbr::read_table(&raw[..512].try_into().unwrap()).unwrap();
    let p2 = parts[1].unwrap();
    assert!(p2.start >= p1.start + p1.sectors);
    let vbr = &raw[p2.start as usize * 512..][..512];
    assert_eq!(&vbr[43..51], b"config-2");
    let meta = br#"{"uuid": "u-1", "hostname": "h"}"#;
    assert!(raw.windows(meta.len()).any(|w| w == meta));

    let e = test_image::add_config_drive(&tmp.path().join("nope.raw"), "{}").unwrap_err();
    assert!(e.to_string().contains("nope.raw"), "{e}");
}
