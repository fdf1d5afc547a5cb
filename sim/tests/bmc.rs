//! The simulated BMC against two consoles: OpenIPMI's `ipmitool -I lanplus` (cipher
//! suites 3 and 17) and ferrite-ipmi's own client (the conductor's), including a wrong
//! password, boot options and ASF ping.

use std::process::Command;
use std::time::Duration;

use ferrite_ipmi::{BootDevice, BootOptions, ChassisControl, Client, ClientConfig, PowerState};
use ferrite_sim::{Running, Sim, SimConfig};

fn config() -> SimConfig {
    SimConfig {
        nodes: 3,
        // Nothing answers there: a powered-on machine's agent only retries its lookup.
        conductor_url: "http://127.0.0.1:9".into(),
        boot_time: Duration::from_millis(50),
        ..SimConfig::default()
    }
}

fn ipmitool(port: u16, suite: &str, password: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ipmitool")
        .args(["-I", "lanplus", "-C", suite, "-H", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-U", "admin", "-P", password, "-N", "1", "-R", "2"])
        .args(args)
        .output()
        .expect("ipmitool (Debian package ipmitool)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_lanplus_drives_the_simulated_bmc() {
    let sim = Sim::start(config()).await.unwrap();
    let m = sim.fleet.machines[0].clone();
    let port = m.bmc_port;
    for suite in ["3", "17"] {
        let (ok, out) = tokio::task::spawn_blocking(move || {
            ipmitool(port, suite, "password", &["power", "status"])
        })
        .await
        .unwrap();
        assert!(
            ok && out.contains("Chassis Power is off"),
            "suite {suite}: {out}"
        );
    }
    let (ok, out) =
        tokio::task::spawn_blocking(move || ipmitool(port, "17", "password", &["power", "on"]))
            .await
            .unwrap();
    assert!(ok && out.contains("Up/On"), "{out}");
    assert_eq!(m.power(), PowerState::On);
    let (ok, out) = tokio::task::spawn_blocking(move || {
        ipmitool(port, "3", "password", &["chassis", "bootdev", "disk"])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert_eq!(m.state().boot.device, BootDevice::Disk);
    let (ok, out) = tokio::task::spawn_blocking(move || {
        ipmitool(port, "3", "password", &["chassis", "bootparam", "get", "5"])
    })
    .await
    .unwrap();
    assert!(
        ok && out.contains("Force Boot from default Hard-Drive"),
        "{out}"
    );
    let (ok, out) =
        tokio::task::spawn_blocking(move || ipmitool(port, "3", "password", &["power", "off"]))
            .await
            .unwrap();
    assert!(ok && out.contains("Down/Off"), "{out}");
    assert_eq!(m.power(), PowerState::Off);
    let (ok, out) =
        tokio::task::spawn_blocking(move || ipmitool(port, "3", "wrong", &["power", "status"]))
            .await
            .unwrap();
    assert!(!ok, "a wrong password must fail: {out}");
    // Each ipmitool run closed its session (the failed one never got one).
    let other = sim.fleet.machines[1].clone();
    assert_eq!(other.power(), PowerState::Off, "only node 0 was touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_drives_the_simulated_bmc_and_boots_the_machine() {
    let sim = Sim::start(config()).await.unwrap();
    let m = sim.fleet.machines[2].clone();
    let addr = format!("127.0.0.1:{}", m.bmc_port).parse().unwrap();
    let mut cfg = ClientConfig::new(addr, "admin", "password");
    cfg.timeout = Duration::from_millis(500);
    assert!(ferrite_ipmi::client::ping(&cfg).await.unwrap(), "ASF pong");
    let caps = ferrite_ipmi::client::channel_auth_capabilities(&cfg)
        .await
        .unwrap();
    assert!(caps.ipmi_v20);
    let suites = ferrite_ipmi::client::channel_cipher_suites(&cfg)
        .await
        .unwrap();
    assert_eq!(suites.iter().map(|s| s.id).collect::<Vec<_>>(), [3, 17]);

    let client = Client::new(cfg.clone());
    assert_eq!(client.power_state().await.unwrap(), PowerState::Off);
    assert_eq!(
        client.cipher_suite(),
        Some(ferrite_ipmi::CipherSuite::Suite17)
    );
    let id = client.device_id().await.unwrap();
    assert_eq!(id.ipmi_version_text(), "2.0");
    let pxe = BootOptions {
        device: BootDevice::Pxe,
        persistent: false,
        uefi: true,
        valid: true,
    };
    client.set_boot_options(pxe).await.unwrap();
    assert_eq!(client.boot_options().await.unwrap(), pxe);
    client
        .chassis_control(ChassisControl::PowerOn)
        .await
        .unwrap();
    assert_eq!(client.power_state().await.unwrap(), PowerState::On);
    // Booted from PXE: the agent runs (its lookups fail: no conductor here).
    ferrite_testkit::wait_until_async("the agent to boot", Duration::from_secs(10), || async {
        matches!(m.state().running, Running::Agent(_))
    })
    .await;
    // The one-time override is used up: a reset boots the default (PXE: no image yet).
    client
        .chassis_control(ChassisControl::HardReset)
        .await
        .unwrap();
    assert!(!m.state().boot.valid);
    client
        .chassis_control(ChassisControl::PowerOff)
        .await
        .unwrap();
    assert_eq!(client.power_state().await.unwrap(), PowerState::Off);
    assert!(matches!(m.state().running, Running::Off));
    client.close().await.unwrap();

    let mut wrong = cfg.clone();
    wrong.password = "nope".into();
    wrong.cipher_suite = Some(ferrite_ipmi::CipherSuite::Suite3);
    let err = Client::new(wrong).power_state().await.unwrap_err();
    assert!(err.to_string().contains("password"), "{err}");
}

/// Failure injection: a BMC that leaves requests unanswered is still driven by a client
/// that retries, and the drops are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_bmc_is_survived_by_retries() {
    let sim = Sim::start(SimConfig {
        bmc_drop_probability: 0.3,
        seed: 5,
        ..config()
    })
    .await
    .unwrap();
    let m = sim.fleet.machines[0].clone();
    let addr = format!("127.0.0.1:{}", m.bmc_port).parse().unwrap();
    let mut cfg = ClientConfig::new(addr, "admin", "password");
    cfg.timeout = Duration::from_millis(300);
    cfg.attempts = 8;
    let client = Client::new(cfg);
    for _ in 0..10 {
        assert_eq!(client.power_state().await.unwrap(), PowerState::Off);
    }
    let s = sim.stats();
    assert!(s.bmc_dropped > 0, "{s:?}");
    assert!(s.bmc_answered >= 10, "{s:?}");
}
