//! Root device hints end to end (issue 15 finding 2): the real deploy ramdisk boots in QEMU
//! (TCG, direct kernel boot: no firmware or PXE, to keep it short) on a node with three
//! virtio disks of different serials and sizes; a stand-in conductor's lookup answers
//! `properties.root_device = {"serial": <the middle disk>}`, which IPA's default (the
//! smallest disk of at least 4 GiB) would not pick. `standby.prepare_image` carries no
//! node, so only the node cached from the lookup can steer it. Afterwards the middle
//! disk's backing file holds the image and the other two files hold exactly the bytes
//! they held before (same content, same allocated blocks). Skipped with
//! FERRITE_SKIP_VM_TESTS.

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrite_qemu_harness::http::{self, HttpServer};
use ferrite_qemu_harness::spec::DiskFormat;
use ferrite_qemu_harness::vm::{create_disk, free_tcp_port, VmBuilder, AGENT_PORT};
use ferrite_ramdisk_build::RamdiskBuilder;
use serde_json::{json, Value};

const TOKEN: &str = "root-device-hints-vm-token-0123456789";
const NODE: &str = "00000000-0000-4000-8000-00000000d15c";
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// One of the node's disks: a sparse file with a marker MiB at its head and its tail.
struct Disk {
    path: PathBuf,
    serial: &'static str,
    marker: u8,
    blocks: u64,
}

impl Disk {
    fn create(dir: &Path, serial: &'static str, gib: u64, marker: u8) -> Disk {
        let path = dir.join(format!("{serial}.raw"));
        create_disk(&path, gib * GIB).unwrap();
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mib = vec![marker; MIB as usize];
        f.write_all_at(&mib, 0).unwrap();
        f.write_all_at(&mib, gib * GIB - MIB).unwrap();
        f.sync_all().unwrap();
        let blocks = fs::metadata(&path).unwrap().blocks();
        Disk {
            path,
            serial,
            marker,
            blocks,
        }
    }

    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        fs::File::open(&self.path)
            .unwrap()
            .read_exact_at(&mut buf, offset)
            .unwrap();
        buf
    }

    fn assert_untouched(&self) {
        let size = fs::metadata(&self.path).unwrap().len();
        for at in [0, size - MIB] {
            assert!(
                self.read(at, MIB as usize)
                    .iter()
                    .all(|&b| b == self.marker),
                "{}: the MiB at {at} changed",
                self.serial
            );
        }
        assert_eq!(
            fs::metadata(&self.path).unwrap().blocks(),
            self.blocks,
            "{}: blocks were written outside the markers",
            self.serial
        );
    }
}

fn poll<T>(what: &str, limit: Duration, console: &Path, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            let text = fs::read_to_string(console).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            panic!(
                "{what}: nothing within {limit:?}; console tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_image_goes_to_the_disk_the_root_device_hint_names() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let agent = ferrite_tests::guest::static_agent();
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    let boot = RamdiskBuilder::new(&agent, tmp.path().join("ramdisk"))
        .cache_dir(ferrite_tests::target_dir().join("ramdisk-cache"))
        .build()
        .unwrap();
    fs::create_dir_all(&www).unwrap();

    // A 3 MiB whole-disk image: an MBR signature and a pattern no disk holds.
    let mut image: Vec<u8> = (0..3 * MIB).map(|i| (i % 251) as u8 ^ 0x5a).collect();
    image[510] = 0x55;
    image[511] = 0xaa;
    fs::write(www.join("os.raw"), &image).unwrap();
    let sha256 = ferrite_ramdisk_build::deb::sha256_hex(&image);

    // Sizes chosen so that IPA's default would take DISK-SMALL: only the hint picks B.
    let small = Disk::create(tmp.path(), "DISK-SMALL", 5, 0x11);
    let middle = Disk::create(tmp.path(), "DISK-MIDDLE", 6, 0x22);
    let large = Disk::create(tmp.path(), "DISK-LARGE", 7, 0x33);

    let server = HttpServer::start(&www).unwrap();
    let base = format!("http://10.0.2.2:{}", server.port());
    let lookup = json!({
        "node": {
            "uuid": NODE,
            "properties": {"root_device": {"serial": middle.serial}},
            "instance_info": {},
            "driver_internal_info": {},
        },
        "config": {"agent_token": TOKEN, "heartbeat_timeout": 300},
    });
    server.reply("/v1/lookup", 200, &lookup.to_string());
    server.reply(&format!("/v1/heartbeat/{NODE}"), 202, "");

    let agent_port = free_tcp_port().unwrap();
    let kernel = tmp.path().join("ramdisk").join(&boot.kernel.file);
    let initrd = tmp.path().join("ramdisk").join(&boot.initramfs.file);
    let mut builder = VmBuilder::new("hints-node")
        .memory_mib(256)
        .dir(tmp.path().join("node"))
        .nic("52:54:00:fe:20:01")
        .hostfwd(agent_port, AGENT_PORT)
        .kernel(
            &kernel,
            &initrd,
            &format!("console=ttyS0 quiet ipa-api-url={base} ferrite-auto-tls=0"),
        );
    for d in [&small, &middle, &large] {
        builder = builder.disk(&d.path, DiskFormat::Raw, d.serial);
    }
    let vm = builder.start().unwrap();
    let console = vm.console().path().to_path_buf();

    let agent = std::net::SocketAddr::from(([127, 0, 0, 1], agent_port));
    poll(
        "the agent API after lookup",
        Duration::from_secs(240),
        &console,
        || {
            http::call(agent, "GET", "/v1/status", None)
                .ok()
                .filter(|(s, _)| *s == 200)
        },
    );
    let command = json!({
        "name": "standby.prepare_image",
        "params": {"image_info": {
            "id": "hinted", "urls": [format!("{base}/os.raw")], "disk_format": "raw",
            "image_type": "whole-disk", "os_hash_algo": "sha256", "os_hash_value": sha256,
        }},
    });
    let (status, body) = http::call(
        agent,
        "POST",
        &format!("/v1/commands/?wait=false&agent_token={TOKEN}"),
        Some(&command.to_string()),
    )
    .unwrap();
    assert!((200..300).contains(&status), "HTTP {status}: {body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let result: Value = poll(
        "the image write",
        Duration::from_secs(240),
        &console,
        || {
            let path = format!("/v1/commands/{id}?agent_token={TOKEN}");
            let (s, b) = http::call(agent, "GET", &path, None).ok()?;
            let v: Value = serde_json::from_str(&b).ok()?;
            (s == 200 && v["command_status"] != "RUNNING").then_some(v)
        },
    );
    assert_eq!(result["command_status"], "SUCCEEDED", "{result}");
    drop(vm);

    assert_eq!(
        middle.read(0, image.len()),
        image,
        "the hinted disk holds the image"
    );
    small.assert_untouched();
    large.assert_untouched();
}
