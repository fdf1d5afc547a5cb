//! `erase_devices` on an NVMe namespace: a QEMU q35 guest with an emulated NVMe controller
//! (`-device nvme`) backed by a file this test fills with a non-zero pattern boots the Debian
//! kernel with the nvme driver and runs `ferrite-agent erase-disk --disk /dev/nvme0n1` from
//! its initramfs, so the Identify and Format NVM commands go through the kernel's admin
//! passthrough ioctl to QEMU's controller. QEMU 7.2's controller offers Format NVM (OACS
//! bit 1) without cryptographic erase (FNA 0) or Sanitize, and implements the format by
//! writing zeroes over the namespace: the agent must report a user-data erase, and the
//! backing file must read back zeroes, its middle included (the agent's own signature wipe
//! only touches the first and last MiB). A second namespace on the same controller keeps its
//! data: QEMU's format acts on one namespace (FNA 0), and nothing else is touched.
//!
//! Needs the static agent (`cargo xtask agent`) and qemu-system-x86. Skipped by
//! `cargo xtask test --quick` (FERRITE_SKIP_VM_TESTS).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use ferrite_tests::guest::{self, Script, TempDir};

const DISK_BYTES: u64 = 64 << 20;
const PATTERN: u8 = 0xA5;
const OTHER_BYTES: u64 = 16 << 20;
const OTHER_PATTERN: u8 = 0x3C;

#[test]
fn erase_devices_formats_an_nvme_namespace_in_a_vm() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let agent = guest::static_agent();
    let dir = TempDir::new("ferrite-nvme-vm");
    // Debian builds the NVMe driver as modules (CONFIG_BLK_DEV_NVME=m).
    let script = Script {
        modules: &["nvme"],
        wait_for: "/dev/nvme0n2",
        before: "ls -l /dev/nvme*",
        command: "/bin/ferrite-agent erase-disk --disk /dev/nvme0n1",
    };
    let (kernel, initrd) = guest::build(&dir.0, &agent, &script);

    let disk = dir.0.join("nvme.img");
    fs::File::create(&disk)
        .unwrap()
        .write_all_at(&vec![PATTERN; DISK_BYTES as usize], 0)
        .unwrap();
    let other = dir.0.join("other.img");
    fs::File::create(&other)
        .unwrap()
        .write_all_at(&vec![OTHER_PATTERN; OTHER_BYTES as usize], 0)
        .unwrap();
    let drive = |path: &Path, id: &str| {
        format!(
            "file={},if=none,id={id},format=raw,cache=none,aio=threads",
            path.display()
        )
    };

    let devices: Vec<String> = [
        "-drive",
        &drive(&disk, "nvm1"),
        "-drive",
        &drive(&other, "nvm2"),
        "-device",
        "nvme,id=nvme0,serial=FERRITE-NVME-1",
        "-device",
        "nvme-ns,bus=nvme0,drive=nvm1,nsid=1",
        "-device",
        "nvme-ns,bus=nvme0,drive=nvm2,nsid=2",
    ]
    .map(String::from)
    .to_vec();
    let run = guest::run(&dir.0, &kernel, &initrd, &devices, Duration::from_secs(180));
    let (text, out) = (&run.console, &run.output);
    assert_eq!(run.exit, 0, "erase-disk failed:\n{text}");
    // `ls -l /dev/nvme*` ran before the command.
    assert!(
        text.contains("/dev/nvme0n2"),
        "the guest sees both namespaces:\n{text}"
    );
    let json = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON result:\n{text}"));
    let v: serde_json::Value =
        serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}"));
    eprintln!("guest erase result: {v}");
    assert_eq!(v["device"], "/dev/nvme0n1", "{v}");
    assert_eq!(v["method"], "nvme user-data erase", "{v}");
    assert_eq!(v["nsid"], 1, "{v}");
    assert_eq!(v["model"], "QEMU NVMe Ctrl", "{v}");
    assert_eq!(v["reads_back_zeroes"], true, "{v}");
    let evidence = v["zeroes_evidence"].as_str().unwrap();
    assert!(
        evidence.contains(&format!("read back {DISK_BYTES} bytes")),
        "{v}"
    );

    // The host's view: QEMU's format wrote zeroes over the whole backing file.
    let data = fs::read(&disk).unwrap();
    assert_eq!(data.len() as u64, DISK_BYTES);
    let first = data.iter().position(|&b| b != 0);
    assert_eq!(
        first, None,
        "the backing file still holds data at {first:?}"
    );
    let kept = fs::read(&other).unwrap();
    assert!(
        kept.iter().all(|&b| b == OTHER_PATTERN),
        "the other namespace of the controller was touched"
    );
}
