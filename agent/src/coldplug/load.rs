//! The I/O edge of cold-plug: reads the table and the machine's modaliases, loads modules
//! with finit_module(2), in rounds until no new module matches.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Entry, Table, TableError};

/// Rounds at most: PCI drivers reveal virtio/SCSI/USB devices, whose drivers may reveal
/// more; four covers every chain in the profiles with room to spare.
const MAX_ROUNDS: usize = 4;

#[derive(Debug, clap::Args)]
pub struct ColdplugArgs {
    /// The cold-plug table written by ramdisk-build.
    #[arg(long, default_value = "/etc/ferrite/coldplug")]
    pub table: PathBuf,
    /// Root of the sysfs tree whose modaliases are matched.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Print what would be loaded (first round only) instead of loading it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ColdplugError {
    #[error("reading the cold-plug table {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("the cold-plug table {0} is malformed")]
    Parse(PathBuf, #[source] TableError),
}

/// What one cold-plug did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Modules loaded, in order, with the modalias that asked for each (`None`: a
    /// dependency, an `always` module or a companion).
    pub loaded: Vec<(String, Option<String>)>,
    /// Modules the kernel refused, with its reason (no such device, …).
    pub refused: Vec<(String, String)>,
    pub rounds: usize,
}

/// `ferrite-agent coldplug`.
pub fn run(args: ColdplugArgs) -> ExitCode {
    let table = match read_table(&args.table) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ferrite-coldplug: {:#}", anyhow::Error::new(e));
            return ExitCode::FAILURE;
        }
    };
    let sys = args.root.join("sys");
    if args.dry_run {
        let hits = table.matching(&scan_modaliases(&sys));
        let mut want = table.always();
        want.extend(hits.iter().map(|(n, _)| n.clone()));
        for e in table.load_order(&want) {
            let why = hits.iter().find(|(n, _)| *n == e.name).map(|(_, a)| a);
            println!("{} {}", e.path, why.map_or("-", String::as_str));
        }
        return ExitCode::SUCCESS;
    }
    let outcome = coldplug(&table, || scan_modaliases(&sys), load_module);
    for (name, why) in &outcome.loaded {
        match why {
            Some(alias) => println!("ferrite-coldplug: loaded {name} for {alias}"),
            None => println!("ferrite-coldplug: loaded {name}"),
        }
    }
    for (name, why) in &outcome.refused {
        println!("ferrite-coldplug: {name} not loaded: {why}");
    }
    println!(
        "ferrite-coldplug: {} modules in {} rounds",
        outcome.loaded.len(),
        outcome.rounds
    );
    ExitCode::SUCCESS
}

fn read_table(path: &Path) -> Result<Table, ColdplugError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ColdplugError::Read(path.to_path_buf(), e))?;
    Table::parse(&text).map_err(|e| ColdplugError::Parse(path.to_path_buf(), e))
}

/// Loads what `table` says for the modaliases `scan` returns, round after round until a
/// round loads nothing new; `load` loads one module (Err: the kernel's reason).
pub fn coldplug(
    table: &Table,
    mut scan: impl FnMut() -> Vec<String>,
    mut load: impl FnMut(&Entry) -> Result<(), String>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut tried: BTreeSet<String> = BTreeSet::new();
    for round in 0..MAX_ROUNDS {
        let hits = table.matching(&scan());
        let mut want = if round == 0 {
            table.always()
        } else {
            BTreeSet::new()
        };
        want.extend(hits.iter().map(|(n, _)| n.clone()));
        let todo: Vec<&Entry> = table
            .load_order(&want)
            .into_iter()
            .filter(|e| !tried.contains(&e.name))
            .collect();
        if todo.is_empty() {
            break;
        }
        outcome.rounds = round + 1;
        for e in todo {
            tried.insert(e.name.clone());
            match load(e) {
                Ok(()) => {
                    let why = hits
                        .iter()
                        .find(|(n, _)| *n == e.name)
                        .map(|(_, a)| a.clone());
                    outcome.loaded.push((e.name.clone(), why));
                }
                Err(why) => outcome.refused.push((e.name.clone(), why)),
            }
        }
    }
    outcome
}

