//! The TFTP server against real clients: tftp-hpa (RFC 1350), busybox tftp and curl
//! (blksize/tsize negotiation) on a 10 MiB file; traversal and writes refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferrite_tftp::packet::Packet;
use tokio::net::UdpSocket;

mod common;

use common::{recv_within, Running};

struct Fixture {
    srv: Running,
    root: PathBuf,
    out: PathBuf,
    addr: SocketAddr,
    big: Vec<u8>,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let out = dir.path().join("out");
        std::fs::create_dir_all(root.join("ipxe")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(dir.path().join("secret"), b"outside the root").unwrap();
        // 10 MiB of pseudo-random bytes (20480 blocks of 512; the block-number wrap has its
        // own test below).
        let mut x = 0x1234_5678_u32;
        let big: Vec<u8> = (0..10 * 1024 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        std::fs::write(root.join("ipxe/undionly.kpxe"), &big).unwrap();
        std::fs::write(root.join("hello.txt"), b"line one\nline two\n").unwrap();
        let srv = Running::start(dir, &root, |cfg| cfg.timeout = Duration::from_millis(500)).await;
        Fixture {
            addr: srv.addr,
            srv,
            root,
            out,
            big,
        }
    }

    /// Waits (bounded) until the server has recorded a finished transfer with `blksize`.
    async fn wait_recorded(&self, blksize: usize, bytes: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let found = self
                .srv
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|r| r.blksize == blksize && r.bytes == bytes);
            if found {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "no transfer with blksize {blksize}: {:?}",
            self.srv.log.lock().unwrap()
        );
    }

    async fn stop(self) {
        self.srv.stop().await;
    }
}

/// Runs a client with a deadline; kills it if it overruns.
async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("client installed (tftp-hpa, busybox-static, curl)");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("client overran: {:?}", child.wait_with_output().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap()
}

fn tftp_hpa(f: &Fixture, mode: &str, remote: &str, local: &Path) -> Command {
    let mut c = Command::new("tftp");
    c.args([
        "-m",
        mode,
        "127.0.0.1",
        &f.addr.port().to_string(),
        "-c",
        "get",
    ])
    .arg(remote)
    .arg(local);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_hpa_gets_10_mib_and_netascii() {
    let f = Fixture::start().await;
    let local = f.out.join("hpa.bin");
    let out = run(tftp_hpa(&f, "binary", "ipxe/undionly.kpxe", &local)).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        std::fs::read(&local).unwrap() == f.big,
        "10 MiB file differs"
    );

    let local = f.out.join("hello.txt");
    let out = run(tftp_hpa(&f, "ascii", "/hello.txt", &local)).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&local).unwrap(), b"line one\nline two\n");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_and_curl_negotiate_blksize_on_10_mib() {
    let f = Fixture::start().await;
    let local = f.out.join("bb.bin");
    let mut c = Command::new("busybox");
    c.args(["tftp", "-g", "-b", "1428", "-r", "ipxe/undionly.kpxe", "-l"])
        .arg(&local)
        .args(["127.0.0.1", &f.addr.port().to_string()]);
    let out = run(c).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        std::fs::read(&local).unwrap() == f.big,
        "busybox copy differs"
    );

    let local = f.out.join("curl.bin");
    let mut c = Command::new("curl");
    c.args(["-sS", "--tftp-blksize", "8192", "-o"])
        .arg(&local)
        .arg(format!("tftp://{}/ipxe/undionly.kpxe", f.addr));
    let out = run(c).await;
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read(&local).unwrap() == f.big, "curl copy differs");
    f.wait_recorded(8192, f.big.len() as u64).await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_missing_files_and_writes_are_refused() {
    let f = Fixture::start().await;
    for name in ["../secret", "ipxe/../../secret"] {
        let local = f.out.join("stolen");
        let _ = std::fs::remove_file(&local);
        let out = run(tftp_hpa(&f, "binary", name, &local)).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("leave the TFTP root"), "{name}: {text}");
        let got = std::fs::read(&local).unwrap_or_default();
        assert!(got.is_empty(), "{name}: data leaked");
    }
    let mut c = Command::new("curl");
    c.args(["-sS", "--path-as-is", "-o"])
        .arg(f.out.join("curl-stolen"))
        .arg(format!("tftp://{}/../secret", f.addr));
    let out = run(c).await;
    assert!(!out.status.success(), "{out:?}");

    let out = run(tftp_hpa(&f, "binary", "nope.efi", &f.out.join("nope"))).await;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("not found"), "{text}");

    // A write request gets an access violation and nothing is created.
    let upload = f.out.join("upload.txt");
    std::fs::write(&upload, b"x").unwrap();
    let mut c = Command::new("tftp");
    c.args(["127.0.0.1", &f.addr.port().to_string(), "-c", "put"])
        .arg(&upload)
        .arg("upload.txt");
    let out = run(c).await;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("read-only"), "{text}");
    assert!(!f.root.join("upload.txt").exists());
    f.stop().await;
}

