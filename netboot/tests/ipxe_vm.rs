//! The scripts in a real iPXE: a QEMU machine network-boots (SeaBIOS → Debian's iPXE ROM →
//! DHCP from QEMU) and fetches `boot.ipxe` from a small HTTP server over [`BootFiles`]. The
//! server log proves iPXE ran the chain script (it asks for its MAC's script), then the
//! deploy script (it fetches the kernel and, when that fails, retries).
//! Skipped by `cargo xtask test --quick` (FERRITE_SKIP_VM_TESTS).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrite_netboot::ipxe::{self, DeployBoot, KernelParams};
use ferrite_netboot::{BootFiles, Mac, Served};
use ferrite_qemu_harness::VmBuilder;

/// Serves GET /boot/* from `files` on its own thread, logging each path.
fn serve(listener: TcpListener, files: BootFiles, log: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Drain the headers.
            let mut h = String::new();
            while reader.read_line(&mut h).map(|n| n > 2).unwrap_or(false) {
                h.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            log.lock().unwrap().push(path.clone());
            let (status, body) = match path.strip_prefix("/boot/").map(|p| files.serve(p)) {
                Some(Served::File(p)) => ("200 OK", std::fs::read(p).unwrap_or_default()),
                Some(Served::Script(s)) => ("200 OK", s.into_bytes()),
                Some(Served::Refused(_)) => ("403 Forbidden", vec![]),
                _ => ("404 Not Found", vec![]),
            };
            let _ = write!(
                stream,
                "HTTP/1.0 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
}

fn wait_for(log: &Arc<Mutex<Vec<String>>>, what: &str, pred: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if pred(&log.lock().unwrap()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "timed out waiting for {what}; requests: {:?}",
        log.lock().unwrap()
    );
}

#[test]
fn ipxe_runs_chain_and_deploy_scripts() {
    if ferrite_qemu_harness::skip_vm_test() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The guest reaches the host's loopback as 10.0.2.2 (QEMU user networking).
    let base = format!("http://10.0.2.2:{port}");
    let files = BootFiles::new(dir.path().join("boot"), &base)
        .unwrap()
        .with_local_dirs(&[dir.path().to_path_buf()])
        .unwrap();
    let mac: Mac = "52:54:00:fe:12:34".parse().unwrap();
    const UUID: &str = "0c7f4f6e-1f5e-4a38-9d54-0d5a2b3b9f01";
    // Staged, then removed again: the kernel download fails (404) and the script retries.
    // (A non-kernel file would not do: iPXE runs anything as a PXE image and hangs.)
    let junk = dir.path().join("vmlinuz");
    std::fs::write(&junk, vec![0u8; 4096]).unwrap();
    let kernel_url = files
        .deploy_url(UUID, "deploy_kernel", junk.to_str().unwrap())
        .unwrap();
    let ramdisk_url = files
        .deploy_url(UUID, "deploy_ramdisk", junk.to_str().unwrap())
        .unwrap();
    let script = ipxe::deploy_script(&DeployBoot {
        node_uuid: UUID.into(),
        kernel_url,
        ramdisk_url,
        params: KernelParams {
            api_url: base.clone(),
            ..Default::default()
        },
    })
    .unwrap();
    files.write_node_script(&[mac], &script).unwrap();
    std::fs::remove_file(files.root().join(UUID).join("deploy_kernel")).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    serve(listener, files, log.clone());

    // Killed and reaped when the test ends (Debian qemu-system-x86 and ipxe-qemu).
    let _vm = VmBuilder::new("ipxe-netboot")
        .memory_mib(128)
        .nic(&mac.to_string())
        .pxe_bootfile(&format!("{base}/boot/boot.ipxe"))
        .dir(dir.path().join("vm"))
        .start()
        .expect("starting QEMU");

    let mac_script = format!("/boot/{}.ipxe", mac.hexhyp());
    let kernel = format!("/boot/{UUID}/deploy_kernel");
    wait_for(&log, "the chain script, then the node's script", |l| {
        l.iter().any(|p| p == "/boot/boot.ipxe") && l.contains(&mac_script)
    });
    wait_for(&log, "the deploy kernel, asked for twice (retry)", |l| {
        l.iter().filter(|p| **p == kernel).count() >= 2
    });
    let l = log.lock().unwrap();
    let first_kernel = l.iter().position(|p| *p == kernel).unwrap();
    let script_at = l.iter().position(|p| *p == mac_script).unwrap();
    assert!(script_at < first_kernel, "{l:?}");
}
