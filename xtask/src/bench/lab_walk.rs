//! The operator's walk through a conducted lab (`ferrite_qemu_harness::conducted`), timed
//! phase by phase, for `bench e2e` (plain vs fast track + kexec) and `bench redfish`
//! (virtual media vs iPXE): from a node in `enroll`, manage → inspect → provide (cleaning)
//! → deploy with a config drive → the deployed OS prints its marker. Every walk checks
//! that the node ends `active` and that the marker names its uuid and hostname.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::ensure;
use ferrite_qemu_harness::conducted::{Lab, LabNode};

use super::Size;
use crate::util;

pub const MANAGE: &str = "manage (BMC check)";
pub const INSPECT: &str = "inspection";
pub const LOOKUP: &str = "power on -> first lookup";
pub const PROVIDE: &str = "cleaning (provide)";
/// Deploy request → the conductor reports `active`.
pub const DEPLOY: &str = "deploy";
pub const ACTIVE: &str = "enroll -> active";
/// Deploy request → the deployed OS prints its marker.
pub const DEPLOY_MARKER: &str = "deploy -> deployed OS marker";
/// Only when the marker came after `active` (not with kexec, whose OS may print it first).
pub const MARKER: &str = "active -> deployed OS marker";
/// Enroll → the deployed OS's marker.
pub const TOTAL: &str = "total";

/// What the deployed test OS prints once booted.
const MARKER_TEXT: &str = "FERRITE-DEPLOYED";

/// What a lab needs: the static agent, the `ferrite` binary, the ramdisk package cache.
pub struct Binaries {
    pub agent: PathBuf,
    pub ferrite: PathBuf,
    pub cache: PathBuf,
}

impl Binaries {
    /// Builds the static agent, `ferrite` (release at full size; a smoke run takes the dev
    /// build `cargo test --workspace` makes, see [`super::build`]) and the BMC's chassis
    /// program.
    pub fn build(size: Size) -> anyhow::Result<Binaries> {
        let agent = crate::build_agent()?;
        let out = super::build(size, &["-p", "ferrite-conductor", "--bin", "ferrite"])?;
        if size == Size::Full {
            // The BMC's chassis program (a smoke run's test build has it).
            util::cargo(&[
                "build",
                "--package",
                "ferrite-qemu-harness",
                "--bin",
                "ferrite-qemu-harness",
            ])?;
        }
        Ok(Binaries {
            agent,
            ferrite: out.join("ferrite"),
            cache: util::project_root().join("target/ramdisk-cache"),
        })
    }
}

/// One walk's phase times in seconds, in order.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    pub phases: Vec<(&'static str, f64)>,
}

impl Walk {
    pub fn get(&self, phase: &str) -> Option<f64> {
        self.phases.iter().find(|(p, _)| *p == phase).map(|x| x.1)
    }

    fn push(&mut self, phase: &'static str, since: Instant) {
        self.phases.push((phase, since.elapsed().as_secs_f64()));
    }
}

/// The mean of `phase` over `walks` and the figures it came from ("52.1, 53.0"); None when
/// a walk lacks the phase.
pub fn mean(walks: &[Walk], phase: &str) -> Option<(f64, String)> {
    let v: Vec<f64> = walks.iter().map(|w| w.get(phase)).collect::<Option<_>>()?;
    if v.is_empty() {
        return None;
    }
    let each = v
        .iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    Some((v.iter().sum::<f64>() / v.len() as f64, each))
}

/// How far a walk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Manage and inspect only (the smoke runs).
    Inspected,
    /// Up to the deployed OS's marker.
    Marker,
}

