//! Inventory parity with the real ironic-python-agent: IPA from PyPI (`target/ipa-venv`,
//! made by `cargo xtask deps`) and ferrite-agent inventory this same machine, and every
//! field IPA reports must be in ours with the same JSON type and value, unless it is one of
//! the deliberate differences in [`ALLOWED`] (each with its reason; docs/ironic.md lists
//! them too).
//!
//! Compared: the inspection data IPA sends, i.e. `inventory` (GenericHardwareManager's
//! `list_hardware_info`), `root_disk`, and the `pci-devices` and `numa-topology` collectors'
//! `pci_devices` and `numa_topology`, against what the agent library puts in its inspection
//! post. IPA runs as a subprocess (`inventory_ipa_parity.py`), read-only: its hardware
//! managers are not initialized and every command it runs passes an allow-list of
//! read-only tools (lshw, lscpu, lsblk, biosdevname, `udevadm settle|info`, `ipmitool lan
//! print`); a refused command fails the test.
//!
//! Skips, with a message, only when `target/ipa-venv` is missing and `FERRITE_REQUIRE_IPA`
//! is unset; `cargo xtask test` sets it. Needs root for what IPA and the agent read (DMI,
//! lshw), as CI runs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrite_proto::lookup::InspectionData;
use serde_json::Value;

const IPA_SCRIPT: &str = "inventory_ipa_parity.py";
/// IPA takes about a second here; lshw can take tens of seconds on a large server.
const IPA_DEADLINE: Duration = Duration::from_secs(180);

/// When a difference from IPA is accepted.
#[derive(Debug, Clone, Copy, PartialEq)]
enum When {
    /// IPA sends `null` or `""` and ours a value.
    IpaUnknown,
}

/// A deliberate difference: a field path (list items written `[]`), when it applies, why.
struct Allowed {
    path: &'static str,
    when: When,
    reason: &'static str,
}

const ALLOWED: &[Allowed] = &[
    Allowed {
        path: "inventory.cpu.frequency",
        when: When::IpaUnknown,
        reason: "IPA takes lscpu's \"CPU max MHz\", else \"CPU MHz\"; lscpu of util-linux \
                 2.38 and later prints neither on a machine without cpufreq (most VMs), so \
                 IPA sends \"\". Ours falls back to /proc/cpuinfo's \"cpu MHz\", which is \
                 what lscpu up to 2.37 printed there",
    },
    Allowed {
        path: "inventory.disks[].serial",
        when: When::IpaUnknown,
        reason: "IPA reads serials from the udev database (pyudev, lsblk's SERIAL); without \
                 udevd (this host, Ferrite's ramdisk) it sends null. Ours reads udev first \
                 and then sysfs (`serial`, `device/serial`, VPD page 0x80)",
    },
    Allowed {
        path: "root_disk.serial",
        when: When::IpaUnknown,
        reason: "the root disk is one of `inventory.disks`: as inventory.disks[].serial",
    },
    Allowed {
        path: "inventory.disks[].tran",
        when: When::IpaUnknown,
        reason: "IPA takes lsblk's TRAN, which is empty for virtio disks without the udev \
                 database; ours names the transport from the sysfs path (\"virtio\")",
    },
    Allowed {
        path: "root_disk.tran",
        when: When::IpaUnknown,
        reason: "the root disk is one of `inventory.disks`: as inventory.disks[].tran",
    },
];

/// The key that identifies an item of the list at `path` in both reports (list order is
/// directory order in IPA); `None` for lists compared as they are.
fn list_key(path: &str) -> Option<&'static [&'static str]> {
    Some(match path {
        "inventory.interfaces" | "numa_topology.nics" => &["name"],
        "inventory.disks" => &["name"],
        "pci_devices" => &["bus"],
        "numa_topology.ram" => &["numa_node"],
        "numa_topology.cpus" => &["numa_node", "cpu"],
        _ => return None,
    })
}

/// Lists whose order means nothing (directory order in IPA): compared sorted.
const UNORDERED: &[&str] = &["numa_topology.cpus[].thread_siblings"];