async fn recv(sock: &UdpSocket, buf: &mut [u8]) -> (usize, SocketAddr) {
    recv_within(sock, buf, Duration::from_secs(5)).await
}

/// Raw packets: the OACK carries the negotiated blksize/tsize/timeout, DATA blocks have
/// that size, a duplicate ACK does not trigger a resend, and the last block is short.
#[tokio::test]
async fn oack_and_block_sizes_on_the_wire() {
    let f = Fixture::start().await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rrq = Packet::Rrq {
        filename: "hello.txt".into(),
        mode: "octet".into(),
        options: vec![
            ("blksize".into(), "8".into()),
            ("tsize".into(), "0".into()),
            ("timeout".into(), "3".into()),
            ("windowsize".into(), "4".into()),
        ],
    };
    sock.send_to(&rrq.encode(), f.addr).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, tid) = recv(&sock, &mut buf).await;
    assert_ne!(tid, f.addr, "transfer runs on its own port");
    assert_eq!(
        Packet::decode(&buf[..n]).unwrap(),
        Packet::Oack {
            options: vec![
                ("blksize".into(), "8".into()),
                ("tsize".into(), "18".into()),
                ("timeout".into(), "3".into()),
            ]
        }
    );
    let mut got = Vec::new();
    let mut block = 0u16;
    loop {
        sock.send_to(&Packet::Ack { block }.encode(), tid)
            .await
            .unwrap();
        let (n, _) = recv(&sock, &mut buf).await;
        let Packet::Data { block: b, data } = Packet::decode(&buf[..n]).unwrap() else {
            panic!("want DATA")
        };
        assert_eq!(b, block + 1);
        block = b;
        got.extend_from_slice(&data);
        if data.len() < 8 {
            break;
        }
        assert_eq!(data.len(), 8);
    }
    sock.send_to(&Packet::Ack { block }.encode(), tid)
        .await
        .unwrap();
    assert_eq!(got, b"line one\nline two\n");
    // An unknown opcode to the main port gets an error, not silence or a crash.
    sock.send_to(&[0, 9, 0, 0], f.addr).await.unwrap();
    let (n, _) = recv(&sock, &mut buf).await;
    assert!(matches!(
        Packet::decode(&buf[..n]).unwrap(),
        Packet::Error { code: 4, .. }
    ));
    f.stop().await;
}

/// More than 65535 blocks: the block number wraps to 0 and the transfer goes on (as
/// tftp-hpa and iPXE expect), checked with a raw client at blksize 16.
#[tokio::test]
async fn block_number_wraps_past_65535() {
    let f = Fixture::start().await;
    let len = 65536 * 16 + 100;
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(f.root.join("wrap.bin"), &data).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rrq = Packet::Rrq {
        filename: "wrap.bin".into(),
        mode: "octet".into(),
        options: vec![("blksize".into(), "16".into())],
    };
    sock.send_to(&rrq.encode(), f.addr).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let (_, tid) = recv(&sock, &mut buf).await; // OACK
    sock.connect(tid).await.unwrap();
    let mut block = 0u16;
    let mut got = Vec::with_capacity(len);
    let mut wrapped = false;
    loop {
        sock.send(&Packet::Ack { block }.encode()).await.unwrap();
        let (n, _) = recv(&sock, &mut buf).await;
        // DATA: opcode 3, block, payload (decoded by hand: this loop is hot).
        assert_eq!(&buf[..2], &[0, 3]);
        let b = u16::from_be_bytes([buf[2], buf[3]]);
        assert_eq!(b, block.wrapping_add(1));
        wrapped |= b == 0;
        block = b;
        got.extend_from_slice(&buf[4..n]);
        if n - 4 < 16 {
            break;
        }
    }
    sock.send(&Packet::Ack { block }.encode()).await.unwrap();
    assert!(wrapped);
    assert!(got == data);
    f.stop().await;
}
