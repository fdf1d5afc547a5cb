//! Power changes that wait for the state to settle, against ipmi_sim with chassis programs
//! that change state at once, slowly, or never; and bounded-concurrency polling.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use ferrite_ipmi::sim::SimBmc;
use ferrite_ipmi::{
    poll_power, set_power, CipherSuite, Client, ClientConfig, ClientError, PowerAction, PowerError,
    PowerState, PowerWait,
};

fn config(bmc: &SimBmc) -> ClientConfig {
    let mut c = ClientConfig::new(bmc.addr(), bmc.username(), bmc.password());
    c.cipher_suite = Some(CipherSuite::Suite3);
    c.timeout = Duration::from_millis(500);
    c.attempts = 2;
    c
}

fn ipmitool_power(bmc: &SimBmc) -> String {
    let out = Command::new("ipmitool")
        .args(bmc.ipmitool_args())
        .args(["power", "status"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const FAST: PowerWait = PowerWait {
    timeout: Duration::from_secs(10),
    interval: Duration::from_millis(20),
};

#[tokio::test]
async fn on_off_reboot_settle_and_agree_with_ipmitool() {
    let bmc = SimBmc::builder().start().unwrap();
    let client = Client::new(config(&bmc));
    assert_eq!(
        set_power(&client, PowerAction::On, FAST).await.unwrap(),
        PowerState::On
    );
    assert_eq!(ipmitool_power(&bmc), "Chassis Power is on");
    // Already on: no second request reaches the chassis.
    set_power(&client, PowerAction::On, FAST).await.unwrap();
    assert_eq!(bmc.chassis_log().matches("set power 1").count(), 1);

    set_power(&client, PowerAction::Reboot, FAST).await.unwrap();
    let log = bmc.chassis_log();
    let off = log.rfind("set power 0").expect("reboot powers off");
    let on = log.rfind("set power 1").unwrap();
    assert!(off < on, "off before on:\n{log}");
    assert_eq!(ipmitool_power(&bmc), "Chassis Power is on");

    assert_eq!(
        set_power(&client, PowerAction::Off, FAST).await.unwrap(),
        PowerState::Off
    );
    assert_eq!(ipmitool_power(&bmc), "Chassis Power is off");
    assert_eq!(bmc.power_is_on(), Some(false));
}

/// A chassis program whose power reading lags `lag` reads behind each change (a slow
/// server), or never changes when `lag` is "never".
fn lagging_program(dir: &std::path::Path, lag: &str) -> String {
    let path = dir.join("lagging-chassis");
    let d = dir.display();
    let script = format!(
        r#"#!/bin/sh
D="{d}"; LAG="{lag}"
op=$1; shift
case "$op" in
get)
  for p in "$@"; do
    case "$p" in
      power)
        cur=$(cat "$D/cur" 2>/dev/null || echo 0)
        if [ -f "$D/target" ] && [ "$LAG" != never ]; then
          n=$(cat "$D/reads" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$D/reads"
          if [ $n -gt "$LAG" ]; then cur=$(cat "$D/target"); echo $cur > "$D/cur"; rm "$D/target"; fi
        fi
        echo "power:$cur" ;;
      boot) echo "boot:default" ;;
    esac
  done ;;
set)
  while [ $# -ge 2 ]; do
    [ "$1" = power ] && {{ echo "$2" > "$D/target"; echo 0 > "$D/reads"; }}
    shift 2
  done ;;
esac
"#
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn slow_bmc_settles_within_the_configured_wait() {
    let dir = tempfile::tempdir().unwrap();
    let bmc = SimBmc::builder()
        .chassis_control(&lagging_program(dir.path(), "4"))
        .start()
        .unwrap();
    let client = Client::new(config(&bmc));
    set_power(&client, PowerAction::On, FAST).await.unwrap();
    // The change showed only on the fifth reading after the request: we polled through it.
    let reads = std::fs::read_to_string(dir.path().join("reads")).unwrap();
    assert_eq!(reads.trim(), "5");
    assert_eq!(client.power_state().await.unwrap(), PowerState::On);
    assert_eq!(ipmitool_power(&bmc), "Chassis Power is on");
}

#[tokio::test]
async fn bmc_that_never_changes_gives_a_bounded_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bmc = SimBmc::builder()
        .chassis_control(&lagging_program(dir.path(), "never"))
        .start()
        .unwrap();
    let client = Client::new(config(&bmc));
    let wait = PowerWait {
        timeout: Duration::from_millis(400),
        interval: Duration::from_millis(50),
    };
    let start = Instant::now();
    let err = set_power(&client, PowerAction::On, wait).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(
            err,
            PowerError::NotSettled {
                wanted: PowerState::On,
                state: PowerState::Off,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("power wait timeout"), "{err}");
}

#[tokio::test]
async fn poll_many_with_bounded_concurrency_and_one_dead_bmc() {
    let fleet: Vec<SimBmc> = (0..6)
        .map(|_| SimBmc::builder().without_chassis_control().start().unwrap())
        .collect();
    let mut cfgs: Vec<ClientConfig> = fleet.iter().map(config).collect();
    // A dead BMC in the middle: its slot errs, the others still answer.
    let dead = SimBmc::builder().start().unwrap();
    let mut dead_cfg = config(&dead);
    drop(dead);
    dead_cfg.timeout = Duration::from_millis(200);
    cfgs.insert(3, dead_cfg);
    let start = Instant::now();
    let results = poll_power(cfgs, 3).await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(results.len(), 7);
    for (i, r) in results.iter().enumerate() {
        if i == 3 {
            assert!(
                matches!(
                    r,
                    Err(ClientError::Refused { .. } | ClientError::Timeout { .. })
                ),
                "{r:?}"
            );
        } else {
            assert_eq!(*r.as_ref().unwrap(), PowerState::Off);
        }
    }
    for b in &fleet {
        assert_eq!(ipmitool_power(b), "Chassis Power is off");
    }
}
