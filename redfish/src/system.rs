//! Operations on one ComputerSystem: finding it, power (state, reset, changes that wait
//! for the new state), the boot source override, out-of-band inventory, virtual media on
//! the CD device and task monitors of asynchronous operations.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::client::{Answer, Client};
use crate::error::RedfishError;
use crate::model::{
    BootMode, BootOverrideEnabled, BootPatch, BootSource, Collection, ComputerSystem, Drive,
    EthernetInterface, InsertMedia, Manager, PowerState, Processor, ResetType, SimpleStorage,
    Storage, Task, VirtualMedia,
};

type Result<T> = std::result::Result<T, RedfishError>;

/// A system found on the BMC: its resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemRef {
    pub path: String,
}

/// What a power request should achieve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    On,
    /// `ForceOff`.
    Off,
    /// `GracefulShutdown`, then wait for off.
    SoftOff,
    /// `ForceRestart` when on, `On` when off.
    Reboot,
    /// `GracefulRestart` when on, `On` when off.
    SoftReboot,
}

/// How long to wait for a power change to show, and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerWait {
    pub timeout: Duration,
    pub interval: Duration,
}

impl Default for PowerWait {
    /// 60 s (Ironic's `power_state_change_timeout`), checked every 500 ms.
    fn default() -> Self {
        PowerWait {
            timeout: Duration::from_secs(60),
            interval: Duration::from_millis(500),
        }
    }
}

/// A boot source override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootOverride {
    pub target: BootSource,
    /// `Continuous` rather than `Once`.
    pub persistent: bool,
    /// Also set `BootSourceOverrideMode`; `None` leaves it as it is.
    pub mode: Option<BootMode>,
}

/// A NIC of the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub id: String,
    /// Lower case, colon separated.
    pub mac: String,
}

/// A disk of the system (Storage drives or SimpleStorage devices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub size_bytes: u64,
}

/// What out-of-band inspection learns from the BMC.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub system_id: String,
    pub uuid: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub power_state: Option<PowerState>,
    pub boot_mode: Option<BootMode>,
    /// Logical CPUs (`ProcessorSummary.Count`, else the processors' threads).
    pub cpus: Option<u64>,
    /// As Ironic names architectures: `x86_64`, `aarch64`, …
    pub cpu_arch: Option<String>,
    pub memory_mb: Option<u64>,
    pub nics: Vec<Nic>,
    pub disks: Vec<Disk>,
    /// `Model firmware` of the managing BMC, when it says.
    pub bmc: Option<String>,
}

/// Redfish `ProcessorArchitecture` / `InstructionSet` → Ironic's `cpu_arch`.
const CPU_ARCH: &[(&str, Option<&str>, &str)] = &[
    ("x86", Some("x86"), "i686"),
    ("x86", None, "x86_64"),
    ("ARM", Some("ARM-A32"), "arm"),
    ("ARM", None, "aarch64"),
    ("Power", None, "ppc64le"),
    ("MIPS", None, "mips64"),
    ("IA-64", None, "ia64"),
];

fn cpu_arch(p: &Processor) -> Option<String> {
    let arch = p.processor_architecture.as_deref()?;
    CPU_ARCH
        .iter()
        .find(|(a, set, _)| {
            a.eq_ignore_ascii_case(arch)
                && set.is_none_or(|s| p.instruction_set.as_deref() == Some(s))
        })
        .map(|(_, _, name)| name.to_string())
}

fn answer_task(a: &Answer) -> Option<String> {
    (a.status.as_u16() == 202).then(|| a.location()).flatten()
}

impl Client {
    /// The paths of the systems the BMC lists.
    pub async fn systems(&self) -> Result<Vec<String>> {
        let path = self
            .root()
            .await?
            .systems
            .as_ref()
            .map(|l| l.id.clone())
            .unwrap_or_else(|| "/redfish/v1/Systems".into());
        let c: Collection = self.get(&path, "Systems collection").await?;
        Ok(c.members.into_iter().map(|l| l.id).collect())
    }

