//! LLDP collection on a real interface (issue 18 item 2): the test makes a network namespace
//! with a veth pair, sends real LLDP frames into one end from a raw socket, and the agent's
//! collector listening on the other end reports their TLVs as IPA would. Nothing leaves the
//! namespace; it is deleted (with the veth pair) when the test ends, even on failure. Needs
//! root and `ip` (iproute2).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrite_agent::inventory::lldp;

/// A network namespace with a veth pair `lldp-a` ⇄ `lldp-b`, both up; deleted on drop.
struct Netns {
    name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// `tag` keeps the namespaces of tests running at the same time apart.
    fn new(tag: &str) -> Netns {
        let name = format!("ferrite-lldp-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&[
            "-n", &ns.name, "link", "add", "lldp-a", "type", "veth", "peer", "name", "lldp-b",
        ]);
        ip(&["-n", &ns.name, "link", "set", "lldp-a", "up"]);
        ip(&["-n", &ns.name, "link", "set", "lldp-b", "up"]);
        ns
    }
}

/// Moves the calling thread (only) into namespace `name`; threads it starts follow.
fn enter(name: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{name}")).unwrap();
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// An LLDPDU from a switch: chassis ID (MAC 00:11:22:33:44:55), port ID "Ethernet12",
/// TTL 120, port description, system name "leaf-7", End.
fn frame(src_mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x88, 0xcc]);
    let mut tlv = |kind: u16, value: &[u8]| {
        f.extend_from_slice(&((kind << 9) | value.len() as u16).to_be_bytes());
        f.extend_from_slice(value);
    };
    tlv(1, &[4, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
    tlv(2, b"\x05Ethernet12");
    tlv(3, &[0, 120]);
    tlv(4, b"to rack 3 server 14");
    tlv(5, b"leaf-7");
    tlv(0, &[]);
    f
}

/// A raw socket on `ifname` that sends `frame` every 20 ms until `stop`.
fn sender(ifname: &str, frame: Vec<u8>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let index = nix::net::if_::if_nametoindex(ifname).unwrap() as i32;
    // SAFETY: socket(2) takes no pointers; the new descriptor is owned by OwnedFd.
    let fd = unsafe {
        let raw = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        assert!(raw >= 0, "{}", std::io::Error::last_os_error());
        OwnedFd::from_raw_fd(raw)
    };
    std::thread::spawn(move || {
        // SAFETY: sockaddr_ll is plain data; all-zero is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = index;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: `frame` and `addr` are live for the call and the lengths are theirs.
            let n = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const addr).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            assert_eq!(
                n,
                frame.len() as isize,
                "{}",
                std::io::Error::last_os_error()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn frames_sent_by_a_neighbour_appear_as_ipa_tlvs() {
    let ns = Netns::new("heard");
    // The rest of this test runs on a thread inside the namespace, so nothing it sends or
    // opens touches the host's interfaces.
    let ns_name = ns.name.clone();
    let result = std::thread::spawn(move || {
        enter(&ns_name);
        let stop = Arc::new(AtomicBool::new(false));
        let tx = sender("lldp-b", frame([0x02, 0, 0, 0, 0, 0x0b]), stop.clone());
        let started = Instant::now();
        let names = vec!["lldp-a".to_string(), "lldp-silent".to_string()];
        let got = lldp::collect(&names, Duration::from_secs(20));
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        tx.join().unwrap();
        (got, took)
    })
    .join();
    let (got, took) = result.expect("the namespace thread panicked");
    let tlvs = &got["lldp-a"];
    let hex = |s: &[u8]| s.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(
        tlvs,
        &vec![
            (1, "04001122334455".to_string()),
            (2, hex(b"\x05Ethernet12")),
            (3, "0078".to_string()),
            (4, hex(b"to rack 3 server 14")),
            (5, hex(b"leaf-7")),
            (0, String::new()),
        ]
    );
    // An interface that does not exist is reported empty, as IPA reports a silent one.
    assert_eq!(got["lldp-silent"], Vec::<(u8, String)>::new());
    // Every interface heard (or could not be opened): no waiting for the timeout.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    drop(ns);
}

#[test]
fn a_silent_interface_is_empty_after_the_timeout() {
    let ns = Netns::new("silent");
    let ns_name = ns.name.clone();
    let (got, took) = std::thread::spawn(move || {
        enter(&ns_name);
        let started = Instant::now();
        let got = lldp::collect(&["lldp-a".to_string()], Duration::from_millis(300));
        (got, started.elapsed())
    })
    .join()
    .unwrap();
    assert_eq!(got["lldp-a"], Vec::<(u8, String)>::new());
    assert!(
        took >= Duration::from_millis(300),
        "returned before the timeout: {took:?}"
    );
    drop(ns);
}
