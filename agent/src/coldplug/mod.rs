//! Cold-plug at boot (`ferrite-agent coldplug`, run by the ramdisk's `/init`): loads the
//! drivers of the devices this machine has, matching every `/sys/bus/*/devices/*/modalias`
//! against the alias patterns of the cold-plug table that ramdisk-build wrote
//! (`/etc/ferrite/coldplug`, format in ramdisk-build's `coldplug.rs`), in rounds, since a
//! loaded driver can reveal devices of its own (virtio PCI → virtio devices).

mod glob;
mod load;

use std::collections::BTreeSet;

pub use glob::Glob;
pub use load::{run, scan_modaliases, ColdplugArgs, ColdplugError};

/// One module the initramfs holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub path: String,
    pub depends: Vec<String>,
}

/// The parsed cold-plug table.
#[derive(Debug, Default)]
pub struct Table {
    /// In load order: dependencies first.
    modules: Vec<Entry>,
    always: Vec<String>,
    /// (module, the module whose loading brings it).
    with: Vec<(String, String)>,
    aliases: Vec<(Glob, String)>,
}

/// Why a table line was refused.
#[derive(Debug, thiserror::Error)]
#[error("cold-plug table line {line}: {why}")]
pub struct TableError {
    pub line: usize,
    pub why: String,
}

impl Table {
    pub fn parse(text: &str) -> Result<Table, TableError> {
        let mut t = Table::default();
        for (i, line) in text.lines().enumerate() {
            let err = |why: &str| TableError {
                line: i + 1,
                why: why.to_string(),
            };
            let words: Vec<&str> = line.split(' ').filter(|w| !w.is_empty()).collect();
            match words.as_slice() {
                [] => {}
                ["module", name, path, deps] => t.modules.push(Entry {
                    name: name.to_string(),
                    path: path.to_string(),
                    depends: match *deps {
                        "-" => vec![],
                        d => d.split(',').map(str::to_string).collect(),
                    },
                }),
                ["always", name] => t.always.push(name.to_string()),
                ["with", name, trigger] => t.with.push((name.to_string(), trigger.to_string())),
                ["alias", pattern, name] => t.aliases.push((Glob::new(pattern), name.to_string())),
                _ => return Err(err("expected module, always, with or alias and its fields")),
            }
        }
        let known = |n: &str| t.modules.iter().any(|m| m.name == n);
        for name in t
            .always
            .iter()
            .chain(t.with.iter().flat_map(|(a, b)| [a, b]))
            .chain(t.aliases.iter().map(|(_, n)| n))
            .chain(t.modules.iter().flat_map(|m| &m.depends))
        {
            if !known(name) {
                return Err(TableError {
                    line: 0,
                    why: format!("{name} is named but has no `module` line"),
                });
            }
        }
        Ok(t)
    }

    /// The modules loaded on every machine.
    pub fn always(&self) -> BTreeSet<String> {
        self.always.iter().cloned().collect()
    }

    /// The modules some alias of which matches one of `modaliases`, each with the first
    /// modalias it matched.
    pub fn matching(&self, modaliases: &[String]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (glob, name) in &self.aliases {
            if out.iter().any(|(n, _)| n == name) {
                continue;
            }
            if let Some(hit) = modaliases.iter().find(|a| glob.matches(a)) {
                out.push((name.clone(), hit.clone()));
            }
        }
        out
    }

    /// `wanted` with the modules that come with them and their dependencies, in load order.
    pub fn load_order(&self, wanted: &BTreeSet<String>) -> Vec<&Entry> {
        let mut set = wanted.clone();
        loop {
            let before = set.len();
            for (name, trigger) in &self.with {
                if set.contains(trigger) {
                    set.insert(name.clone());
                }
            }
            for m in &self.modules {
                if set.contains(&m.name) {
                    set.extend(m.depends.iter().cloned());
                }
            }
            if set.len() == before {
                break;
            }
        }
        self.modules
            .iter()
            .filter(|m| set.contains(&m.name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Aliases as the Debian 6.1 kernel's modules carry them, and the modaliases of a q35
    /// QEMU machine with an e1000e NIC, a MegaRAID and a BMC.
    const TABLE: &str = "\
module scsi_mod /lib/modules/r/kernel/scsi_mod.ko -
module megaraid_sas /lib/modules/r/kernel/megaraid_sas.ko scsi_mod
module mptbase /lib/modules/r/kernel/mptbase.ko -
module mptsas /lib/modules/r/kernel/mptsas.ko mptbase,scsi_mod
module sd_mod /lib/modules/r/kernel/sd_mod.ko scsi_mod
module e1000e /lib/modules/r/kernel/e1000e.ko -
module ahci /lib/modules/r/kernel/ahci.ko -
module ixgbe /lib/modules/r/kernel/ixgbe.ko -
module ipmi_msghandler /lib/modules/r/kernel/ipmi_msghandler.ko -
module ipmi_si /lib/modules/r/kernel/ipmi_si.ko ipmi_msghandler
module ipmi_devintf /lib/modules/r/kernel/ipmi_devintf.ko ipmi_msghandler
alias pci:v00001000d00000060sv*sd*bc*sc*i* megaraid_sas
alias pci:v00001000d00000411sv*sd*bc*sc*i* megaraid_sas
alias pci:v00001000d00000054sv*sd*bc*sc*i* mptsas
alias pci:v00001000d00000058sv*sd*bc*sc*i* mptsas
always sd_mod
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias pci:v00008086d0000105Esv*sd*bc*sc*i* e1000e
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias pci:v00008086d000010FBsv*sd*bc*sc*i* ixgbe
alias acpi*:IPI0001:* ipmi_si
alias platform:dmi-ipmi-si ipmi_si
with ipmi_devintf ipmi_si
";

    fn aliases(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn real_alias_patterns_match_real_modaliases() {
        let t = Table::parse(TABLE).unwrap();
        let machine = aliases(&[
            "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00",
            "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00",
            "pci:v00001000d00000060sv00001000sd00001013bc01sc04i00",
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
            "acpi:IPI0001:",
            "platform:serial8250",
        ]);
        let hits = t.matching(&machine);
        let names: Vec<&str> = hits.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["megaraid_sas", "e1000e", "ahci", "ipmi_si"]);
        assert_eq!(hits[0].1, machine[2]);
        assert!(!names.contains(&"ixgbe"));
        assert!(!names.contains(&"mptsas"));
    }

    #[test]
    fn load_order_adds_dependencies_and_companions_first() {
        let t = Table::parse(TABLE).unwrap();
        let mut want = t.always();
        want.extend(["ipmi_si".to_string(), "mptsas".to_string()]);
        let order: Vec<&str> = t
            .load_order(&want)
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "scsi_mod",
                "mptbase",
                "mptsas",
                "sd_mod",
                "ipmi_msghandler",
                "ipmi_si",
                "ipmi_devintf"
            ]
        );
        assert_eq!(
            t.load_order(&want)[2].path,
            "/lib/modules/r/kernel/mptsas.ko"
        );
    }

    #[test]
    fn malformed_tables_are_refused() {
        let e = Table::parse("module a /a.ko -\nfrobnicate a\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = Table::parse("module a /a.ko b\n").unwrap_err();
        assert!(e.to_string().contains("b is named"), "{e}");
        let e = Table::parse("alias pci:* nope\n").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        assert!(Table::parse("").unwrap().always().is_empty());
    }
}
