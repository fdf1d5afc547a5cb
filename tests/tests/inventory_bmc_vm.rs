//! The agent's BMC addresses on a live machine: a QEMU q35 guest whose KCS interface is wired
//! to ipmi_sim (OpenIPMI) runs `ferrite-agent inventory` on its real root, so the request goes
//! through the kernel's ipmi_si/ipmi_devintf drivers and `/dev/ipmi0`. ipmi_sim's LAN channel
//! takes its address and MAC from a lan_config_program this test writes; ipmitool over
//! lanplus reads the same values back as the cross-check.
//!
//! Needs the static agent (`cargo xtask agent`), qemu-system-x86, openipmi and ipmitool.
//! Skipped by `cargo xtask test --quick` (FERRITE_SKIP_VM_TESTS).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferrite_proto::inventory::Inventory;
use ferrite_testkit::{free_tcp_port, free_udp_port, with_free_port};
use ferrite_tests::guest::{self, wait_until, Reaped, Script, TempDir};

const BMC_IP: &str = "192.0.2.77";
const BMC_MAC: &str = "52:54:00:aa:bb:77";

/// Starts ipmi_sim with LAN channel 1 on `lan_port` and the VM (KCS) socket on `kcs_port`;
/// an error when it exits before listening (another process took a port).
fn start_ipmi_sim(dir: &Path, lan_port: u16, kcs_port: u16) -> Result<Reaped, String> {
    let program = dir.join("lancontrol.sh");
    fs::write(
        &program,
        format!(
            "#!/bin/sh\n# ipmi_sim calls: lancontrol.sh get PARM...\n[ \"$1\" = get ] || exit 0\n\
             shift\nfor p in \"$@\"; do case $p in\n\
             ip_addr) echo \"ip_addr: {BMC_IP}\";;\n\
             mac_addr) echo \"mac_addr: {BMC_MAC}\";;\n\
             ip_addr_src) echo \"ip_addr_src: static\";;\n\
             subnet_mask) echo \"subnet_mask: 255.255.255.0\";;\n\
             *_ip_addr) echo \"$p: 0.0.0.0\";;\n\
             *_mac_addr) echo \"$p: 00:00:00:00:00:00\";;\n\
             esac; done\n"
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&program)
        .status()
        .unwrap();
    fs::write(
        dir.join("lan.conf"),
        format!(
            "name \"inventory\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {lan_port}\n\
             priv_limit admin\n    allowed_auths_admin none md2 md5 straight\n\
             guid a123456789abcdefa123456789abcdef\n    lan_config_program \"{}\"\n  endlan\n\
             serial kcs 127.0.0.1 {kcs_port} codec VM\n\
             user 2 true \"admin\" \"password\" admin 10 none md2 md5 straight\n",
            program.display()
        ),
    )
    .unwrap();
    fs::write(
        dir.join("bmc.emu"),
        "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
         mc_enable 0x20\n",
    )
    .unwrap();
    fs::create_dir_all(dir.join("state")).unwrap();
    let log = fs::File::create(dir.join("ipmi_sim.log")).unwrap();
    let child = Command::new("ipmi_sim")
        .arg("-c")
        .arg(dir.join("lan.conf"))
        .arg("-f")
        .arg(dir.join("bmc.emu"))
        .arg("-s")
        .arg(dir.join("state"))
        .arg("-n")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("ipmi_sim (Debian package openipmi) must be installed");
    // Probing with a connection would take the single VM slot ipmi_sim offers: look for the
    // listening socket in /proc/net/tcp instead.
    let mut sim = Reaped(child);
    let ready = wait_until(
        "ipmi_sim's KCS socket",
        Duration::from_secs(20),
        || match sim.try_wait() {
            Ok(Some(status)) => Some(Err(format!("ipmi_sim exited: {status}"))),
            _ => listening(kcs_port).then_some(Ok(())),
        },
    );
    ready.map(|()| sim)
}

/// True when a TCP socket listens on 127.0.0.1:`port` (state 0A in /proc/net/tcp).
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
}

/// `ipmitool lan print 1` over lanplus: (IP address, MAC address).
fn ipmitool_lan_print(lan_port: u16) -> (String, String) {
    let out = Command::new("ipmitool")
        .args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-U", "admin"])
        .args([
            "-P",
            "password",
            "-p",
            &lan_port.to_string(),
            "lan",
            "print",
            "1",
        ])
        .output()
        .expect("ipmitool must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name:?} in ipmitool output:\n{text}"))
    };
    (field("IP Address"), field("MAC Address"))
}

#[test]
fn agent_reads_bmc_addresses_through_dev_ipmi0() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let agent = guest::static_agent();
    let dir = TempDir::new("ferrite-bmc-vm");
    let script = Script {
        modules: &["ipmi_msghandler", "ipmi_devintf", "ipmi_si"],
        wait_for: "/dev/ipmi0",
        before: "ls -l /dev/ipmi0; dmesg | grep -i -E \"ipmi|kcs\" | tail -20",
        command: "/bin/ferrite-agent inventory",
    };
    let (kernel, initrd) = guest::build(&dir.0, &agent, &script);
    // ipmi_sim must be told its ports; one taken by another process in between makes it
    // exit, and it starts again on others.
    let (lan_port, kcs_port, _sim) = with_free_port("ipmi_sim", free_tcp_port, |kcs_port| {
        let lan_port = free_udp_port();
        start_ipmi_sim(&dir.0, lan_port, kcs_port).map(|sim| (lan_port, kcs_port, sim))
    });

    let devices = [
        "-chardev".to_string(),
        format!("socket,id=ipmi0,host=127.0.0.1,port={kcs_port},reconnect=10"),
        "-device".into(),
        "ipmi-bmc-extern,chardev=ipmi0,id=bmc0".into(),
        "-device".into(),
        "isa-ipmi-kcs,bmc=bmc0".into(),
    ];
    let run = guest::run(&dir.0, &kernel, &initrd, &devices, Duration::from_secs(300));
    assert_eq!(
        run.exit, 0,
        "ferrite-agent inventory failed:\n{}",
        run.console
    );
    let json = run.output.as_str();
    let inv: Inventory = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("inventory is not CONTRACT JSON ({e}):\n{json}"));

    let (ip, mac) = ipmitool_lan_print(lan_port);
    assert_eq!((ip.as_str(), mac.as_str()), (BMC_IP, BMC_MAC));
    assert_eq!(inv.bmc_address.as_deref(), Some(BMC_IP), "{json}");
    assert_eq!(inv.bmc_mac.as_deref(), Some(BMC_MAC), "{json}");
    // ipmi_sim has no IPv6 LAN parameters: unknown, so null.
    assert_eq!(inv.bmc_v6address, None);
    // The rest is the guest's live root: one CPU, 512 MiB, QEMU's SMBIOS strings.
    assert_eq!(inv.cpu.count, 1);
    assert_eq!(inv.memory.physical_mb, Some(512));
    assert_eq!(inv.system_vendor.manufacturer, "QEMU");
}