/// Every `<sys>/bus/*/devices/*/modalias`, sorted, without duplicates.
pub fn scan_modaliases(sys: &Path) -> Vec<String> {
    let mut out = BTreeSet::new();
    for bus in list(&sys.join("bus")) {
        let devices = sys.join("bus").join(&bus).join("devices");
        for dev in list(&devices) {
            if let Ok(alias) = std::fs::read_to_string(devices.join(&dev).join("modalias")) {
                let alias = alias.trim();
                if !alias.is_empty() {
                    out.insert(alias.to_string());
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Entry names of a directory; empty when it cannot be read.
fn list(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// finit_module(2) of one `.ko`; a module already loaded (or built in) counts as loaded.
fn load_module(e: &Entry) -> Result<(), String> {
    let file = std::fs::File::open(&e.path).map_err(|err| format!("opening {}: {err}", e.path))?;
    match nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(errno) => Err(errno.desc().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
module virtio /v.ko -
module virtio_pci /vp.ko virtio
module virtio_net /vn.ko virtio
module virtio_blk /vb.ko virtio
module scsi_mod /s.ko -
module sd_mod /sd.ko scsi_mod
module ipmi_si /i.ko -
module e1000 /e.ko -
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias virtio:d00000002v* virtio_blk
alias acpi*:IPI0001:* ipmi_si
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
always sd_mod
";

    /// A fake machine: virtio devices appear once virtio_pci is loaded; the BMC driver is
    /// refused (no BMC answers).
    #[test]
    fn rounds_follow_devices_that_drivers_reveal() {
        let table = Table::parse(TABLE).unwrap();
        let loaded = std::cell::RefCell::new(Vec::<String>::new());
        let scan = || {
            let mut a = vec![
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_string(),
                "acpi:IPI0001:".to_string(),
            ];
            if loaded.borrow().iter().any(|m| m == "virtio_pci") {
                a.push("virtio:d00000001v00001AF4".into());
                a.push("virtio:d00000002v00001AF4".into());
            }
            a
        };
        let outcome = coldplug(&table, scan, |e| {
            if e.name == "ipmi_si" {
                return Err("No such device".into());
            }
            loaded.borrow_mut().push(e.name.clone());
            Ok(())
        });
        assert_eq!(
            *loaded.borrow(),
            [
                "virtio",
                "virtio_pci",
                "scsi_mod",
                "sd_mod",
                "virtio_net",
                "virtio_blk"
            ]
        );
        assert_eq!(outcome.rounds, 2);
        assert_eq!(
            outcome.loaded[1],
            (
                "virtio_pci".to_string(),
                Some("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_string())
            )
        );
        assert_eq!(outcome.loaded[0], ("virtio".to_string(), None));
        assert_eq!(
            outcome.refused,
            [("ipmi_si".to_string(), "No such device".to_string())]
        );
    }

    #[test]
    fn modaliases_come_from_every_bus() {
        let dir = tempfile::tempdir().unwrap();
        let dev = |bus: &str, name: &str, alias: &str| {
            let d = dir.path().join(format!("sys/bus/{bus}/devices/{name}"));
            std::fs::create_dir_all(&d).unwrap();
            if !alias.is_empty() {
                std::fs::write(d.join("modalias"), format!("{alias}\n")).unwrap();
            }
        };
        dev(
            "pci",
            "0000:00:02.0",
            "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00",
        );
        dev(
            "pci",
            "0000:00:03.0",
            "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00",
        );
        dev("acpi", "IPI0001:00", "acpi:IPI0001:");
        dev("cpu", "cpu0", "");
        assert_eq!(
            scan_modaliases(&dir.path().join("sys")),
            [
                "acpi:IPI0001:",
                "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"
            ]
        );
        let e = read_table(&dir.path().join("absent")).unwrap_err();
        assert!(e.to_string().contains("absent"), "{e}");
    }
}