#[derive(Debug)]
struct Finding {
    /// With list items named, e.g. `inventory.disks[/dev/vda].serial`.
    at: String,
    /// With `[]` for list items, as in [`ALLOWED`].
    path: String,
    ipa: Value,
    ours: Option<Value>,
}

#[derive(Default)]
struct Report {
    same: Vec<String>,
    differ: Vec<Finding>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn item_name(item: &Value, keys: &[&str]) -> String {
    keys.iter()
        .map(|k| match &item[*k] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn compare(at: &str, path: &str, ipa: &Value, ours: Option<&Value>, report: &mut Report) {
    let differ = |report: &mut Report| {
        report.differ.push(Finding {
            at: at.to_string(),
            path: path.to_string(),
            ipa: ipa.clone(),
            ours: ours.cloned(),
        })
    };
    let Some(ours) = ours else {
        return differ(report);
    };
    match (ipa, ours) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let join = |p: &str| {
                    if p.is_empty() {
                        k.clone()
                    } else {
                        format!("{p}.{k}")
                    }
                };
                compare(&join(at), &join(path), v, b.get(k), report);
            }
        }
        (Value::Array(a), Value::Array(b)) => match list_key(path) {
            Some(keys) => {
                if a.is_empty() && b.is_empty() {
                    report.same.push(format!("{at} (both empty)"));
                }
                let theirs: BTreeMap<String, &Value> =
                    b.iter().map(|i| (item_name(i, keys), i)).collect();
                for item in a {
                    let name = item_name(item, keys);
                    compare(
                        &format!("{at}[{name}]"),
                        &format!("{path}[]"),
                        item,
                        theirs.get(&name).copied(),
                        report,
                    );
                }
                let mine: Vec<String> = a.iter().map(|i| item_name(i, keys)).collect();
                for (name, item) in theirs {
                    if !mine.contains(&name) {
                        report.differ.push(Finding {
                            at: format!("{at}[{name}]"),
                            path: format!("{path}[]"),
                            ipa: Value::Null,
                            ours: Some(item.clone()),
                        });
                    }
                }
            }
            None => {
                let sorted = |l: &[Value]| {
                    let mut l: Vec<String> = l.iter().map(Value::to_string).collect();
                    l.sort();
                    l
                };
                let same = if UNORDERED.contains(&path) {
                    sorted(a) == sorted(b)
                } else {
                    a == b
                };
                if same {
                    report.same.push(at.to_string());
                } else {
                    differ(report);
                }
            }
        },
        (a, b) if a == b => report.same.push(at.to_string()),
        _ => differ(report),
    }
}

fn allowed(f: &Finding) -> Option<&'static Allowed> {
    ALLOWED.iter().find(|a| {
        a.path == f.path
            && match a.when {
                When::IpaUnknown => {
                    let unknown = |v: &Value| v.is_null() || v.as_str() == Some("");
                    unknown(&f.ipa) && f.ours.as_ref().is_some_and(|o| !unknown(o))
                }
            }
    })
}

/// Kills and reaps the IPA process if the test fails while it runs.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// IPA's inspection data for this machine, from the script's JSON.
fn run_ipa(python: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(IPA_SCRIPT);
    let child = Command::new(python)
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} {}: {e}", python.display(), script.display()));
    let mut child = Reaped(child);
    // Read both pipes on threads so a chatty IPA cannot block on a full pipe.
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = pipe(child.0.stdout.take().map(|s| Box::new(s) as _));
    let stderr = pipe(child.0.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + IPA_DEADLINE;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("waiting for IPA") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "IPA's list_hardware_info did not finish within {IPA_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert!(
        status.success(),
        "IPA's list_hardware_info failed ({status}); it needs lshw, lscpu, lsblk and udevadm \
         (`cargo xtask deps` installs them):\n{stderr}"
    );
    serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "IPA's output is not JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&stdout)
        )
    })
}

/// What ferrite-agent posts to the inspection callback for this machine, without the
/// agent-only fields.
fn ours() -> Value {
    let root = Path::new("/");
    let inventory = ferrite_agent::inventory::collect(root).expect("live inventory");
    let data = InspectionData {
        root_disk: ferrite_agent::inventory::root_disk(root, &inventory),
        extras: ferrite_agent::inventory::inspection_extras(root).expect("PCI and NUMA"),
        inventory,
        boot_interface: None,
        agent_token: None,
        ferrite: Default::default(),
    };
    serde_json::to_value(data).unwrap()
}

