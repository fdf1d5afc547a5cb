//! The Redfish client against sushy-tools' sushy-emulator (fake systems driver): every
//! operation, basic auth with wrong credentials, an unknown system id, TLS verification.
//! The emulator comes from `cargo xtask deps` (target/sushy-venv).

mod common;

use std::time::Duration;

use axum::routing::get;
use ferrite_redfish::emulator::{Emulator, FakeSystem};
use ferrite_redfish::model::TaskState;
use ferrite_redfish::{
    BootMode, BootOverride, BootSource, ClientConfig, PowerAction, PowerState, PowerWait,
    RedfishError, ResetType, TlsVerify,
};

const GIB: u64 = 1 << 30;

fn emulator() -> Emulator {
    Emulator::builder()
        .system(
            FakeSystem::new("node-0")
                .macs(&["52:54:00:aa:bb:01", "52:54:00:AA:BB:02"])
                .cpus(4)
                .memory_gib(8)
                .disks(&[20 * GIB, 40 * GIB]),
        )
        .user("admin", "password")
        .start()
        .unwrap()
}

#[tokio::test]
async fn every_read_and_boot_operation_against_the_emulator() {
    let bmc = emulator();
    let c = common::client(&bmc.url(), "admin", "password");
    let root = c.root().await.unwrap();
    assert_eq!(root.redfish_version.as_deref(), Some("1.5.0"));
    assert_eq!(c.quirks().await.unwrap(), Default::default());

    let systems = c.systems().await.unwrap();
    assert_eq!(systems, vec![bmc.system_path(0)]);
    let sys = c.find_system(None).await.unwrap();
    assert_eq!(sys.path, bmc.system_path(0));
    let uuid = bmc.systems()[0].uuid.clone();
    assert_eq!(c.find_system(Some(&uuid)).await.unwrap(), sys);
    assert_eq!(c.find_system(Some(&sys.path)).await.unwrap(), sys);
    // The emulator offers no sessions: basic auth was chosen.
    assert!(!c.uses_session().await);

    assert_eq!(c.power_state(&sys).await.unwrap(), PowerState::Off);

    for (target, persistent, mode) in [
        (BootSource::Pxe, false, Some(BootMode::Uefi)),
        (BootSource::Cd, true, Some(BootMode::Legacy)),
        (BootSource::Hdd, true, None),
    ] {
        c.set_boot(
            &sys,
            BootOverride {
                target,
                persistent,
                mode,
            },
        )
        .await
        .unwrap();
        let boot = c.system(&sys).await.unwrap().boot;
        assert_eq!(boot.boot_source_override_target, Some(target));
        if let Some(m) = mode {
            assert_eq!(boot.boot_source_override_mode, Some(m));
        }
    }

    let inv = c.inventory(&sys).await.unwrap();
    assert_eq!(inv.system_id, uuid);
    assert_eq!(inv.cpus, Some(4));
    assert_eq!(inv.cpu_arch.as_deref(), Some("x86_64"));
    assert_eq!(inv.memory_mb, Some(8 * 1024));
    let macs: Vec<&str> = inv.nics.iter().map(|n| n.mac.as_str()).collect();
    assert_eq!(macs, vec!["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"]);
    let sizes: Vec<u64> = inv.disks.iter().map(|d| d.size_bytes).collect();
    assert_eq!(sizes, vec![20 * GIB, 40 * GIB]);
    assert_eq!(inv.manufacturer.as_deref(), Some("Sushy Emulator"));
    assert!(inv.bmc.is_some(), "{inv:?}");

    // Virtual media: the emulator downloads the image, so it is served from here.
    let images =
        common::serve(axum::Router::new().route("/boot.iso", get(|| async { vec![0x42u8; 4096] })))
            .await;
    let media = c.virtual_media(&sys).await.unwrap();
    assert!(media.iter().any(|m| m.is_cd()), "{media:?}");
    let url = format!("{images}/boot.iso");
    c.insert_media(&sys, &url).await.unwrap();
    let cd = c.cd_media(&sys).await.unwrap();
    assert_eq!(cd.image.as_deref(), Some(url.as_str()));
    assert_eq!(cd.inserted, Some(true));
    // Inserting again ejects the old image first.
    c.insert_media(&sys, &url).await.unwrap();
    c.eject_media(&sys).await.unwrap();
    let cd = c.cd_media(&sys).await.unwrap();
    assert!(!cd.has_image(), "{cd:?}");
    c.eject_media(&sys).await.unwrap();

    // The emulator's one task resource is complete.
    let t = c
        .wait_task("/redfish/v1/TaskService/Tasks/42", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(t.task_state, Some(TaskState::Completed));

    // A reset type the system does not list is refused before anything is sent.
    let e = c.reset(&sys, ResetType::PowerCycle).await.unwrap_err();
    assert!(matches!(e, RedfishError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("ForceRestart"), "{e}");
    c.logout().await.unwrap();
}

#[tokio::test]
async fn power_changes_wait_for_the_new_state() {
    // The fake driver applies a power change 1-11 s after the request, like real BMCs.
    let bmc = emulator();
    let c = common::client(&bmc.url(), "admin", "password");
    let sys = c.find_system(None).await.unwrap();
    let wait = PowerWait {
        timeout: Duration::from_secs(30),
        interval: Duration::from_millis(200),
    };
    assert_eq!(
        c.set_power(&sys, PowerAction::On, wait).await.unwrap(),
        PowerState::On
    );
    assert_eq!(c.power_state(&sys).await.unwrap(), PowerState::On);
    // Already on: nothing to do, no wait.
    let t = std::time::Instant::now();
    c.set_power(&sys, PowerAction::On, wait).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(
        c.set_power(&sys, PowerAction::SoftOff, wait).await.unwrap(),
        PowerState::Off
    );
    assert_eq!(c.power_state(&sys).await.unwrap(), PowerState::Off);
    // Reboot from off is a plain power on; ForceOff is refused nothing.
    c.reset(&sys, ResetType::ForceOff).await.unwrap();
    let short = PowerWait {
        timeout: Duration::from_millis(300),
        interval: Duration::from_millis(100),
    };
    c.reset(&sys, ResetType::On).await.unwrap();
    match c.wait_power(&sys, PowerState::On, short).await {
        // Applied within 300 ms: possible (1 s granularity), fine.
        Ok(()) => {}
        Err(e) => {
            assert!(matches!(e, RedfishError::PowerNotSettled { .. }), "{e}");
            assert!(e.to_string().contains("raise the power wait"), "{e}");
        }
    }
}

#[tokio::test]
async fn wrong_credentials_and_unknown_systems_say_what_to_fix() {
    let bmc = emulator();
    let c = common::client(&bmc.url(), "admin", "not-the-password");
    let e = c.find_system(None).await.unwrap_err();
    assert!(matches!(e, RedfishError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("redfish_password"), "{e}");
    let anon = common::client(&bmc.url(), "", "");
    assert!(matches!(
        anon.systems().await.unwrap_err(),
        RedfishError::Unauthorized { .. }
    ));

    let c = common::client(&bmc.url(), "admin", "password");
    let e = c.find_system(Some("no-such-system")).await.unwrap_err();
    match &e {
        RedfishError::UnknownSystem { id, available } => {
            assert_eq!(id, "no-such-system");
            assert_eq!(available, &vec![bmc.system_path(0)]);
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("redfish_system_id"), "{e}");
}

#[tokio::test]
async fn two_systems_need_a_system_id() {
    let bmc = Emulator::builder()
        .system(FakeSystem::new("a"))
        .system(FakeSystem::new("b").powered_on())
        .start()
        .unwrap();
    let c = common::client(&bmc.url(), "", "");
    let e = c.find_system(None).await.unwrap_err();
    assert!(matches!(e, RedfishError::AmbiguousSystem { .. }), "{e}");
    assert!(e.to_string().contains(&bmc.systems()[1].uuid), "{e}");
    let b = c.find_system(Some(&bmc.systems()[1].uuid)).await.unwrap();
    assert_eq!(c.power_state(&b).await.unwrap(), PowerState::On);
}

#[tokio::test]
async fn tls_is_verified_by_default_with_a_ca_file_or_not_at_all() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Ferrite test BMC CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let bmc = Emulator::builder()
        .tls(&cert.pem(), &key.serialize_pem())
        .start()
        .unwrap();
    assert!(bmc.url().starts_with("https://"));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();

    let with = |verify: TlsVerify| {
        let mut cfg = ClientConfig::new(bmc.url().parse().unwrap(), "", "");
        cfg.verify = verify;
        cfg.retry = common::quick_retry(2);
        ferrite_redfish::Client::new(cfg).unwrap()
    };
    let e = with(TlsVerify::Verify).systems().await.unwrap_err();
    assert!(matches!(e, RedfishError::Tls { .. }), "{e}");
    assert!(e.to_string().contains("redfish_verify_ca"), "{e}");
    assert_eq!(
        with(TlsVerify::CaFile(ca_file))
            .systems()
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(with(TlsVerify::Off).systems().await.unwrap().len(), 1);
    let mut cfg = ClientConfig::new(bmc.url().parse().unwrap(), "", "");
    cfg.verify = TlsVerify::CaFile(dir.path().join("missing.pem"));
    let e = ferrite_redfish::Client::new(cfg)
        .err()
        .expect("a missing CA file fails");
    assert!(matches!(e, RedfishError::CaFile { .. }), "{e}");
}
