//! Kernel modules: reads `.modinfo` from `.ko` ELF files and computes the `depends=` closure
//! in load order, since the Debian package ships no `modules.dep` (depmod makes it at install).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::Error;

/// Module names compare with `-` and `_` as the same character, as the kernel does.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

fn rd<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// The `key=value` strings of an ELF64 little-endian object's `.modinfo` section.
pub fn modinfo(ko: &[u8]) -> Result<Vec<(String, String)>, String> {
    if ko.get(..4) != Some(b"\x7fELF") || ko.get(4) != Some(&2) || ko.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF object".into());
    }
    let short = || "truncated ELF header or section table".to_string();
    let shoff = u64::from_le_bytes(rd(ko, 0x28).ok_or_else(short)?) as usize;
    let shentsize = u16::from_le_bytes(rd(ko, 0x3a).ok_or_else(short)?) as usize;
    let shnum = u16::from_le_bytes(rd(ko, 0x3c).ok_or_else(short)?) as usize;
    let shstrndx = u16::from_le_bytes(rd(ko, 0x3e).ok_or_else(short)?) as usize;
    let section = |i: usize| -> Result<(u32, &[u8]), String> {
        let h = shoff + i * shentsize;
        let name = u32::from_le_bytes(rd(ko, h).ok_or_else(short)?);
        let off = u64::from_le_bytes(rd(ko, h + 0x18).ok_or_else(short)?) as usize;
        let size = u64::from_le_bytes(rd(ko, h + 0x20).ok_or_else(short)?) as usize;
        let data = ko
            .get(off..off.checked_add(size).ok_or_else(short)?)
            .ok_or_else(short)?;
        Ok((name, data))
    };
    let (_, names) = section(shstrndx)?;
    for i in 0..shnum {
        let (name_off, data) = section(i)?;
        let name = names
            .get(name_off as usize..)
            .and_then(|s| s.split(|&c| c == 0).next())
            .unwrap_or_default();
        if name == b".modinfo" {
            return Ok(data
                .split(|&c| c == 0)
                .filter_map(|kv| {
                    let kv = std::str::from_utf8(kv).ok()?;
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.to_string()))
                })
                .collect());
        }
    }
    Err("no .modinfo section: not a kernel module".into())
}

/// One module to put in the ramdisk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Normalised name (`virtio_net`).
    pub name: String,
    /// Path under `lib/modules/<release>/`, always ending in `.ko`.
    pub rel_path: String,
    /// Normalised names of the modules it needs loaded first.
    pub depends: Vec<String>,
    /// `alias=` patterns: the modaliases of the devices it drives (shell globs).
    pub aliases: Vec<String>,
    /// `firmware=` files it may request, relative to `/lib/firmware`.
    pub firmware: Vec<String>,
    /// The uncompressed object.
    pub data: Vec<u8>,
}

