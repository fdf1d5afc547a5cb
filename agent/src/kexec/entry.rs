//! Finding the deployed OS's kernel, initrd and command line in a mounted filesystem, the
//! way its own boot loader would: Boot Loader Specification entries first
//! (`loader/entries/*.conf`, the newest by file name), then GRUB's config (the first
//! `menuentry`), then syslinux/extlinux (the `DEFAULT` label). Paths in the configs are
//! taken relative to the filesystem holding the config, as a loader whose `$root` is that
//! partition reads them; a config pointing elsewhere is skipped. Pure parsing over text,
//! bounded reads.

use std::path::{Path, PathBuf};

/// Where each loader's config may live, relative to a filesystem's root.
const GRUB_CONFIGS: &[&str] = &[
    "boot/grub/grub.cfg",
    "boot/grub2/grub.cfg",
    "grub/grub.cfg",
    "grub2/grub.cfg",
    "EFI/BOOT/grub.cfg",
    "EFI/debian/grub.cfg",
    "EFI/ubuntu/grub.cfg",
];
const SYSLINUX_CONFIGS: &[&str] = &[
    "syslinux.cfg",
    "boot/syslinux/syslinux.cfg",
    "syslinux/syslinux.cfg",
    "extlinux.conf",
    "boot/extlinux/extlinux.conf",
    "extlinux/extlinux.conf",
];
const BLS_DIRS: &[&str] = &["loader/entries", "boot/loader/entries"];
/// A boot loader config larger than this is not read.
const MAX_CONFIG: u64 = 1 << 20;

/// A loader's config files and the parser of their format.
type Loader = (&'static [&'static str], fn(&str) -> Option<Parsed>);

/// What to boot, with paths on the host (the mounted filesystem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    /// The config the entry came from, for the step's result.
    pub source: PathBuf,
}

/// An entry as a config names it (paths as written, not yet resolved).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub kernel: String,
    pub initrd: Option<String>,
    pub cmdline: String,
}

/// The first `menuentry` of a GRUB config with a `linux` line.
pub fn parse_grub(text: &str) -> Option<Parsed> {
    let mut current: Option<Parsed> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("menuentry ") || line.starts_with("menuentry\t") {
            current = Some(Parsed::default());
            continue;
        }
        if line.starts_with('}') {
            if let Some(p) = current.take() {
                if !p.kernel.is_empty() {
                    return Some(p);
                }
            }
            continue;
        }
        let Some(p) = current.as_mut() else {
            continue;
        };
        let mut words = line.split_whitespace();
        match words.next() {
            Some("linux" | "linux16" | "linuxefi") => {
                if let Some(k) = words.next() {
                    p.kernel = k.to_string();
                    p.cmdline = words.collect::<Vec<_>>().join(" ");
                }
            }
            Some("initrd" | "initrd16" | "initrdefi") => {
                p.initrd = words.next().map(str::to_string);
            }
            _ => {}
        }
    }
    current.filter(|p| !p.kernel.is_empty())
}

/// The `DEFAULT` label of a syslinux/extlinux config (else its first label).
pub fn parse_syslinux(text: &str) -> Option<Parsed> {
    let mut default = None;
    let mut labels: Vec<(String, Parsed)> = vec![];
    for line in text.lines().map(str::trim) {
        let (key, value) = match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k.to_ascii_uppercase(), v.trim()),
            None => continue,
        };
        match key.as_str() {
            "DEFAULT" => default = Some(value.to_string()),
            "LABEL" => labels.push((value.to_string(), Parsed::default())),
            "KERNEL" | "LINUX" => {
                if let Some((_, p)) = labels.last_mut() {
                    p.kernel = value.to_string();
                }
            }
            "INITRD" => {
                if let Some((_, p)) = labels.last_mut() {
                    p.initrd = Some(value.to_string());
                }
            }
            "APPEND" => {
                if let Some((_, p)) = labels.last_mut() {
                    let mut args = vec![];
                    for w in value.split_whitespace() {
                        match w.strip_prefix("initrd=") {
                            Some(i) => p.initrd = Some(i.to_string()),
                            None => args.push(w),
                        }
                    }
                    p.cmdline = args.join(" ");
                }
            }
            _ => {}
        }
    }
    let chosen = default
        .and_then(|d| labels.iter().position(|(l, _)| *l == d))
        .unwrap_or(0);
    labels
        .into_iter()
        .nth(chosen)
        .map(|(_, p)| p)
        .filter(|p| !p.kernel.is_empty())
}

