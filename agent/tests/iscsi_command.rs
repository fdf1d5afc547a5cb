//! `iscsi.start_iscsi_target` / `iscsi.stop_iscsi_target` through the real agent API: the
//! agent exports its (file) target disk, our initiator logs in with CHAP and writes.

mod common;

use common::Agent;
use ferrite_agent::state::AgentConfig;
use ferrite_agent::system::SystemAction;
use ferrite_iscsi::{Credentials, Initiator, LoginOptions};
use serde_json::json;
use std::time::Duration;

const IQN: &str = "iqn.2026-01.org.ferrite:agent-disk";
const DISK: u64 = 16 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_write_through_initiator_then_stop() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    // Old partition-table-like bytes at both ends, which wipe_disk_metadata must clear.
    std::fs::write(&disk, vec![0x55u8; DISK as usize]).unwrap();
    let config = AgentConfig {
        target_disk: Some(disk.clone()),
        ..AgentConfig::default()
    };
    let agent = Agent::start_with(config, None, None).await;

    // Bad params are refused before anything happens.
    let (code, res) = agent
        .command("", "iscsi.start_iscsi_target", json!({"iqn": "not a name"}))
        .await;
    assert_eq!(code, 400, "{res}");
    let (code, res) = agent
        .command(
            "",
            "iscsi.start_iscsi_target",
            json!({"iqn": IQN, "ferrite_chap_user": "conductor"}),
        )
        .await;
    assert_eq!(code, 400, "{res}");

    let params = json!({"iqn": IQN, "portal_port": 0, "wipe_disk_metadata": true,
                        "ferrite_chap_user": "conductor", "ferrite_chap_secret": "chap-secret-1"});
    let (code, res) = agent.command("", "iscsi.start_iscsi_target", params).await;
    assert_eq!(code, 200, "{res}");
    assert_eq!(res["command_status"], "SUCCEEDED", "{res}");
    let port = res["command_result"]["ferrite_portal_port"]
        .as_u64()
        .unwrap() as u16;
    assert_eq!(res["command_result"]["iscsi_target_iqn"], IQN);
    assert_eq!(res["command_result"]["ferrite_device_is_file"], true);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();

    let mut opts = LoginOptions::new("iqn.2026-01.org.ferrite:conductor", IQN);
    let e = Initiator::connect(addr, &opts).await.unwrap_err();
    assert!(e.is_authentication_failure(), "{e}");
    opts.chap = Some(Credentials {
        user: "conductor".into(),
        secret: "chap-secret-1".into(),
    });
    let mut s = Initiator::connect(addr, &opts).await.unwrap();
    assert_eq!(s.blocks() * s.block_size() as u64, DISK);
    let head = s.read(0, 2048).await.unwrap();
    assert!(head.iter().all(|&b| b == 0), "first MiB wiped");
    let data: Vec<u8> = (0..(1 << 20)).map(|i| (i % 253) as u8).collect();
    s.write(4096, &data).await.unwrap();
    s.sync().await.unwrap();
    s.logout().await.unwrap();

    let (code, res) = agent
        .command("", "iscsi.stop_iscsi_target", json!({}))
        .await;
    assert_eq!(code, 200, "{res}");
    assert_eq!(res["command_result"]["ferrite_stopped"], IQN);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "target stopped listening"
    );
    // standby.sync and standby.power_off end the deploy: a target left running stops.
    for (command, action) in [
        ("standby.sync", SystemAction::Sync),
        ("standby.power_off", SystemAction::PowerOff),
    ] {
        let params = json!({"iqn": IQN, "portal_port": 0});
        let (code, res) = agent.command("", "iscsi.start_iscsi_target", params).await;
        assert_eq!(code, 200, "{res}");
        let port = res["command_result"]["ferrite_portal_port"]
            .as_u64()
            .unwrap() as u16;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let s = Initiator::connect(addr, &LoginOptions::new("iqn.2026-01.org.ferrite:c", IQN))
            .await
            .unwrap();
        s.logout().await.unwrap();
        let (code, res) = agent.command("", command, json!({})).await;
        assert!(code == 200 || code == 202, "{command}: {res}");
        ferrite_testkit::wait_until_async(
            "the target to close and the hook to run",
            Duration::from_secs(20),
            || async {
                let closed = tokio::net::TcpStream::connect(addr).await.is_err();
                (closed && agent.hooks.calls().contains(&action)).then_some(())
            },
        )
        .await;
    }

    let file = std::fs::read(&disk).unwrap();
    assert_eq!(&file[4096 * 512..4096 * 512 + data.len()], &data[..]);
    assert!(
        file[(DISK - (1 << 20)) as usize..].iter().all(|&b| b == 0),
        "last MiB wiped"
    );
    assert!(
        file[(3 << 20)..(15 << 20)].iter().all(|&b| b == 0x55),
        "middle untouched"
    );
}

/// Each agent stops only its own target. Regression: the running target was one
/// process-wide static, so in the conductor's tests (several in-process agents) another
/// test's `standby.sync` stopped the target `deploy_through_iscsi` was writing to, and its
/// deploy failed with "connection closed by the peer".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_is_stopped_only_by_its_own_agent() {
    let dir = tempfile::tempdir().unwrap();
    let agent = |name: &str| {
        let disk = dir.path().join(name);
        std::fs::write(&disk, vec![0x55u8; DISK as usize]).unwrap();
        Agent::start_with(
            AgentConfig {
                target_disk: Some(disk),
                ..AgentConfig::default()
            },
            None,
            None,
        )
    };
    let (exporting, other) = (agent("a.img").await, agent("b.img").await);
    let (code, res) = exporting
        .command(
            "",
            "iscsi.start_iscsi_target",
            json!({"iqn": IQN, "portal_port": 0}),
        )
        .await;
    assert_eq!(code, 200, "{res}");
    let port = res["command_result"]["ferrite_portal_port"]
        .as_u64()
        .unwrap() as u16;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s = Initiator::connect(addr, &LoginOptions::new("iqn.2026-01.org.ferrite:c", IQN))
        .await
        .unwrap();
    let data: Vec<u8> = (0..(4 << 20)).map(|i| (i % 251) as u8).collect();
    let data = bytes::Bytes::from(data);
    s.submit_write(0, data.slice(..2 << 20)).await.unwrap();

    // The other agent ends its deploy while this one's disk is being written.
    let (code, res) = other.command("", "standby.sync", json!({})).await;
    assert_eq!(code, 200, "{res}");
    assert_eq!(res["command_status"], "SUCCEEDED", "{res}");
    let (_, res) = other
        .command("", "iscsi.stop_iscsi_target", json!({}))
        .await;
    assert!(res["command_result"]["ferrite_stopped"].is_null(), "{res}");

    s.submit_write(4096, data.slice(2 << 20..)).await.unwrap();
    s.wait_all()
        .await
        .expect("writes in flight survive another agent's standby.sync");
    assert_eq!(s.read(0, 8192).await.unwrap(), &data[..]);
    s.sync().await.unwrap();
    s.logout().await.unwrap();
    let (_, res) = exporting
        .command("", "iscsi.stop_iscsi_target", json!({}))
        .await;
    assert_eq!(res["command_result"]["ferrite_stopped"], IQN, "{res}");
}