#[test]
fn every_field_ipa_reports_matches_or_is_an_allowed_difference() {
    let python = ferrite_tests::target_dir().join("ipa-venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("FERRITE_REQUIRE_IPA").is_none(),
            "FERRITE_REQUIRE_IPA is set but {} is missing: run `cargo xtask deps` (it makes \
             target/ipa-venv with ironic-python-agent from PyPI)",
            python.display()
        );
        eprintln!(
            "SKIP inventory_ipa_parity: {} is missing (run `cargo xtask deps`; set \
             FERRITE_REQUIRE_IPA=1 to make this a failure)",
            python.display()
        );
        return;
    }
    let t0 = Instant::now();
    let mut ipa = run_ipa(&python);
    let ipa_time = t0.elapsed();
    let ours = ours();
    let obj = ipa.as_object_mut().expect("IPA's answer is an object");
    let blocked = obj.remove("blocked").unwrap_or_default();
    let commands = obj.remove("commands").unwrap_or_default();
    let failures = obj.remove("failures").unwrap_or_default();
    assert_eq!(
        blocked,
        Value::Array(vec![]),
        "IPA tried commands that are not on the read-only list (the comparison would be \
         off; add them to inventory_ipa_parity.py's allow-list only if they only read)"
    );
    assert!(failures.is_null(), "IPA's collectors failed: {failures}");
    // The comparison is only worth something if IPA saw hardware.
    let inv = &ipa["inventory"];
    for list in ["interfaces", "disks"] {
        assert!(
            inv[list].as_array().is_some_and(|l| !l.is_empty()),
            "IPA found no {list} on this machine: {inv}"
        );
    }
    assert!(inv["cpu"]["count"].as_u64().is_some_and(|n| n > 0));
    assert!(ipa["pci_devices"].as_array().is_some_and(|l| !l.is_empty()));

    // What the conductor parses from an inspection post, IPA's included.
    let parsed: InspectionData = serde_json::from_value(ipa.clone())
        .unwrap_or_else(|e| panic!("IPA's inspection data does not parse as ours: {e}"));
    assert_eq!(
        parsed.extras.pci_devices.map(|l| l.len()),
        ipa["pci_devices"].as_array().map(|l| l.len())
    );
    assert_eq!(
        parsed.extras.numa_topology.is_some(),
        ipa.get("numa_topology").is_some()
    );

    let mut report = Report::default();
    compare("", "", &ipa, Some(&ours), &mut report);
    println!(
        "IPA ran in {:.2} s: {}",
        ipa_time.as_secs_f64(),
        commands
            .as_array()
            .map(|c| c
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_default()
    );
    println!("{} fields the same as IPA's", report.same.len());
    for at in &report.same {
        println!("  same      {at}");
    }
    let mut unexplained = Vec::new();
    for f in &report.differ {
        let ours = f
            .ours
            .as_ref()
            .map_or("(missing)".into(), |v| v.to_string());
        match allowed(f) {
            Some(a) => println!(
                "  allowed   {}: IPA {} ours {ours}: {}",
                f.at, f.ipa, a.reason
            ),
            None => {
                println!("  DIFFERS   {}: IPA {} ours {ours}", f.at, f.ipa);
                unexplained.push(format!(
                    "{} ({} vs {}): IPA {} ours {ours}",
                    f.at,
                    kind(&f.ipa),
                    f.ours.as_ref().map_or("missing", kind),
                    f.ipa
                ));
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "fields where ferrite-agent differs from IPA without an allowed reason:\n{}",
        unexplained.join("\n")
    );
    // Sanity: the walk reached the leaves that matter.
    for leaf in [
        "inventory.cpu.count",
        "inventory.memory.total",
        "inventory.system_vendor.firmware.vendor",
        "inventory.boot.current_boot_mode",
    ] {
        assert!(
            report.same.iter().any(|s| s == leaf),
            "{leaf} was not compared equal"
        );
    }
}
