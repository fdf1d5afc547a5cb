//! Real PXE firmware as the client: a QEMU machine's iPXE ROM gets a `tftp://` boot file
//! from QEMU's DHCP and fetches it from our server (the guest reaches the host's loopback
//! as 10.0.2.2), runs it, fetches a 1 MiB file with a negotiated block size, and chains to
//! a last script: the server's transfer log proves every step. Skipped by `cargo xtask test
//! --quick` (FERRITE_SKIP_VM_TESTS).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferrite_testkit::Reaped;
use ferrite_tftp::{Server, ServerConfig};
use tokio::net::UdpSocket;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipxe_fetches_scripts_and_a_file_over_our_tftp() {
    if ferrite_qemu_harness::skip_vm_test() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let base = format!("tftp://10.0.2.2:{port}");
    let big: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), &big).unwrap();
    std::fs::write(
        dir.path().join("boot.ipxe"),
        format!("#!ipxe\nimgfetch {base}/big.bin\nchain {base}/last.ipxe\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("last.ipxe"), "#!ipxe\necho done\n").unwrap();
    let server = Server::new(ServerConfig::new(dir.path())).unwrap();
    let log = server.transfers();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(socket, async {
        let _ = rx.await;
    }));

    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel", "tcg", "-m", "128", "-display", "none", "-serial", "null",
        ])
        .args(["-monitor", "none", "-boot", "n", "-no-reboot"])
        .arg("-netdev")
        .arg(format!("user,id=n0,bootfile={base}/boot.ipxe"))
        .args(["-device", "virtio-net-pci,netdev=n0,mac=52:54:00:fe:56:78"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 (Debian qemu-system-x86 and ipxe-qemu)");
    let mut qemu = Reaped(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while log.lock().unwrap().len() < 3 {
        assert!(
            qemu.0.try_wait().unwrap().is_none(),
            "QEMU exited early; transfers: {:?}",
            log.lock().unwrap()
        );
        assert!(
            Instant::now() < deadline,
            "the guest did not fetch all three files; transfers: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = log.lock().unwrap().clone();
    let names: Vec<&str> = log.iter().map(|r| r.filename.as_str()).collect();
    assert_eq!(names, ["boot.ipxe", "big.bin", "last.ipxe"], "{log:?}");
    let big_rec = &log[1];
    assert_eq!(big_rec.bytes, big.len() as u64);
    assert!(
        big_rec.blksize > 512,
        "iPXE negotiated a larger block: {big_rec:?}"
    );
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}