/// The modules of one kernel release, indexed by name.
#[derive(Debug)]
pub struct ModuleTree {
    root: PathBuf,
    by_name: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

impl ModuleTree {
    /// Indexes `root` (a `lib/modules/<release>` directory).
    pub fn scan(root: &Path) -> Result<ModuleTree, Error> {
        let io = |e| {
            Error::Io(
                format!("reading kernel modules under {}", root.display()),
                e,
            )
        };
        let mut files = vec![];
        walk(&root.join("kernel"), &mut files).map_err(io)?;
        let mut by_name = BTreeMap::new();
        for f in files {
            let file_name = f.file_name().unwrap_or_default().to_string_lossy();
            let stem = file_name
                .strip_suffix(".ko")
                .or_else(|| file_name.strip_suffix(".ko.xz"));
            if let Some(stem) = stem {
                by_name.insert(normalize(stem), f.clone());
            }
        }
        let builtin = std::fs::read_to_string(root.join("modules.builtin"))
            .map_err(io)?
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .map(|f| normalize(f.trim_end_matches(".ko")))
            .collect();
        Ok(ModuleTree {
            root: root.to_path_buf(),
            by_name,
            builtin,
        })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    fn load(&self, name: &str) -> Result<Option<Module>, Error> {
        let Some(path) = self.by_name.get(name) else {
            if self.builtin.contains(name) {
                return Ok(None);
            }
            return Err(Error::MissingModule {
                name: name.to_string(),
                dir: self.root.clone(),
            });
        };
        let io = |e| Error::Io(format!("reading {}", path.display()), e);
        let raw = std::fs::read(path).map_err(io)?;
        let data = if path.extension().is_some_and(|e| e == "xz") {
            let mut out = vec![];
            xz2::read::XzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(io)?;
            out
        } else {
            raw
        };
        let info = modinfo(&data).map_err(|why| Error::BadModule {
            path: path.clone(),
            why,
        })?;
        let depends = info
            .iter()
            .filter(|(k, _)| k == "depends")
            .flat_map(|(_, v)| v.split(','))
            .filter(|d| !d.is_empty())
            .map(normalize)
            .collect();
        let values = |key: &str| -> Vec<String> {
            info.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let rel = path
            .strip_prefix(&self.root)
            .expect("indexed under root")
            .to_string_lossy();
        Ok(Some(Module {
            name: name.to_string(),
            rel_path: rel.trim_end_matches(".xz").to_string(),
            depends,
            aliases: values("alias"),
            firmware: values("firmware"),
            data,
        }))
    }

    /// The wanted modules and everything they depend on, dependencies before dependents;
    /// modules built into the kernel are left out. Unknown names are errors.
    pub fn closure(&self, wanted: &[&str]) -> Result<Vec<Module>, Error> {
        let mut done: BTreeMap<String, Option<()>> = BTreeMap::new();
        let mut order = vec![];
        for w in wanted {
            self.visit(&normalize(w), &mut done, &mut order, &mut vec![])?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        done: &mut BTreeMap<String, Option<()>>,
        order: &mut Vec<Module>,
        stack: &mut Vec<String>,
    ) -> Result<(), Error> {
        if done.contains_key(name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            return Err(Error::ModuleCycle(stack.join(" -> ")));
        }
        let Some(module) = self.load(name)? else {
            done.insert(name.to_string(), None);
            return Ok(());
        };
        stack.push(name.to_string());
        for dep in &module.depends {
            self.visit(dep, done, order, stack)?;
        }
        stack.pop();
        done.insert(name.to_string(), Some(()));
        order.push(module);
        Ok(())
    }
}

/// A `modules.dep` for busybox `modprobe`, in load order.
pub fn modules_dep(modules: &[Module]) -> String {
    let path_of: BTreeMap<&str, &str> = modules
        .iter()
        .map(|m| (m.name.as_str(), m.rel_path.as_str()))
        .collect();
    let mut out = String::new();
    for m in modules {
        out.push_str(&m.rel_path);
        out.push(':');
        for d in &m.depends {
            if let Some(p) = path_of.get(d.as_str()) {
                out.push(' ');
                out.push_str(p);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 object with a `.modinfo` section (and the section-name table).
    pub fn fake_ko(modinfo: &str) -> Vec<u8> {
        let shstr = b"\0.shstrtab\0.modinfo\0".to_vec();
        let info = modinfo.replace(';', "\0").into_bytes();
        let mut b = vec![0u8; 64];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let shstr_off = b.len();
        b.extend_from_slice(&shstr);
        let info_off = b.len();
        b.extend_from_slice(&info);
        let shoff = b.len();
        b[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        b[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        b[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        b[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        let sh = |name: u32, off: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        let headers = [
            sh(0, 0, 0),
            sh(1, shstr_off, shstr.len()),
            sh(11, info_off, info.len()),
        ];
        for h in headers {
            b.extend_from_slice(&h);
        }
        b
    }

    #[test]
    fn reads_modinfo() {
        let ko = fake_ko("license=GPL;depends=virtio,virtio_ring;name=virtio_net;");
        let info = modinfo(&ko).unwrap();
        assert!(info.contains(&("license".into(), "GPL".into())));
        assert!(info.contains(&("depends".into(), "virtio,virtio_ring".into())));
        assert!(info.contains(&("name".into(), "virtio_net".into())));
    }

    #[test]
    fn non_modules_are_refused() {
        assert!(modinfo(b"hello").is_err());
        let mut ko = fake_ko("depends=;");
        ko.truncate(100);
        assert!(modinfo(&ko).unwrap_err().contains("truncated"));
    }

    fn tree(mods: &[(&str, &str)], builtin: &str) -> (tempfile::TempDir, ModuleTree) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("kernel/drivers")).unwrap();
        for (name, deps) in mods {
            std::fs::write(
                dir.path().join(format!("kernel/drivers/{name}.ko")),
                fake_ko(&format!("depends={deps};name={name}")),
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("modules.builtin"), builtin).unwrap();
        let t = ModuleTree::scan(dir.path()).unwrap();
        (dir, t)
    }

    #[test]
    fn closure_puts_dependencies_first_and_skips_builtins() {
        let (_d, t) = tree(
            &[
                ("virtio_net", "virtio_ring,virtio,net_failover"),
                ("net_failover", "failover"),
                ("failover", ""),
                ("virtio_ring", ""),
                ("virtio", ""),
                ("t10-pi", "crc-t10dif"),
                ("sd_mod", "t10-pi"),
            ],
            "kernel/lib/crc-t10dif.ko\n",
        );
        let mods = t.closure(&["virtio_net", "sd-mod", "virtio"]).unwrap();
        let names: Vec<_> = mods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "virtio_ring",
                "virtio",
                "failover",
                "net_failover",
                "virtio_net",
                "t10_pi",
                "sd_mod"
            ]
        );
        let dep = modules_dep(&mods);
        assert!(dep.contains("kernel/drivers/net_failover.ko: kernel/drivers/failover.ko\n"));
        assert!(dep.contains("kernel/drivers/t10-pi.ko:\n"));
    }

    #[test]
    fn aliases_and_firmware_come_from_modinfo() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("kernel")).unwrap();
        std::fs::write(
            dir.path().join("kernel/bnx2x.ko"),
            fake_ko(
                "firmware=bnx2x/bnx2x-e2-7.13.15.0.fw;alias=pci:v000014E4d0000163Fsv*sd*bc*sc*i*;\
                 alias=pci:v000014E4d0000163Esv*sd*bc*sc*i*;depends=;name=bnx2x",
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("modules.builtin"), "").unwrap();
        let t = ModuleTree::scan(dir.path()).unwrap();
        let m = &t.closure(&["bnx2x"]).unwrap()[0];
        assert_eq!(
            m.aliases,
            [
                "pci:v000014E4d0000163Fsv*sd*bc*sc*i*",
                "pci:v000014E4d0000163Esv*sd*bc*sc*i*"
            ]
        );
        assert_eq!(m.firmware, ["bnx2x/bnx2x-e2-7.13.15.0.fw"]);
    }

    #[test]
    fn unknown_modules_and_cycles_are_errors() {
        let (_d, t) = tree(&[("a", "b"), ("b", "a"), ("c", "nope")], "");
        assert!(matches!(t.closure(&["a"]), Err(Error::ModuleCycle(_))));
        let e = t.closure(&["c"]).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        assert!(matches!(
            t.closure(&["zzz"]),
            Err(Error::MissingModule { .. })
        ));
    }
}