    /// The system `id` names (an id or a path, as Ironic's `redfish_system_id`), or the
    /// only one when `id` is `None`.
    pub async fn find_system(&self, id: Option<&str>) -> Result<SystemRef> {
        let Some(id) = id.filter(|s| !s.trim().is_empty()) else {
            let all = self.systems().await?;
            return match all.as_slice() {
                [one] => Ok(SystemRef { path: one.clone() }),
                [] => Err(RedfishError::UnknownSystem {
                    id: "(any)".into(),
                    available: all,
                }),
                _ => Err(RedfishError::AmbiguousSystem { available: all }),
            };
        };
        let path = if id.starts_with('/') {
            id.to_string()
        } else {
            let base = self
                .root()
                .await?
                .systems
                .as_ref()
                .map(|l| l.id.clone())
                .unwrap_or_else(|| "/redfish/v1/Systems".into());
            format!("{}/{id}", base.trim_end_matches('/'))
        };
        match self.get::<ComputerSystem>(&path, "ComputerSystem").await {
            Ok(s) => Ok(SystemRef {
                path: s.odata_id.unwrap_or(path),
            }),
            Err(RedfishError::NotFound { .. }) => Err(RedfishError::UnknownSystem {
                id: id.into(),
                available: self.systems().await.unwrap_or_default(),
            }),
            Err(e) => Err(e),
        }
    }

    pub async fn system(&self, s: &SystemRef) -> Result<ComputerSystem> {
        self.get(&s.path, "ComputerSystem").await
    }

    pub async fn power_state(&self, s: &SystemRef) -> Result<PowerState> {
        Ok(self
            .system(s)
            .await?
            .power_state
            .unwrap_or(PowerState::Unknown))
    }

