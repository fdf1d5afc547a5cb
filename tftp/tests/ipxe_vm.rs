//! Real PXE firmware as the client: a QEMU machine's iPXE ROM gets a `tftp://` boot file
//! from QEMU's DHCP and fetches it from our server (the guest reaches the host's loopback
//! as 10.0.2.2), runs it, fetches a 1 MiB file with a negotiated block size, and chains to
//! a last script: the server's transfer log proves every step. Skipped by `cargo xtask test
//! --quick` (FERRITE_SKIP_VM_TESTS).

use std::time::{Duration, Instant};

use ferrite_qemu_harness::VmBuilder;
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

    // Killed and reaped when the test ends (Debian qemu-system-x86 and ipxe-qemu).
    let mut vm = VmBuilder::new("ipxe-tftp")
        .memory_mib(128)
        .nic("52:54:00:fe:56:78")
        .pxe_bootfile(&format!("{base}/boot.ipxe"))
        .dir(dir.path().join("vm"))
        .start()
        .expect("starting QEMU");
    let deadline = Instant::now() + Duration::from_secs(120);
    while log.lock().unwrap().len() < 3 {
        assert!(
            vm.is_running(),
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
