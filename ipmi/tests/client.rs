//! The client against a real ipmi_sim, every result cross-checked with ipmitool.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use ferrite_ipmi::client::{channel_auth_capabilities, channel_cipher_suites, ping};
use ferrite_ipmi::sim::SimBmc;
use ferrite_ipmi::{
    BootDevice, BootOptions, ChassisControl, CipherSuite, Client, ClientConfig, ClientError,
    PowerState,
};

fn ipmitool(bmc: &SimBmc, args: &[&str]) -> String {
    let out = Command::new("ipmitool")
        .args(bmc.ipmitool_args())
        .args(args)
        .output()
        .expect("run ipmitool (Debian package ipmitool)");
    assert!(
        out.status.success(),
        "ipmitool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn config(bmc: &SimBmc) -> ClientConfig {
    let mut c = ClientConfig::new(bmc.addr(), bmc.username(), bmc.password());
    c.cipher_suite = Some(CipherSuite::Suite3);
    c.timeout = Duration::from_millis(500);
    c.attempts = 2;
    c
}

#[tokio::test]
async fn power_on_off_status_agree_with_ipmitool() {
    let bmc = SimBmc::builder().start().unwrap();
    let client = Client::new(config(&bmc));
    assert_eq!(client.power_state().await.unwrap(), PowerState::Off);
    assert!(ipmitool(&bmc, &["power", "status"]).contains("is off"));

    client
        .chassis_control(ChassisControl::PowerOn)
        .await
        .unwrap();
    assert_eq!(client.power_state().await.unwrap(), PowerState::On);
    assert!(ipmitool(&bmc, &["power", "status"]).contains("is on"));
    assert_eq!(bmc.power_is_on(), Some(true));

    client
        .chassis_control(ChassisControl::PowerOff)
        .await
        .unwrap();
    assert_eq!(client.power_state().await.unwrap(), PowerState::Off);
    assert!(ipmitool(&bmc, &["power", "status"]).contains("is off"));

    // ipmitool changes the power; we see it.
    ipmitool(&bmc, &["power", "on"]);
    assert_eq!(client.power_state().await.unwrap(), PowerState::On);
    client
        .chassis_control(ChassisControl::HardReset)
        .await
        .unwrap();
    client
        .chassis_control(ChassisControl::PowerCycle)
        .await
        .unwrap();
    client
        .chassis_control(ChassisControl::SoftOff)
        .await
        .unwrap();
    client.close().await.unwrap();
}

#[tokio::test]
async fn boot_device_set_get_agree_with_ipmitool() {
    let bmc = SimBmc::builder().start().unwrap();
    let client = Client::new(config(&bmc));
    for (dev, sim_name, ipmitool_text) in [
        (BootDevice::Pxe, "pxe", "Force PXE"),
        (
            BootDevice::Disk,
            "default",
            "Force Boot from default Hard-Drive",
        ),
        (BootDevice::Cdrom, "cdrom", "Force Boot from CD/DVD"),
        (BootDevice::Bios, "bios", "Force Boot into BIOS Setup"),
    ] {
        let opts = BootOptions {
            device: dev,
            persistent: true,
            uefi: true,
            valid: true,
        };
        client.set_boot_options(opts).await.unwrap();
        assert_eq!(bmc.boot_device().as_deref(), Some(sim_name), "{dev:?}");
        let got = client.boot_options().await.unwrap();
        let shown = ipmitool(&bmc, &["chassis", "bootparam", "get", "5"]);
        assert!(shown.contains(ipmitool_text), "{dev:?}: {shown}");
        // ipmi_sim names the disk "default" towards its chassis program.
        assert_eq!(got.device, dev);
    }
    // ipmitool sets, we read.
    ipmitool(&bmc, &["chassis", "bootdev", "pxe"]);
    assert_eq!(client.boot_options().await.unwrap().device, BootDevice::Pxe);
}

#[tokio::test]
async fn device_id_and_auth_caps_agree_with_ipmitool() {
    let bmc = SimBmc::builder().start().unwrap();
    let cfg = config(&bmc);
    let client = Client::new(cfg.clone());
    let id = client.device_id().await.unwrap();
    let info = ipmitool(&bmc, &["mc", "info"]);
    assert!(info.contains(&format!(
        "Manufacturer ID           : {}",
        id.manufacturer_id
    )));
    assert!(info.contains(&format!(
        "IPMI Version              : {}",
        id.ipmi_version_text()
    )));
    assert!(info.contains(&format!("{:#06x}", id.product_id)), "{info}");
    let caps = channel_auth_capabilities(&cfg).await.unwrap();
    assert!(caps.ipmi_v20);
    assert!(ping(&cfg).await.unwrap());
}

#[tokio::test]
async fn wrong_user_and_password_are_clear_errors() {
    let bmc = SimBmc::builder().start().unwrap();
    let mut cfg = config(&bmc);
    cfg.password = "wrong".into();
    let err = Client::new(cfg.clone()).power_state().await.unwrap_err();
    assert!(matches!(err, ClientError::WrongPassword { .. }), "{err}");
    assert!(err.to_string().contains("wrong password"), "{err}");
    cfg.password = bmc.password().into();
    cfg.username = "nobody".into();
    let err = Client::new(cfg).power_state().await.unwrap_err();
    assert!(
        matches!(err, ClientError::SessionRefused { code: 0x0d, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("unknown user name"), "{err}");
    // ipmitool agrees that both fail.
    let out = Command::new("ipmitool")
        .args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p"])
        .arg(bmc.port().to_string())
        .args(["-U", "admin", "-P", "wrong", "power", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn unsupported_cipher_suite_is_a_clear_error() {
    let bmc = SimBmc::builder().start().unwrap();
    let mut cfg = config(&bmc);
    cfg.cipher_suite = Some(CipherSuite::Suite17);
    let err = Client::new(cfg).power_state().await.unwrap_err();
    assert!(matches!(err, ClientError::SessionRefused { .. }), "{err}");
    assert!(err.to_string().contains("cipher suite"), "{err}");
    // ipmitool -C 17 fails the same way on ipmi_sim.
    let out = Command::new("ipmitool")
        .args(["-I", "lanplus", "-C", "17", "-H", "127.0.0.1", "-p"])
        .arg(bmc.port().to_string())
        .args(["-U", "admin", "-P", "password", "power", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn bmc_down_is_a_bounded_error() {
    let bmc = SimBmc::builder().start().unwrap();
    let cfg = config(&bmc);
    drop(bmc);
    let start = Instant::now();
    let err = Client::new(cfg.clone()).power_state().await.unwrap_err();
    assert!(start.elapsed() <= cfg.max_wait() + Duration::from_millis(500));
    assert!(
        matches!(
            err,
            ClientError::Refused { .. } | ClientError::Timeout { .. }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn missing_get_channel_cipher_suites_does_not_stall() {
    let bmc = SimBmc::builder().start().unwrap();
    let mut cfg = config(&bmc);
    cfg.timeout = Duration::from_millis(200);
    cfg.attempts = 1;
    let start = Instant::now();
    match channel_cipher_suites(&cfg).await {
        // ipmi_sim does not answer this command: bounded timeout.
        Err(ClientError::Timeout { .. }) => {}
        Ok(suites) => assert!(suites.iter().any(|s| s.id == 3)),
        Err(e) => panic!("{e}"),
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    // And a session opens without it.
    assert_eq!(
        Client::new(cfg).power_state().await.unwrap(),
        PowerState::Off
    );
}

/// A network that rewrites the session ID of every in-session reply: the client must drop
/// them all (they are not for its session) and fail with a bounded timeout, not accept them.
#[tokio::test]
async fn spoofed_session_ids_are_ignored() {
    let bmc = SimBmc::builder().start().unwrap();
    fn spoof(d: &mut [u8]) {
        // RMCP (4) + auth type 0x06 + payload type with the encrypted/authenticated bits.
        if d.len() > 10 && d[4] == 0x06 && d[5] & 0xc0 != 0 {
            d[6] ^= 0x55;
        }
    }
    let proxy = common::start(bmc.addr(), Some(spoof)).await;
    let mut cfg = config(&bmc);
    cfg.addr = proxy.addr;
    cfg.timeout = Duration::from_millis(200);
    let start = Instant::now();
    let err = Client::new(cfg.clone()).power_state().await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(start.elapsed() < cfg.max_wait() + Duration::from_millis(500));
    // The BMC did answer: the replies were there and were refused.
    let replies = proxy
        .capture
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, _)| !c)
        .count();
    assert!(replies >= 4, "{replies} replies");
}

/// Corrupted in-session replies (a flipped bit) fail the integrity check and are dropped.
#[tokio::test]
async fn corrupted_replies_are_dropped() {
    let bmc = SimBmc::builder().start().unwrap();
    fn corrupt(d: &mut [u8]) {
        if d.len() > 30 && d[4] == 0x06 && d[5] & 0xc0 != 0 {
            d[20] ^= 0x01;
        }
    }
    let proxy = common::start(bmc.addr(), Some(corrupt)).await;
    let mut cfg = config(&bmc);
    cfg.addr = proxy.addr;
    cfg.timeout = Duration::from_millis(200);
    let err = Client::new(cfg).power_state().await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
}

/// A reused session survives many calls, and is re-opened once after the BMC forgets it.
#[tokio::test]
async fn session_reuse_and_reopen() {
    let bmc = SimBmc::builder().start().unwrap();
    let client = Client::new(config(&bmc));
    client.connect().await.unwrap();
    for _ in 0..20 {
        assert_eq!(client.power_state().await.unwrap(), PowerState::Off);
    }
    // Kill the session behind the client's back (as a BMC timeout would)...
    let stale = client.session_id().await.unwrap();
    let mut other = ferrite_ipmi::Session::open(&config(&bmc)).await.unwrap();
    other.close_other(stale).await.unwrap();
    other.close().await.unwrap();
    // ...the next call times out on the dead session, re-opens once and succeeds.
    assert_eq!(client.power_state().await.unwrap(), PowerState::Off);
    let fresh = client.session_id().await.unwrap();
    assert_ne!(fresh, stale);
    client.close().await.unwrap();
    assert_eq!(client.session_id().await, None);
    // After close, the next call opens a fresh session.
    assert_eq!(client.power_state().await.unwrap(), PowerState::Off);
}

/// Without a configured suite, the client proposes 17, and on ipmi_sim's refusal falls back
/// to 3, remembers it, and never asks Get Channel Cipher Suites.
#[tokio::test]
async fn automatic_suite_falls_back_to_3() {
    let bmc = SimBmc::builder().start().unwrap();
    let mut cfg = config(&bmc);
    cfg.cipher_suite = None;
    let client = Client::new(cfg);
    assert_eq!(client.cipher_suite(), None);
    assert_eq!(client.power_state().await.unwrap(), PowerState::Off);
    assert_eq!(client.cipher_suite(), Some(CipherSuite::Suite3));
    client.close().await.unwrap();
    assert_eq!(client.power_state().await.unwrap(), PowerState::Off);
}

#[tokio::test]
async fn lan_config_agrees_with_ipmitool() {
    let bmc = SimBmc::builder()
        .lan_address(
            "192.0.2.17".parse().unwrap(),
            [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef],
        )
        .start()
        .unwrap();
    let client = Client::new(config(&bmc));
    let ip = client.lan_ip(1).await.unwrap();
    let mac = client.lan_mac(1).await.unwrap();
    assert_eq!(ip.to_string(), "192.0.2.17");
    let lan = ipmitool(&bmc, &["lan", "print", "1"]);
    assert!(
        lan.contains(&format!("IP Address              : {ip}")),
        "{lan}"
    );
    let mac_text = ferrite_ipmi::codec::commands::mac_text(&mac);
    assert_eq!(mac_text, "52:54:00:ab:cd:ef");
    assert!(
        lan.contains(&format!("MAC Address             : {mac_text}")),
        "{lan}"
    );
    let gw = client
        .lan_config(1, ferrite_ipmi::codec::commands::LanParam::DefaultGateway)
        .await
        .unwrap();
    let gw = ferrite_ipmi::codec::commands::decode_ipv4(&gw).unwrap();
    assert!(
        lan.contains(&format!("Default Gateway IP      : {gw}")),
        "{lan}"
    );
}