    /// `#ComputerSystem.Reset` with `reset` (refused up front when the BMC lists the
    /// reset types it allows and this is not one); waits for a task it starts.
    pub async fn reset(&self, s: &SystemRef, reset: ResetType) -> Result<()> {
        let sys = self.system(s).await?;
        let action = sys.actions.reset.unwrap_or_default();
        let allowed = &action.allowed_reset_types;
        if !allowed.is_empty() && !allowed.iter().any(|v| v.as_str() == Some(reset.as_str())) {
            return Err(RedfishError::Unsupported {
                what: format!(
                    "the reset type {} on {} (it allows {})",
                    reset.as_str(),
                    s.path,
                    allowed
                        .iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let target = if action.target.is_empty() {
            format!("{}/Actions/ComputerSystem.Reset", s.path)
        } else {
            action.target
        };
        let a = self
            .post(&target, &json!({"ResetType": reset.as_str()}))
            .await?;
        if let Some(monitor) = answer_task(&a) {
            self.wait_task(&monitor, Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// Polls until the system reports `wanted` or `wait.timeout` passes.
    pub async fn wait_power(
        &self,
        s: &SystemRef,
        wanted: PowerState,
        wait: PowerWait,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            let state = self.power_state(s).await?;
            if state == wanted {
                return Ok(());
            }
            if start.elapsed() >= wait.timeout {
                return Err(RedfishError::PowerNotSettled {
                    wanted: wanted.to_string(),
                    state: state.to_string(),
                    waited: start.elapsed(),
                });
            }
            let left = wait.timeout.saturating_sub(start.elapsed());
            tokio::time::sleep(wait.interval.min(left)).await;
        }
    }

    /// Performs `action` and returns once the BMC reports the resulting state.
    pub async fn set_power(
        &self,
        s: &SystemRef,
        action: PowerAction,
        wait: PowerWait,
    ) -> Result<PowerState> {
        let now = self.power_state(s).await?;
        let (reset, wanted) = match action {
            PowerAction::On => (ResetType::On, PowerState::On),
            PowerAction::Off => (ResetType::ForceOff, PowerState::Off),
            PowerAction::SoftOff => (ResetType::GracefulShutdown, PowerState::Off),
            PowerAction::Reboot if now == PowerState::Off => (ResetType::On, PowerState::On),
            PowerAction::Reboot => (ResetType::ForceRestart, PowerState::On),
            PowerAction::SoftReboot if now == PowerState::Off => (ResetType::On, PowerState::On),
            PowerAction::SoftReboot => (ResetType::GracefulRestart, PowerState::On),
        };
        let restart = matches!(reset, ResetType::ForceRestart | ResetType::GracefulRestart);
        if now != wanted || restart {
            self.reset(s, reset).await?;
            self.wait_power(s, wanted, wait).await?;
        }
        Ok(wanted)
    }

    /// Sets the boot source override (and the boot mode, when given).
    pub async fn set_boot(&self, s: &SystemRef, o: BootOverride) -> Result<()> {
        let quirks = self.quirks().await?;
        let etag = if quirks.patch_needs_etag {
            self.system(s).await?.etag
        } else {
            None
        };
        let enabled = Some(if o.persistent {
            BootOverrideEnabled::Continuous
        } else {
            BootOverrideEnabled::Once
        });
        let mut patches = Vec::new();
        if quirks.boot_mode_separate_patch && o.mode.is_some() {
            patches.push(BootPatch {
                boot_source_override_mode: o.mode,
                boot_source_override_enabled: enabled,
                ..Default::default()
            });
            patches.push(BootPatch {
                boot_source_override_target: Some(o.target),
                boot_source_override_enabled: enabled,
                ..Default::default()
            });
        } else {
            patches.push(BootPatch {
                boot_source_override_target: Some(o.target),
                boot_source_override_enabled: enabled,
                boot_source_override_mode: o.mode,
            });
        }
        for (i, p) in patches.iter().enumerate() {
            let etag = if i > 0 && quirks.patch_needs_etag {
                self.system(s).await?.etag
            } else {
                etag.clone()
            };
            let a = self
                .patch(&s.path, &json!({"Boot": p}), etag.as_deref())
                .await?;
            if let Some(monitor) = answer_task(&a) {
                self.wait_task(&monitor, Duration::from_secs(60)).await?;
            }
        }
        Ok(())
    }

    async fn members<T: serde::de::DeserializeOwned>(
        &self,
        collection: &str,
        what: &'static str,
    ) -> Result<Vec<T>> {
        let c: Collection = self.get(collection, "collection").await?;
        let mut out = Vec::with_capacity(c.members.len());
        for m in c.members {
            out.push(self.get(&m.id, what).await?);
        }
        Ok(out)
    }

    /// CPUs, memory, NICs with MACs, disks and the BMC, read from the BMC alone.
    pub async fn inventory(&self, s: &SystemRef) -> Result<Inventory> {
        let sys = self.system(s).await?;
        let processors: Vec<Processor> = match &sys.processors {
            Some(l) => self.members(&l.id, "Processor").await?,
            None => vec![],
        };
        let cpus = sys
            .processor_summary
            .as_ref()
            .and_then(|p| p.count)
            .or_else(|| {
                let t: u64 = processors.iter().filter_map(|p| p.total_threads).sum();
                (t > 0).then_some(t)
            });
        let cpu_arch = processors
            .iter()
            .filter(|p| p.processor_type.as_deref().is_none_or(|t| t == "CPU"))
            .find_map(cpu_arch);
        let memory_mb = sys
            .memory_summary
            .as_ref()
            .and_then(|m| m.total_system_memory_gib)
            .map(|gib| (gib * 1024.0).round() as u64);
        let mut nics = Vec::new();
        if let Some(l) = &sys.ethernet_interfaces {
            let ifaces: Vec<EthernetInterface> = self.members(&l.id, "EthernetInterface").await?;
            for i in ifaces {
                let mac = i
                    .mac_address
                    .or(i.permanent_mac_address)
                    .filter(|m| !m.is_empty());
                if let Some(mac) = mac {
                    nics.push(Nic {
                        id: i.id.unwrap_or_default(),
                        mac: mac.to_ascii_lowercase().replace('-', ":"),
                    });
                }
            }
        }
        let mut disks = Vec::new();
        if let Some(l) = &sys.storage {
            // A BMC without storage data answers 404 or an error: no disks, not a failure.
            let storages: Vec<Storage> = match self.members(&l.id, "Storage").await {
                Ok(s) => s,
                Err(RedfishError::NotFound { .. }) | Err(RedfishError::Rejected { .. }) => {
                    vec![]
                }
                Err(RedfishError::ServerError { .. }) => vec![],
                Err(e) => return Err(e),
            };
            for st in storages {
                for d in st.drives {
                    let drive: Drive = self.get(&d.id, "Drive").await?;
                    if let Some(size) = drive.capacity_bytes.filter(|s| *s > 0) {
                        disks.push(Disk {
                            name: drive.name.or(drive.id).unwrap_or_default(),
                            size_bytes: size,
                        });
                    }
                }
            }
        }
        if disks.is_empty() {
            if let Some(l) = &sys.simple_storage {
                let ss: Vec<SimpleStorage> = self.members(&l.id, "SimpleStorage").await?;
                for s in ss {
                    for d in s.devices {
                        if let Some(size) = d.capacity_bytes.filter(|s| *s > 0) {
                            disks.push(Disk {
                                name: d.name.unwrap_or_default(),
                                size_bytes: size,
                            });
                        }
                    }
                }
            }
        }
        let bmc = match sys.links.managed_by.first() {
            Some(m) => match self.get::<Manager>(&m.id, "Manager").await {
                Ok(m) => {
                    let parts: Vec<String> = [m.model, m.firmware_version]
                        .into_iter()
                        .flatten()
                        .collect();
                    (!parts.is_empty()).then(|| parts.join(" "))
                }
                Err(_) => None,
            },
            None => None,
        };
        Ok(Inventory {
            system_id: sys.id,
            uuid: sys.uuid,
            manufacturer: sys.manufacturer,
            model: sys.model,
            power_state: sys.power_state,
            boot_mode: sys.boot.boot_source_override_mode,
            cpus,
            cpu_arch,
            memory_mb,
            nics,
            disks,
            bmc,
        })
    }

    /// The virtual media devices of the system: its own, or its managers' (the order the
    /// quirks say).
    pub async fn virtual_media(&self, s: &SystemRef) -> Result<Vec<VirtualMedia>> {
        let sys = self.system(s).await?;
        let mut places: Vec<String> = Vec::new();
        let own = sys.virtual_media.map(|l| l.id);
        let mut managers = Vec::new();
        for m in &sys.links.managed_by {
            if let Ok(mgr) = self.get::<Manager>(&m.id, "Manager").await {
                managers.extend(mgr.virtual_media.map(|l| l.id));
            }
        }
        if self.quirks().await?.vmedia_on_manager_first {
            places.extend(managers);
            places.extend(own);
        } else {
            places.extend(own);
            places.extend(managers);
        }
        places.dedup();
        for p in places {
            match self.members::<VirtualMedia>(&p, "VirtualMedia").await {
                Ok(v) if !v.is_empty() => return Ok(v),
                Ok(_) | Err(RedfishError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(vec![])
    }

    async fn cd(&self, s: &SystemRef) -> Result<VirtualMedia> {
        self.virtual_media(s)
            .await?
            .into_iter()
            .find(VirtualMedia::is_cd)
            .ok_or_else(|| RedfishError::Unsupported {
                what: format!("a virtual media CD device for {}", s.path),
            })
    }

    /// Inserts the ISO at `image_url` into the virtual CD (ejecting what is in it first).
    pub async fn insert_media(&self, s: &SystemRef, image_url: &str) -> Result<()> {
        let cd = self.cd(s).await?;
        if cd.has_image() {
            self.eject(&cd).await?;
        }
        let target = cd
            .actions
            .insert
            .map(|a| a.target)
            .or_else(|| {
                cd.odata_id
                    .as_ref()
                    .map(|id| format!("{id}/Actions/VirtualMedia.InsertMedia"))
            })
            .ok_or_else(|| RedfishError::Unsupported {
                what: "the VirtualMedia.InsertMedia action".into(),
            })?;
        let body: Value = if self.quirks().await?.insert_media_image_only {
            json!({"Image": image_url})
        } else {
            serde_json::to_value(InsertMedia {
                image: image_url.into(),
                inserted: true,
                write_protected: true,
            })
            .expect("plain struct serializes")
        };
        let a = self.post(&target, &body).await?;
        if let Some(monitor) = answer_task(&a) {
            self.wait_task(&monitor, Duration::from_secs(300)).await?;
        }
        Ok(())
    }

    /// Ejects the virtual CD (nothing to do when it is empty).
    pub async fn eject_media(&self, s: &SystemRef) -> Result<()> {
        let cd = self.cd(s).await?;
        if cd.has_image() {
            self.eject(&cd).await?;
        }
        Ok(())
    }

    /// The virtual CD device, as the BMC reports it now.
    pub async fn cd_media(&self, s: &SystemRef) -> Result<VirtualMedia> {
        self.cd(s).await
    }

    async fn eject(&self, cd: &VirtualMedia) -> Result<()> {
        let target = cd
            .actions
            .eject
            .as_ref()
            .map(|a| a.target.clone())
            .or_else(|| {
                cd.odata_id
                    .as_ref()
                    .map(|id| format!("{id}/Actions/VirtualMedia.EjectMedia"))
            })
            .ok_or_else(|| RedfishError::Unsupported {
                what: "the VirtualMedia.EjectMedia action".into(),
            })?;
        let a = self.post(&target, &json!({})).await?;
        if let Some(monitor) = answer_task(&a) {
            self.wait_task(&monitor, Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// Polls a task monitor (or Task resource) until the task is over: a monitor answers
    /// 202 while the task runs; then the operation's own answer, or the Task with its
    /// final `TaskState`.
    pub async fn wait_task(&self, monitor: &str, timeout: Duration) -> Result<Task> {
        let start = Instant::now();
        let mut interval = Duration::from_millis(200);
        loop {
            let a = self
                .request(reqwest::Method::GET, monitor, None, &Default::default())
                .await?;
            let task: Option<Task> = serde_json::from_slice(&a.body).ok();
            let state = task.as_ref().and_then(|t| t.task_state);
            let running = a.status.as_u16() == 202 || state.is_some_and(|s| s.outcome().is_none());
            if !running {
                let task = task.unwrap_or_default();
                return match state.and_then(|s| s.outcome()) {
                    Some(false) => Err(RedfishError::TaskFailed {
                        monitor: monitor.into(),
                        state: format!("{:?}", state.expect("outcome implies a state")),
                        messages: task
                            .messages
                            .iter()
                            .filter_map(|m| m.message.clone())
                            .collect(),
                    }),
                    _ => Ok(task),
                };
            }
            if start.elapsed() >= timeout {
                return Err(RedfishError::TaskTimeout {
                    monitor: monitor.into(),
                    waited: start.elapsed(),
                });
            }
            let retry_after = a
                .headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .map(Duration::from_secs);
            let left = timeout.saturating_sub(start.elapsed());
            tokio::time::sleep(retry_after.unwrap_or(interval).min(left)).await;
            interval = (interval * 2).min(Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_map_to_ironic_names() {
        let p = |a: &str, i: Option<&str>| Processor {
            processor_architecture: Some(a.into()),
            instruction_set: i.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(
            cpu_arch(&p("x86", Some("x86-64"))).as_deref(),
            Some("x86_64")
        );
        assert_eq!(cpu_arch(&p("x86", None)).as_deref(), Some("x86_64"));
        assert_eq!(cpu_arch(&p("x86", Some("x86"))).as_deref(), Some("i686"));
        assert_eq!(
            cpu_arch(&p("ARM", Some("ARM-A64"))).as_deref(),
            Some("aarch64")
        );
        assert_eq!(cpu_arch(&p("Power", None)).as_deref(), Some("ppc64le"));
        assert_eq!(cpu_arch(&p("OEM", None)), None);
    }
}
