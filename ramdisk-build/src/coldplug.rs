//! The cold-plug table, `/etc/ferrite/coldplug`: what `ferrite-agent coldplug` needs at boot
//! to load the drivers of the devices the machine has, and only those.
//!
//! Plain text, one record a line, fields separated by one space:
//!
//! ```text
//! module <name> <path of the .ko> <dependencies, comma-separated, or ->
//! always <name>
//! with <name> <module whose loading brings it>
//! alias <modalias glob> <name>
//! ```
//!
//! `module` lines come in load order (dependencies first) and cover every module in the
//! initramfs; `alias` lines are the `alias=` patterns of the profile's `match` modules, as
//! the kernel wrote them (`pci:v00008086d000010D3sv*sd*bc*sc*i*`).

use crate::kmod::Module;
use crate::profile::{Load, ModuleSpec};
use crate::Error;

/// Where the table sits in the initramfs.
pub const TABLE: &str = "etc/ferrite/coldplug";

/// The table for `modules` (in load order, under `/lib/modules/<release>/`) chosen by `specs`.
pub fn table(release: &str, modules: &[Module], specs: &[ModuleSpec]) -> Result<String, Error> {
    let mut out = String::new();
    for m in modules {
        let deps: Vec<&str> = m
            .depends
            .iter()
            .filter(|d| modules.iter().any(|o| &o.name == *d))
            .map(String::as_str)
            .collect();
        let deps = if deps.is_empty() {
            "-".to_string()
        } else {
            deps.join(",")
        };
        out.push_str(&format!(
            "module {} /lib/modules/{release}/{} {deps}\n",
            m.name, m.rel_path
        ));
    }
    for spec in specs {
        // A module built into the kernel has no `.ko`: nothing to load.
        let Some(module) = modules.iter().find(|m| m.name == spec.name) else {
            continue;
        };
        match &spec.load {
            Load::Always => out.push_str(&format!("always {}\n", spec.name)),
            Load::With(trigger) => out.push_str(&format!("with {} {trigger}\n", spec.name)),
            Load::Match => {
                if module.aliases.is_empty() {
                    return Err(Error::BadModule {
                        path: module.rel_path.clone().into(),
                        why: "it has no alias= to match devices with: list it as `always` \
                              or `with:<module>` instead of `match`"
                            .into(),
                    });
                }
                for alias in &module.aliases {
                    if alias.chars().any(char::is_whitespace) {
                        return Err(Error::BadModule {
                            path: module.rel_path.clone().into(),
                            why: format!("alias {alias:?} holds whitespace"),
                        });
                    }
                    out.push_str(&format!("alias {alias} {}\n", spec.name));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::parse;

    fn module(name: &str, depends: &[&str], aliases: &[&str]) -> Module {
        Module {
            name: name.into(),
            rel_path: format!("kernel/{name}.ko"),
            depends: depends.iter().map(|s| s.to_string()).collect(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            firmware: vec![],
            data: vec![],
        }
    }

    #[test]
    fn table_lists_modules_in_order_and_aliases_of_match_modules_only() {
        let modules = [
            module("scsi_mod", &[], &[]),
            module(
                "megaraid_sas",
                &["scsi_mod"],
                &["pci:v00001000d00000060sv*sd*bc*sc*i*"],
            ),
            module("sd_mod", &["scsi_mod", "crc_t10dif"], &["scsi:t-0x00*"]),
            module("mlx4_core", &[], &["pci:v000015B3d00001003sv*sd*bc*sc*i*"]),
            module("mlx4_en", &["mlx4_core"], &[]),
        ];
        let specs = parse(
            "megaraid_sas match storage why\nsd_mod always storage why\n\
             mlx4_core match nic why\nmlx4_en with:mlx4_core nic why\nbuiltin_one always fs why\n",
        )
        .unwrap();
        let t = table("6.1.0-50-amd64", &modules, &specs).unwrap();
        assert_eq!(
            t,
            "module scsi_mod /lib/modules/6.1.0-50-amd64/kernel/scsi_mod.ko -\n\
             module megaraid_sas /lib/modules/6.1.0-50-amd64/kernel/megaraid_sas.ko scsi_mod\n\
             module sd_mod /lib/modules/6.1.0-50-amd64/kernel/sd_mod.ko scsi_mod\n\
             module mlx4_core /lib/modules/6.1.0-50-amd64/kernel/mlx4_core.ko -\n\
             module mlx4_en /lib/modules/6.1.0-50-amd64/kernel/mlx4_en.ko mlx4_core\n\
             alias pci:v00001000d00000060sv*sd*bc*sc*i* megaraid_sas\n\
             always sd_mod\n\
             alias pci:v000015B3d00001003sv*sd*bc*sc*i* mlx4_core\n\
             with mlx4_en mlx4_core\n"
        );
    }

    #[test]
    fn a_match_module_without_aliases_is_an_error() {
        let modules = [module("dm_multipath", &[], &[])];
        let specs = parse("dm_multipath match storage why\n").unwrap();
        let e = table("r", &modules, &specs).unwrap_err();
        assert!(e.to_string().contains("always"), "{e}");
    }
}
