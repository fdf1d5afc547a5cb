//! CPU: model, logical and socket counts, frequency, flags and architecture.
//!
//! `/proc/cpuinfo` gives model, flags and the current MHz; sysfs gives the present CPU list,
//! the package (socket) of each CPU and the maximum frequency, which is what `lscpu` reports
//! as "CPU max MHz" and what IPA prefers.

use std::collections::BTreeSet;

use ferrite_proto::inventory::Cpu;

use super::Root;

/// What the inventory needs from `/proc/cpuinfo`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CpuInfo {
    pub model_name: Option<String>,
    /// The first CPU's "cpu MHz", as printed.
    pub mhz: Option<String>,
    pub flags: Vec<String>,
    /// Number of `processor` entries.
    pub processors: u32,
    /// Distinct "physical id" values (x86 only).
    pub physical_ids: BTreeSet<String>,
}

/// Parses `/proc/cpuinfo` (x86 `flags`/`model name`, arm64 `Features`, others best effort).
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        match key.as_str() {
            "processor" if value.parse::<u32>().is_ok() => info.processors += 1,
            "model name" | "cpu model" | "cpu" | "uarch"
                if info.model_name.is_none() && !value.is_empty() =>
            {
                info.model_name = Some(value.to_string());
            }
            "cpu mhz" | "clock" if info.mhz.is_none() => {
                let v = value.trim_end_matches("MHz");
                if !v.is_empty() {
                    info.mhz = Some(v.to_string());
                }
            }
            "flags" | "features" if info.flags.is_empty() => {
                info.flags = value.split_whitespace().map(str::to_string).collect();
            }
            "physical id" => {
                info.physical_ids.insert(value.to_string());
            }
            _ => {}
        }
    }
    info
}

/// Number of CPUs in a kernel CPU list such as `0-3,8,10-11`; `None` when malformed.
pub fn parse_cpu_list(list: &str) -> Option<u32> {
    let list = list.trim();
    if list.is_empty() {
        return Some(0);
    }
    let mut count = 0u32;
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a {
                    return None;
                }
                count = count.checked_add((b - a).checked_add(1)?)?;
            }
            None => {
                part.trim().parse::<u32>().ok()?;
                count += 1;
            }
        }
    }
    Some(count)
}

pub(crate) fn collect(root: &Root) -> Cpu {
    let info = root
        .read("/proc/cpuinfo")
        .map(|t| parse_cpuinfo(&t))
        .unwrap_or_default();
    // lscpu's "CPU(s)", IPA's count: the present CPUs, offline ones (nosmt, hot-removed)
    // included.
    let count = ["present", "online"]
        .iter()
        .find_map(|list| {
            root.read(&format!("/sys/devices/system/cpu/{list}"))
                .and_then(|l| parse_cpu_list(&l))
                .filter(|&n| n > 0)
        })
        .unwrap_or(info.processors);
    Cpu {
        model_name: info.model_name.clone().unwrap_or_default(),
        frequency: max_mhz(root).or(info.mhz.clone()).unwrap_or_default(),
        count,
        architecture: architecture(root),
        flags: info.flags.clone(),
        socket_count: socket_count(root, &info),
    }
}

/// "CPU max MHz" as lscpu prints it, from cpufreq's `cpuinfo_max_freq` (kHz).
fn max_mhz(root: &Root) -> Option<String> {
    let khz: u64 = root
        .read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")?
        .parse()
        .ok()?;
    (khz > 0).then(|| format!("{:.4}", khz as f64 / 1000.0))
}

/// Distinct `physical_package_id`s across CPUs in sysfs; cpuinfo's "physical id" otherwise.
fn socket_count(root: &Root, info: &CpuInfo) -> Option<u32> {
    let mut packages = BTreeSet::new();
    for name in root.list("/sys/devices/system/cpu") {
        let Some(n) = name.strip_prefix("cpu") else {
            continue;
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let id = root.read(&format!(
            "/sys/devices/system/cpu/{name}/topology/physical_package_id"
        ));
        // -1 means "no package information" (some VMs and arm64 firmware).
        if let Some(id) = id.filter(|id| id != "-1") {
            packages.insert(id);
        }
    }
    if !packages.is_empty() {
        return u32::try_from(packages.len()).ok();
    }
    if !info.physical_ids.is_empty() {
        return u32::try_from(info.physical_ids.len()).ok();
    }
    None
}

/// `uname -m`: `/proc/sys/kernel/arch` (Linux ≥ 6.1) or, on the live machine, uname(2).
fn architecture(root: &Root) -> String {
    if let Some(arch) = root.read("/proc/sys/kernel/arch") {
        return arch;
    }
    if root.is_live() {
        if let Ok(uts) = nix::sys::utsname::uname() {
            return uts.machine().to_string_lossy().into_owned();
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) \
        Gold 6230 CPU @ 2.10GHz\ncpu MHz\t\t: 2100.000\nphysical id\t: 0\nflags\t\t: fpu vme sse2 \
        lm\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz\ncpu MHz\t\t: \
        1200.000\nphysical id\t: 1\nflags\t\t: fpu vme sse2 lm\n\n";

    #[test]
    fn parses_x86_cpuinfo() {
        let info = parse_cpuinfo(X86);
        assert_eq!(
            info.model_name.as_deref(),
            Some("Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz")
        );
        assert_eq!(info.mhz.as_deref(), Some("2100.000"));
        assert_eq!(info.flags, ["fpu", "vme", "sse2", "lm"]);
        assert_eq!(info.processors, 2);
        assert_eq!(info.physical_ids.len(), 2);
    }

    #[test]
    fn parses_arm64_cpuinfo() {
        let text = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes\n\
            CPU implementer\t: 0x41\n\nprocessor\t: 1\nFeatures\t: fp asimd evtstrm aes\n\n";
        let info = parse_cpuinfo(text);
        assert_eq!(info.processors, 2);
        assert_eq!(info.flags, ["fp", "asimd", "evtstrm", "aes"]);
        assert_eq!(info.model_name, None);
        assert_eq!(info.mhz, None);
    }

    #[test]
    fn garbage_cpuinfo_gives_nothing() {
        let info = parse_cpuinfo("\u{0}\u{1}binary junk\nno colon here\nprocessor: x\n");
        assert_eq!(info, CpuInfo::default());
    }

    #[test]
    fn offline_cpus_count_as_lscpu_and_ipa_count_them() {
        let dir = tempfile::tempdir().unwrap();
        let cpu = dir.path().join("sys/devices/system/cpu");
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(cpu.join("online"), "0-1\n").unwrap();
        let root = Root::new(dir.path()).unwrap();
        assert_eq!(collect(&root).count, 2);
        // SMT switched off: half the present CPUs are offline.
        std::fs::write(cpu.join("present"), "0-3\n").unwrap();
        assert_eq!(collect(&root).count, 4);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3"), Some(4));
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), Some(7));
        assert_eq!(parse_cpu_list(""), Some(0));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a-b"), None);
        assert_eq!(parse_cpu_list("0,,1"), None);
        assert_eq!(parse_cpu_list("0-4294967295"), None);
    }
}
