//! One simulated server: power, the boot device the BMC was told, and what runs after a
//! boot (nothing yet, the agent, or the deployed OS). Every power change starts a new boot
//! generation and cancels whatever the previous one was running.

use std::sync::{Arc, Mutex, MutexGuard};

use ferrite_ipmi::{BootDevice, BootOptions, PowerState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::agent::AgentBoot;
use crate::{Fleet, SimConfig};

/// What the machine is doing now.
#[derive(Clone)]
pub enum Running {
    Off,
    /// Powered on, firmware and boot loader (the configured boot time).
    Booting,
    /// The agent ramdisk booted from the network or virtual media.
    Agent(Arc<AgentBoot>),
    /// The deployed OS booted from disk (no agent).
    Os,
}

impl Running {
    pub fn name(&self) -> &'static str {
        match self {
            Running::Off => "off",
            Running::Booting => "booting",
            Running::Agent(_) => "agent",
            Running::Os => "os",
        }
    }
}

pub struct State {
    pub power: PowerState,
    pub boot: BootOptions,
    pub running: Running,
    /// Cancelled when this boot ends (power off, reset).
    pub boot_cancel: CancellationToken,
    /// Boots so far (the agent's version string names it).
    pub generation: u64,
    /// An image was written (the default boot order then finds a bootable disk).
    pub has_image: bool,
    /// The machine's own random stream (seeded from the fleet seed and its index).
    pub rng: StdRng,
    /// Image writes that finished, and agents that died.
    pub writes: u32,
    pub deaths: u32,
    /// The disk writes this much slower than normal (1.0: a normal disk).
    pub slowdown: f64,
}

pub struct Machine {
    pub index: usize,
    pub bmc_port: u16,
    pub macs: Vec<String>,
    state: Mutex<State>,
}

/// A locally administered MAC derived from the node index and NIC number.
pub fn mac(index: usize, nic: u8) -> String {
    let i = index as u32;
    format!(
        "02:fe:{:02x}:{:02x}:{:02x}:{:02x}",
        nic,
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

impl Machine {
    pub fn new(index: usize, bmc_port: u16, cfg: &SimConfig) -> Machine {
        let mut rng =
            StdRng::seed_from_u64(cfg.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let slowdown = if rng.random::<f64>() < cfg.slow_disk_probability {
            cfg.slow_disk_factor.max(1.0)
        } else {
            1.0
        };
        Machine {
            index,
            bmc_port,
            macs: vec![mac(index, 0), mac(index, 1)],
            state: Mutex::new(State {
                power: PowerState::Off,
                boot: BootOptions {
                    device: BootDevice::NoOverride,
                    persistent: false,
                    uefi: true,
                    valid: false,
                },
                running: Running::Off,
                boot_cancel: CancellationToken::new(),
                generation: 0,
                has_image: false,
                rng,
                writes: 0,
                deaths: 0,
                slowdown,
            }),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn power(&self) -> PowerState {
        self.state().power
    }

    /// The agent of the current boot, if one runs and is alive.
    pub fn agent(&self) -> Option<Arc<AgentBoot>> {
        match &self.state().running {
            Running::Agent(a) if a.alive() => Some(a.clone()),
            _ => None,
        }
    }

    pub fn set_boot(&self, opts: BootOptions) {
        self.state().boot = opts;
    }

    /// Powers on (a no-op when on) and starts a boot.
    pub fn power_on(self: &Arc<Self>, fleet: &Arc<Fleet>) {
        let mut s = self.state();
        if s.power == PowerState::On {
            return;
        }
        s.power = PowerState::On;
        self.start_boot(&mut s, fleet);
    }

    /// Off at once (hard or ACPI: the simulated OS obeys at once).
    pub fn power_off(&self) {
        let mut s = self.state();
        s.power = PowerState::Off;
        s.boot_cancel.cancel();
        s.running = Running::Off;
    }

    /// Reset or power cycle: a new boot when on (a cycle of an off machine powers it on,
    /// as the IPMI spec leaves to the BMC).
    pub fn reset(self: &Arc<Self>, fleet: &Arc<Fleet>) {
        let mut s = self.state();
        s.power = PowerState::On;
        self.start_boot(&mut s, fleet);
    }

    fn start_boot(self: &Arc<Self>, s: &mut State, fleet: &Arc<Fleet>) {
        s.boot_cancel.cancel();
        let cancel = fleet.stop.child_token();
        s.boot_cancel = cancel.clone();
        s.generation += 1;
        s.running = Running::Booting;
        // A one-time override is used by this boot and then forgotten (IPMI's "valid"
        // bit clears); otherwise the boot order: the disk once it has an image, else PXE.
        let device = if s.boot.valid && s.boot.device != BootDevice::NoOverride {
            let d = s.boot.device;
            if !s.boot.persistent {
                s.boot.valid = false;
            }
            d
        } else if s.has_image {
            BootDevice::Disk
        } else {
            BootDevice::Pxe
        };
        let generation = s.generation;
        let machine = self.clone();
        let fleet = fleet.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(fleet.cfg.boot_time) => {
                    machine.booted(&fleet, generation, device, cancel);
                }
            }
        });
    }

    fn booted(
        self: &Arc<Self>,
        fleet: &Arc<Fleet>,
        generation: u64,
        device: BootDevice,
        cancel: CancellationToken,
    ) {
        let mut s = self.state();
        if s.generation != generation || cancel.is_cancelled() {
            return;
        }
        match device {
            BootDevice::Pxe | BootDevice::Cdrom => {
                let agent = Arc::new(AgentBoot::new(generation, cancel));
                s.running = Running::Agent(agent.clone());
                drop(s);
                tokio::spawn(crate::agent::run(fleet.clone(), self.clone(), agent));
            }
            BootDevice::Disk if s.has_image => s.running = Running::Os,
            // Nothing bootable (no image, setup, diagnostics): the machine sits there.
            _ => s.running = Running::Booting,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_unique_and_locally_administered() {
        assert_eq!(mac(0, 0), "02:fe:00:00:00:00");
        assert_eq!(mac(70_000, 1), "02:fe:01:01:11:70");
        assert_ne!(mac(1, 0), mac(256, 0));
    }

    #[test]
    fn the_same_seed_gives_the_same_slow_disks() {
        let cfg = SimConfig {
            slow_disk_probability: 0.5,
            seed: 42,
            ..SimConfig::default()
        };
        let a: Vec<f64> = (0..64)
            .map(|i| Machine::new(i, 0, &cfg).state().slowdown)
            .collect();
        let b: Vec<f64> = (0..64)
            .map(|i| Machine::new(i, 0, &cfg).state().slowdown)
            .collect();
        assert_eq!(a, b);
        let slow = a.iter().filter(|s| **s > 1.0).count();
        assert!((10..54).contains(&slow), "{slow} of 64 slow at p=0.5");
    }
}
