//! `cargo xtask bench redfish`, full size only (issue 17): enroll → active of a node booted
//! through Redfish virtual media against one booted by iPXE, in the same run, alternating
//! (ipxe, virtual media, virtual media, ipxe), each walk on a new lab. Virtual media: the
//! `redfish` hardware type with the `redfish-virtual-media` boot interface on a UEFI (OVMF)
//! libvirt domain behind sushy-emulator's libvirt driver (`Lab::start_redfish`), the
//! ramdisk's address from `network_data`. iPXE: the `ipmi` hardware type with the `ipxe`
//! boot interface on a QEMU node behind ipmi_sim (`Lab::start`), which boots with SeaBIOS
//! (BIOS) and QEMU's iPXE option ROM, DHCP from QEMU's user network.

use std::path::Path;

use anyhow::ensure;
use ferrite_qemu_harness::conducted::{Lab, LabConfig};
use ferrite_qemu_harness::Node;

use super::lab_walk::{self, Binaries, Until, Walk};
use super::{Record, Size};

/// Guest RAM of both nodes: sushy's libvirt driver reports memory in whole GiB.
const MEMORY_MIB: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boot {
    Ipxe,
    VirtualMedia,
}

fn config(bin: &Binaries, work: &Path, n: usize) -> LabConfig {
    let mut cfg = LabConfig::new(
        bin.agent.clone(),
        bin.ferrite.clone(),
        bin.cache.clone(),
        work.join(format!("walk-{n}")),
    );
    cfg.memory_mib = MEMORY_MIB;
    cfg.node_name = format!("bench-boot-{n}");
    cfg.mac = format!("52:54:00:fe:17:{n:02x}");
    cfg
}

fn ipxe_walk(bin: &Binaries, work: &Path, n: usize) -> anyhow::Result<Walk> {
    let cfg = config(bin, work, n);
    let name = cfg.node_name.clone();
    let mut lab = Lab::start(cfg)?;
    let node = lab.enroll()?;
    let uuid = node["uuid"].as_str().unwrap_or_default().to_string();
    let w = lab_walk::walk(&mut lab, &uuid, &name, Until::Marker, None::<fn(&mut Node)>)?;
    let console = lab.node.console().contents();
    ensure!(
        console.contains("iPXE"),
        "the ipxe node did not boot through iPXE"
    );
    Ok(w)
}

fn vmedia_walk(bin: &Binaries, work: &Path, n: usize) -> anyhow::Result<Walk> {
    let cfg = config(bin, work, n);
    let name = cfg.node_name.clone();
    let mut lab = Lab::start_redfish(cfg)?;
    let node = lab.enroll_redfish("redfish-virtual-media", "agent")?;
    let uuid = node["uuid"].as_str().unwrap_or_default().to_string();
    // Static addressing for the ramdisk, as tests/tests/redfish_virtual_media_vm.rs does.
    lab.set_static_network()?;
    let w = lab_walk::walk(&mut lab, &uuid, &name, Until::Marker, None)?;
    let console = lab.node.console().contents();
    ensure!(
        console.contains("UEFI QEMU DVD-ROM") && !console.contains("iPXE"),
        "the virtual-media node did not boot from the virtual CD alone:\n{}",
        lab.node.console().tail(40)
    );
    ensure!(
        console.matches("static 10.0.2.15/24").count() == 3,
        "the ramdisk did not boot from virtual media for inspection, cleaning and deploy"
    );
    Ok(w)
}