/// Walks `lab`'s enrolled node (`uuid`; its config drive names it `hostname`) through the
/// conductor. `skip_console`,
/// when given, is called before provide so that the time to the agent's first lookup of the
/// cleaning boot is taken from the console (the plain path boots the ramdisk for it).
pub fn walk<N: LabNode>(
    lab: &mut Lab<N>,
    uuid: &str,
    hostname: &str,
    until: Until,
    skip_console: Option<fn(&mut N)>,
) -> anyhow::Result<Walk> {
    let mut w = Walk::default();
    let t0 = Instant::now();
    let t = Instant::now();
    lab.verb("manage", &[], 120)?;
    w.push(MANAGE, t);
    let t = Instant::now();
    let n = lab.verb("inspect", &[], 300)?;
    w.push(INSPECT, t);
    ensure!(
        n["provision_state"] == "manageable",
        "after inspection the node is {}",
        n["provision_state"]
    );
    if until == Until::Inspected {
        return Ok(w);
    }
    let t = Instant::now();
    if let Some(skip) = skip_console {
        skip(&mut lab.node);
        lab.start_verb("provide", &[])?;
        lab.wait_agent_lookup(Duration::from_secs(120))?;
        w.push(LOOKUP, t);
        lab.wait_state("available", Duration::from_secs(400))?;
    } else {
        lab.verb("provide", &[], 400)?;
    }
    w.push(PROVIDE, t);
    lab.set_image(&lab.image_sha256.clone())?;
    let drive = lab.config_drive(uuid, hostname)?;
    // The deploy runs while the console and the API are both watched: with kexec the
    // deployed OS can print its marker before the conductor reports `active`.
    let t = Instant::now();
    lab.start_verb("deploy", &["--config-drive", &drive])?;
    let (mut active_at, mut marker_at) = (None, None);
    let deadline = t + Duration::from_secs(600);
    while active_at.is_none() || marker_at.is_none() {
        if marker_at.is_none() && lab.node.console().contents().contains(MARKER_TEXT) {
            marker_at = Some(t.elapsed().as_secs_f64());
        }
        if active_at.is_none() {
            let n = lab.show()?;
            let state = n["provision_state"].as_str().unwrap_or("");
            if state == "active" && n["target_provision_state"].is_null() {
                active_at = Some(t.elapsed().as_secs_f64());
            }
            ensure!(
                !state.ends_with("failed"),
                "the deploy failed: {}",
                n["last_error"]
            );
        }
        ensure!(
            Instant::now() < deadline,
            "the deploy did not end active with the OS's marker in 600 s (active after {active_at:?} s, marker after {marker_at:?} s)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (active, marker) = (active_at.unwrap_or_default(), marker_at.unwrap_or_default());
    let before_deploy = t0.elapsed().as_secs_f64() - t.elapsed().as_secs_f64();
    w.phases.push((DEPLOY, active));
    w.phases.push((ACTIVE, before_deploy + active));
    w.phases.push((DEPLOY_MARKER, marker));
    if marker >= active {
        w.phases.push((MARKER, marker - active));
    }
    w.phases.push((TOTAL, before_deploy + marker));
    let line = lab.wait_marker(Duration::from_secs(10))?;
    let want = format!("FERRITE-DEPLOYED uuid={uuid} hostname={hostname}");
    ensure!(
        line == want,
        "the deployed OS printed {line:?}, not {want:?}"
    );
    Ok(w)
}

/// The duration of the last `step` on the node's step timeline (issue 20), if any.
pub fn step_seconds<N: LabNode>(
    lab: &Lab<N>,
    uuid: &str,
    step: &str,
) -> anyhow::Result<Option<f64>> {
    let addr = lab.url().trim_start_matches("http://").parse()?;
    let (status, body) =
        ferrite_qemu_harness::http::call(addr, "GET", &format!("/v1/nodes/{uuid}/timeline"), None)?;
    ensure!(status == 200, "GET the node's timeline: {status} {body}");
    let tl: serde_json::Value = serde_json::from_str(&body)?;
    Ok(tl["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "step" && e["name"] == step)
        .filter_map(|e| e["duration_s"].as_f64())
        .next_back())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_names_its_runs_and_needs_every_walk() {
        let w = |x: f64| Walk {
            phases: vec![(ACTIVE, x)],
        };
        let (m, each) = mean(&[w(50.0), w(54.0)], ACTIVE).unwrap();
        assert_eq!(m, 52.0);
        assert_eq!(each, "50.0, 54.0");
        assert!(mean(&[w(1.0), Walk::default()], ACTIVE).is_none());
        assert!(mean(&[], ACTIVE).is_none());
    }
}
