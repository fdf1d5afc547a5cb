//! The ipmi_sim test support starts a BMC that ipmitool can talk to, and reaps it on drop.

use std::process::Command;

use ferrite_ipmi::sim::SimBmc;

fn ipmitool(bmc: &SimBmc, args: &[&str]) -> (bool, String) {
    let out = Command::new("ipmitool")
        .args(bmc.ipmitool_args())
        .args(args)
        .output()
        .expect("run ipmitool (Debian package ipmitool)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn sim_answers_ipmitool_and_keeps_chassis_state() {
    let bmc = SimBmc::builder().user("admin", "password").start().unwrap();
    let (ok, out) = ipmitool(&bmc, &["power", "status"]);
    assert!(ok, "{out}");
    assert!(out.contains("Chassis Power is off"), "{out}");
    let (ok, out) = ipmitool(&bmc, &["power", "on"]);
    assert!(ok, "{out}");
    assert_eq!(bmc.power_is_on(), Some(true));
    let (ok, out) = ipmitool(&bmc, &["chassis", "bootdev", "pxe"]);
    assert!(ok, "{out}");
    assert_eq!(bmc.boot_device().as_deref(), Some("pxe"));
    assert!(bmc.chassis_log().contains("set boot pxe"));
}

#[test]
fn sim_is_killed_on_drop() {
    let bmc = SimBmc::builder().start().unwrap();
    let addr = bmc.addr();
    let dir = bmc.dir().to_path_buf();
    drop(bmc);
    assert!(!dir.exists(), "temporary directory removed");
    // Nothing answers on the port any more: ipmitool fails quickly-ish.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let _ = sock.send_to(&ferrite_ipmi::codec::rmcp::encode_ping(1), addr);
    let mut buf = [0u8; 64];
    assert!(sock.recv_from(&mut buf).is_err(), "no pong after drop");
}

#[test]
fn missing_program_is_a_clear_error() {
    let err = SimBmc::builder()
        .program("/nonexistent/ipmi_sim")
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("openipmi"), "{err}");
}