/// The walks and their records; none in a smoke run (each walk boots QEMU four times).
pub fn run(size: Size) -> anyhow::Result<Vec<Record>> {
    if size == Size::Smoke {
        return Ok(vec![]);
    }
    let bin = Binaries::build(size)?;
    let work = tempfile::Builder::new()
        .prefix("ferrite-bench-vmedia-")
        .tempdir()?;
    let (mut ipxe, mut vmedia) = (vec![], vec![]);
    let order = [
        Boot::Ipxe,
        Boot::VirtualMedia,
        Boot::VirtualMedia,
        Boot::Ipxe,
    ];
    for (i, boot) in order.into_iter().enumerate() {
        let w = match boot {
            Boot::Ipxe => ipxe_walk(&bin, work.path(), i + 1)?,
            Boot::VirtualMedia => vmedia_walk(&bin, work.path(), i + 1)?,
        };
        eprintln!("bench redfish: walk {} ({boot:?}): {:?}", i + 1, w.phases);
        match boot {
            Boot::Ipxe => ipxe.push(w),
            Boot::VirtualMedia => vmedia.push(w),
        }
    }
    records(&vmedia, &ipxe)
}

fn records(vmedia: &[Walk], ipxe: &[Walk]) -> anyhow::Result<Vec<Record>> {
    let base = "ipxe boot interface: ipmi hardware type, QEMU node behind ipmi_sim, SeaBIOS \
                (BIOS), QEMU's iPXE ROM, DHCP";
    let how = format!(
        "QEMU TCG, {MEMORY_MIB} MiB each; virtual media: redfish hardware type, \
         redfish-virtual-media boot interface, a UEFI (OVMF) libvirt domain in a private \
         libvirtd behind sushy-emulator's libvirt driver; the conductor builds the ISO, the \
         BMC inserts it, the ramdisk takes its address from network_data; ipxe: the \
         conductor sets PXE over IPMI, iPXE fetches its script, kernel and initramfs over \
         HTTP. NOT only the boot path differs: firmware (OVMF vs SeaBIOS) and BMC (Redfish \
         over libvirt vs IPMI) differ too. Walks alternate ipxe, vmedia, vmedia, ipxe, each \
         on a new lab with a release conductor, mean of {} each",
        vmedia.len().min(ipxe.len())
    );
    let verified = "both sides: each node reached every target state, ended active, and its \
                    deployed OS printed its marker with the node's uuid and hostname; \
                    virtual media: the console shows OVMF booting the CD three times with \
                    the static address and no iPXE; ipxe: the console shows iPXE";
    let mut out = vec![];
    for (phase, label) in [
        (lab_walk::INSPECT, "inspection, virtual media"),
        (lab_walk::PROVIDE, "cleaning (provide), virtual media"),
        (lab_walk::DEPLOY, "deploy, virtual media"),
        (lab_walk::ACTIVE, "enroll -> active, virtual media"),
        (
            lab_walk::TOTAL,
            "enroll -> deployed OS marker, virtual media",
        ),
    ] {
        let (Some((vm, ve)), Some((im, ie))) =
            (lab_walk::mean(vmedia, phase), lab_walk::mean(ipxe, phase))
        else {
            anyhow::bail!("a walk has no {phase:?} phase");
        };
        out.push(
            Record::new(&format!("{label} (TCG)"), "s", vm, "lower")
                .baseline(base, im)
                .notes(format!("virtual media {ve} s, ipxe {ie} s; {how}"))
                .verified(verified),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_compare_the_means_and_need_every_phase() {
        let w = |x: f64| Walk {
            phases: [
                lab_walk::INSPECT,
                lab_walk::PROVIDE,
                lab_walk::DEPLOY,
                lab_walk::ACTIVE,
                lab_walk::TOTAL,
            ]
            .iter()
            .map(|p| (*p, x))
            .collect(),
        };
        let r = records(&[w(90.0), w(110.0)], &[w(50.0), w(50.0)]).unwrap();
        assert_eq!(r.len(), 5);
        let active = r
            .iter()
            .find(|r| r.metric.starts_with("enroll -> active"))
            .unwrap();
        assert_eq!((active.ferrite, active.baseline), (100.0, Some(50.0)));
        assert_eq!(active.ratio, Some(2.0));
        assert!(records(&[Walk::default()], &[w(1.0)]).is_err());
    }
}
