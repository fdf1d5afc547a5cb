//! The `server` ramdisk profile against `virtual` for `bench e2e` (issue 18): the size of
//! each initramfs as ramdisk-build makes it, and the time from starting QEMU (TCG, direct
//! kernel boot, the lab's virtio NIC and disk) to the agent's first lookup at a stub
//! conductor (an HTTP server on loopback answering `/v1/lookup` and heartbeats).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use ferrite_qemu_harness::http::HttpServer;
use ferrite_qemu_harness::vm::{create_disk, VmBuilder};
use ferrite_qemu_harness::DiskFormat;
use ferrite_ramdisk_build::{Manifest, Profile, RamdiskBuilder};
use serde_json::json;

const NODE: &str = "00000000-0000-4000-8000-0000000be2e0";
const TOKEN: &str = "bench-e2e-ramdisk-boot-token-0123456789";
const MAC: &str = "52:54:00:fe:be:01";
/// Guest RAM for both boots (the `server` initramfs is unpacked next to its compressed
/// copy; 512 MiB as in tests/tests/server_ramdisk_vm.rs).
pub const MEMORY_MIB: u32 = 512;

/// A built ramdisk: its manifest and where kernel and initramfs are.
pub struct Built {
    pub manifest: Manifest,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// Builds `profile`'s ramdisk under `dir/<profile>` from the pinned packages in `cache`.
pub fn build(agent: &Path, cache: &Path, dir: &Path, profile: Profile) -> anyhow::Result<Built> {
    let out = dir.join(profile.to_string());
    let manifest = RamdiskBuilder::new(agent, &out)
        .cache_dir(cache)
        .profile(profile)
        .build()
        .with_context(|| format!("building the {profile} ramdisk"))?;
    Built {
        kernel: out.join(&manifest.kernel.file),
        initramfs: out.join(&manifest.initramfs.file),
        manifest,
    }
    .checked()
}

impl Built {
    /// The ramdisk a lab built, from its manifest (`ferrite.manifest.json` next to
    /// `initramfs`).
    pub fn read(initramfs: &Path) -> anyhow::Result<Built> {
        let path = initramfs.with_file_name(ferrite_ramdisk_build::ramdisk::MANIFEST_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let manifest: Manifest =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Built {
            kernel: initramfs.with_file_name(&manifest.kernel.file),
            initramfs: initramfs.with_file_name(&manifest.initramfs.file),
            manifest,
        }
        .checked()
    }

    /// The initramfs file has the size its manifest gives.
    fn checked(self) -> anyhow::Result<Built> {
        let bytes = std::fs::metadata(&self.initramfs)
            .with_context(|| format!("reading {}", self.initramfs.display()))?
            .len();
        ensure!(
            bytes == self.manifest.initramfs.bytes,
            "{} has {bytes} bytes, its manifest says {}",
            self.initramfs.display(),
            self.manifest.initramfs.bytes
        );
        Ok(self)
    }
}

/// Boots `ramdisk` once and returns the seconds from QEMU's start to the first lookup the
/// stub conductor received; checks that the lookup names the VM's MAC.
pub fn boot_to_lookup(ramdisk: &Built, work: &Path) -> anyhow::Result<f64> {
    let profile = ramdisk.manifest.profile;
    let dir = work.join(format!("boot-{profile}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    let server = HttpServer::start(&www)?;
    let lookup = json!({
        "node": {"uuid": NODE, "properties": {}, "instance_info": {}, "driver_internal_info": {}},
        "config": {"agent_token": TOKEN, "heartbeat_timeout": 300},
    });
    server.reply("/v1/lookup", 200, &lookup.to_string());
    server.reply(&format!("/v1/heartbeat/{NODE}"), 202, "");
    let disk = dir.join("disk.raw");
    create_disk(&disk, 1 << 30)?;
    let append = format!(
        "console=ttyS0 quiet ipa-api-url=http://10.0.2.2:{} ferrite-auto-tls=0",
        server.port()
    );
    let builder = VmBuilder::new(&format!("bench-{profile}"))
        .memory_mib(MEMORY_MIB)
        .dir(dir.join("vm"))
        .disk(&disk, DiskFormat::Raw, "BENCH-DISK-0")
        .nic(MAC)
        .kernel(&ramdisk.kernel, &ramdisk.initramfs, &append);
    let started = Instant::now();
    let vm = builder.start()?;
    let deadline = started + Duration::from_secs(180);
    let found = loop {
        if let Some(r) = server
            .requests()
            .into_iter()
            .find(|r| r.target.starts_with("/v1/lookup"))
        {
            break r;
        }
        ensure!(
            Instant::now() < deadline,
            "the {profile} ramdisk made no lookup in 180 s; console:\n{}",
            vm.console().tail(40)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = started.elapsed().as_secs_f64();
    // The MAC is in the query (`addresses=`), perhaps percent-encoded.
    let asked = format!("{} {}", found.target, String::from_utf8_lossy(&found.body))
        .replace("%3A", ":")
        .replace("%3a", ":");
    ensure!(
        asked.contains(MAC),
        "the {profile} ramdisk's lookup does not name the VM's MAC {MAC}: {asked}"
    );
    drop(vm);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(secs)
}