/// A Boot Loader Specification entry (`linux`, `initrd`, `options`).
pub fn parse_bls(text: &str) -> Option<Parsed> {
    let mut p = Parsed::default();
    let mut options = vec![];
    for line in text.lines().map(str::trim) {
        let Some((key, value)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        match key {
            "linux" => p.kernel = value.trim().to_string(),
            "initrd" if p.initrd.is_none() => p.initrd = Some(value.trim().to_string()),
            "options" => options.push(value.trim().to_string()),
            _ => {}
        }
    }
    p.cmdline = options.join(" ");
    (!p.kernel.is_empty()).then_some(p)
}

fn read_small(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_CONFIG {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// `path` as written in a config, under `root`; None when it leaves `root` or is missing.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    // GRUB device prefixes such as `($root)/vmlinuz` or `(hd0,1)/vmlinuz`.
    let path = match path.strip_prefix('(') {
        Some(rest) => rest.split_once(')')?.1,
        None => path,
    };
    let rel = Path::new(path.trim_start_matches('/'));
    if rel
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    let full = root.join(rel);
    full.is_file().then_some(full)
}

fn resolved(root: &Path, source: PathBuf, p: Parsed) -> Option<BootEntry> {
    let kernel = resolve(root, &p.kernel)?;
    let initrd = match &p.initrd {
        Some(i) => Some(resolve(root, i)?),
        None => None,
    };
    Some(BootEntry {
        kernel,
        initrd,
        cmdline: p.cmdline,
        source,
    })
}

/// The boot entry of the filesystem mounted at `root`, if its loader config names a
/// kernel that is on it.
pub fn find(root: &Path) -> Option<BootEntry> {
    for dir in BLS_DIRS {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut confs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        // Newest last, as sorted version strings usually are.
        confs.sort();
        for conf in confs.into_iter().rev() {
            let found = read_small(&conf)
                .and_then(|t| parse_bls(&t))
                .and_then(|p| resolved(root, conf.clone(), p));
            if found.is_some() {
                return found;
            }
        }
    }
    let parsers: [Loader; 2] = [
        (GRUB_CONFIGS, parse_grub),
        (SYSLINUX_CONFIGS, parse_syslinux),
    ];
    for (configs, parse) in parsers {
        for c in configs {
            let path = root.join(c);
            let found = read_small(&path)
                .and_then(|t| parse(&t))
                .and_then(|p| resolved(root, path.clone(), p));
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_takes_the_first_menuentry_with_a_kernel() {
        let cfg = "\
set timeout=5
submenu 'x' {
}
menuentry 'Debian GNU/Linux' --class debian {
\tload_video
\tinsmod gzio
\tlinux\t/boot/vmlinuz-6.1.0-50-amd64 root=UUID=abc ro quiet
\tinitrd\t/boot/initrd.img-6.1.0-50-amd64
}
menuentry 'second' {
  linux /other
}
";
        let p = parse_grub(cfg).unwrap();
        assert_eq!(p.kernel, "/boot/vmlinuz-6.1.0-50-amd64");
        assert_eq!(p.cmdline, "root=UUID=abc ro quiet");
        assert_eq!(p.initrd.as_deref(), Some("/boot/initrd.img-6.1.0-50-amd64"));
        assert_eq!(parse_grub("set timeout=0\n"), None);
        assert_eq!(parse_grub("menuentry 'empty' {\n}\n"), None);
    }

    #[test]
    fn syslinux_takes_the_default_label_and_initrd_from_append() {
        let cfg = "\
SERIAL 0 115200
DEFAULT second
LABEL first
  KERNEL /a
LABEL second
  LINUX /vmlinuz
  APPEND console=ttyS0 initrd=/initrd.img quiet
";
        let p = parse_syslinux(cfg).unwrap();
        assert_eq!(p.kernel, "/vmlinuz");
        assert_eq!(p.initrd.as_deref(), Some("/initrd.img"));
        assert_eq!(p.cmdline, "console=ttyS0 quiet");
        let first = parse_syslinux("LABEL x\nKERNEL /k\nINITRD /i\nAPPEND a=b\n").unwrap();
        assert_eq!(
            (
                first.kernel.as_str(),
                first.initrd.as_deref(),
                first.cmdline.as_str()
            ),
            ("/k", Some("/i"), "a=b")
        );
    }

    #[test]
    fn bls_entries_join_their_options() {
        let p = parse_bls("title Fedora\nlinux /vmlinuz-6\ninitrd /initramfs-6.img\noptions root=/dev/sda2\noptions ro\n").unwrap();
        assert_eq!(p.kernel, "/vmlinuz-6");
        assert_eq!(p.cmdline, "root=/dev/sda2 ro");
        assert_eq!(parse_bls("title nothing\n"), None);
    }

    #[test]
    fn find_resolves_on_the_filesystem_and_never_leaves_it() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("EFI/BOOT")).unwrap();
        std::fs::write(root.join("vmlinuz"), b"k").unwrap();
        std::fs::write(root.join("initrd.img"), b"i").unwrap();
        std::fs::write(
            root.join("EFI/BOOT/grub.cfg"),
            "menuentry ferrite {\n  linux /vmlinuz console=ttyS0\n  initrd /initrd.img\n}\n",
        )
        .unwrap();
        let e = find(root).unwrap();
        assert_eq!(e.kernel, root.join("vmlinuz"));
        assert_eq!(e.initrd, Some(root.join("initrd.img")));
        assert_eq!(e.cmdline, "console=ttyS0");
        assert_eq!(e.source, root.join("EFI/BOOT/grub.cfg"));

        // A kernel that is not on this filesystem, or outside it: no entry.
        std::fs::write(
            root.join("EFI/BOOT/grub.cfg"),
            "menuentry x {\n  linux /../../etc/passwd\n}\n",
        )
        .unwrap();
        assert_eq!(find(root), None);
        std::fs::write(
            root.join("EFI/BOOT/grub.cfg"),
            "menuentry x {\n  linux ($root)/missing\n}\n",
        )
        .unwrap();
        assert_eq!(find(root), None);
        // syslinux is the fallback; GRUB device prefixes are understood.
        std::fs::write(
            root.join("syslinux.cfg"),
            "DEFAULT f\nLABEL f\n  KERNEL (hd0,msdos1)/vmlinuz\n  APPEND quiet\n",
        )
        .unwrap();
        let e = find(root).unwrap();
        assert_eq!(
            (e.kernel, e.initrd, e.cmdline.as_str()),
            (root.join("vmlinuz"), None, "quiet")
        );
    }
}
