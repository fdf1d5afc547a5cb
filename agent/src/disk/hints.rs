//! Root device hints (Ironic's `properties.root_device`) matched against the inventory's
//! disks, and IPA's default: the smallest disk of at least 4 GiB.

use ferrite_proto::inventory::Disk;
use serde_json::{Map, Value};

const GIB: u64 = 1 << 30;
/// IPA skips disks smaller than this when no hints are given.
pub const MIN_DISK_BYTES: u64 = 4 * GIB;

const STRING_HINTS: &[&str] = &[
    "name",
    "serial",
    "wwn",
    "wwn_with_extension",
    "wwn_vendor_extension",
    "vendor",
    "model",
    "hctl",
    "by_path",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HintError {
    #[error("unknown root device hint {0:?}; known hints: name, serial, wwn, wwn_with_extension, wwn_vendor_extension, vendor, model, size, rotational, hctl, by_path")]
    Unknown(String),
    #[error("root device hint {hint}: {why}")]
    Bad { hint: String, why: String },
    #[error("no disk matches the root device hints {hints}; disks seen: {seen}")]
    NoMatch { hints: String, seen: String },
    #[error("no disk of at least 4 GiB that is not USB, removable or a multipath path; give a root device hint to pick one; disks seen: {0}")]
    NoDisk(String),
}

/// Why a disk is not a default install disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    Usb,
    Removable,
    /// One path of the multipath device named (`/dev/dm-N`): never written on its own.
    MultipathPath(String),
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exclusion::Usb => f.write_str("a USB disk"),
            Exclusion::Removable => f.write_str("removable media"),
            Exclusion::MultipathPath(dm) => write!(f, "a path of multipath device {dm}"),
        }
    }
}

/// One comparison of a hint.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    StrEq(String),
    StrNe(String),
    Contains(String),
    Or(Vec<Expr>),
    Num(&'static str, f64),
    Bool(bool),
}

fn parse_expr(hint: &str, v: &Value) -> Result<Expr, HintError> {
    let bad = |why: &str| HintError::Bad {
        hint: hint.into(),
        why: why.into(),
    };
    if hint == "rotational" {
        return match v {
            Value::Bool(b) => Ok(Expr::Bool(*b)),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Expr::Bool(true)),
                "false" | "0" | "no" | "off" => Ok(Expr::Bool(false)),
                _ => Err(bad("expected a boolean")),
            },
            Value::Number(n) => Ok(Expr::Bool(n.as_f64() != Some(0.0))),
            _ => Err(bad("expected a boolean")),
        };
    }
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return Err(bad("expected a string or number")),
    };
    if text.starts_with("<or>") {
        let parts: Vec<Expr> = text
            .split("<or>")
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| parse_expr(hint, &Value::String(p.to_owned())))
            .collect::<Result<_, _>>()?;
        if parts.is_empty() {
            return Err(bad("<or> without alternatives"));
        }
        return Ok(Expr::Or(parts));
    }
    let (op, rest) = ["s==", "s!=", "<in>", "==", "!=", ">=", "<=", ">", "<"]
        .iter()
        .find_map(|op| text.strip_prefix(op).map(|r| (*op, r.trim().to_owned())))
        .unwrap_or(("", text.clone()));
    if hint == "size" {
        let op: &'static str = match op {
            "" | "==" => "==",
            "!=" => "!=",
            ">=" => ">=",
            "<=" => "<=",
            ">" => ">",
            "<" => "<",
            _ => return Err(bad("size takes ==, !=, >=, <=, >, < or <or>")),
        };
        let n: f64 = rest.parse().map_err(|_| bad("size is a number of GiB"))?;
        return Ok(Expr::Num(op, n));
    }
    let rest = rest.to_ascii_lowercase();
    match op {
        "" | "s==" | "==" => Ok(Expr::StrEq(rest)),
        "s!=" | "!=" => Ok(Expr::StrNe(rest)),
        "<in>" => Ok(Expr::Contains(rest)),
        _ => Err(bad("strings take s==, s!=, <in> or <or>")),
    }
}

/// Parsed `root_device` hints.
#[derive(Debug, Clone, PartialEq)]
pub struct Hints(Vec<(String, Expr)>);

impl Hints {
    pub fn parse(hints: &Map<String, Value>) -> Result<Hints, HintError> {
        let mut out = vec![];
        for (k, v) in hints {
            if !STRING_HINTS.contains(&k.as_str()) && k != "size" && k != "rotational" {
                return Err(HintError::Unknown(k.clone()));
            }
            out.push((k.clone(), parse_expr(k, v)?));
        }
        Ok(Hints(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, d: &Disk) -> bool {
        self.0.iter().all(|(k, e)| matches_one(k, e, d))
    }
}

fn disk_string(k: &str, d: &Disk) -> Option<String> {
    let v = match k {
        "name" => Some(d.name.clone()),
        "serial" => d.serial.clone(),
        "wwn" => d.wwn.clone(),
        "wwn_with_extension" => d.wwn_with_extension.clone(),
        "wwn_vendor_extension" => d.wwn_vendor_extension.clone(),
        "vendor" => d.vendor.clone(),
        "model" => d.model.clone(),
        "hctl" => d.hctl.clone(),
        "by_path" => d.by_path.clone(),
        _ => None,
    };
    v.map(|s| s.trim().to_ascii_lowercase())
}

fn matches_one(k: &str, e: &Expr, d: &Disk) -> bool {
    match e {
        Expr::Or(alts) => alts.iter().any(|a| matches_one(k, a, d)),
        Expr::Bool(b) => d.rotational == *b,
        Expr::Num(op, n) => {
            let gib = (d.size / GIB) as f64;
            match *op {
                "==" => gib == *n,
                "!=" => gib != *n,
                ">=" => gib >= *n,
                "<=" => gib <= *n,
                ">" => gib > *n,
                _ => gib < *n,
            }
        }
        Expr::StrEq(want) | Expr::StrNe(want) | Expr::Contains(want) => {
            let Some(have) = disk_string(k, d) else {
                return false;
            };
            // A name without /dev/ means the device under /dev, as in Ironic.
            let want = if k == "name" && !want.starts_with('/') {
                format!("/dev/{want}")
            } else {
                want.clone()
            };
            match e {
                Expr::StrEq(_) => have == want,
                Expr::StrNe(_) => have != want,
                _ => have.contains(&want),
            }
        }
    }
}

fn seen(disks: &[Disk], why: &[Option<Exclusion>]) -> String {
    if disks.is_empty() {
        return "none".into();
    }
    disks
        .iter()
        .zip(why)
        .map(|(d, why)| {
            let skipped = why
                .as_ref()
                .map(|w| format!(", skipped: {w}"))
                .unwrap_or_default();
            format!(
                "{} ({} bytes, serial {}{skipped})",
                d.name,
                d.size,
                d.serial.as_deref().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The install disk: the first disk matching `hints`, or without hints the smallest disk
/// of at least 4 GiB (IPA's rule), by size then name. `excluded` says why a disk is never
/// picked without hints (USB, removable, a multipath path); a multipath path is never
/// picked at all, as IPA does not even list them.
pub fn choose<'a>(
    disks: &'a [Disk],
    hints: Option<&Map<String, Value>>,
    excluded: impl Fn(&Disk) -> Option<Exclusion>,
) -> Result<&'a Disk, HintError> {
    let parsed = match hints {
        Some(h) if !h.is_empty() => Some(Hints::parse(h)?),
        _ => None,
    };
    let why: Vec<Option<Exclusion>> = disks.iter().map(&excluded).collect();
    let candidates = || disks.iter().zip(&why);
    match parsed {
        Some(h) => candidates()
            .filter(|(_, why)| !matches!(why, Some(Exclusion::MultipathPath(_))))
            .map(|(d, _)| d)
            .find(|d| h.matches(d))
            .ok_or_else(|| HintError::NoMatch {
                hints: Value::Object(hints.cloned().unwrap_or_default()).to_string(),
                seen: seen(disks, &why),
            }),
        None => candidates()
            .filter(|(d, why)| why.is_none() && d.size >= MIN_DISK_BYTES)
            .map(|(d, _)| d)
            .min_by(|a, b| a.size.cmp(&b.size).then_with(|| a.name.cmp(&b.name)))
            .ok_or_else(|| HintError::NoDisk(seen(disks, &why))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn disk(name: &str, gib: u64, serial: &str, rotational: bool) -> Disk {
        Disk {
            name: name.into(),
            model: Some("QEMU HARDDISK".into()),
            size: gib * GIB,
            rotational,
            wwn: Some(format!("0x5000c500{serial}")),
            serial: Some(serial.into()),
            vendor: Some("ATA".into()),
            wwn_with_extension: None,
            wwn_vendor_extension: None,
            hctl: Some("0:0:0:0".into()),
            by_path: Some(format!("/dev/disk/by-path/pci-0000:00:1f.2-ata-{serial}")),
            logical_sectors: Some(512),
            physical_sectors: Some(512),
            tran: Some("sata".into()),
        }
    }

    fn disks() -> Vec<Disk> {
        vec![
            disk("/dev/sda", 100, "AAA1", true),
            disk("/dev/sdb", 20, "BBB2", false),
            disk("/dev/sdc", 2, "CCC3", false),
        ]
    }

    fn pick(h: Value) -> Result<String, HintError> {
        let d = disks();
        choose(&d, h.as_object(), |_| None).map(|d| d.name.clone())
    }

    #[test]
    fn default_is_the_smallest_disk_of_at_least_4_gib() {
        assert_eq!(pick(json!({})).unwrap(), "/dev/sdb");
        let tiny = vec![disk("/dev/sdc", 2, "C", false)];
        assert!(matches!(
            choose(&tiny, None, |_| None),
            Err(HintError::NoDisk(_))
        ));
    }

    /// Issue 15 finding 2: USB sticks, removable media and multipath paths are never the
    /// default pick, whatever their size; a hint may still name a USB disk, never a path.
    #[test]
    fn default_skips_usb_removable_and_multipath_paths() {
        let mut usb = disk("/dev/sdd", 8, "USB1", false);
        usb.tran = Some("usb".into());
        let disks = vec![
            usb,
            disk("/dev/sde", 8, "CARD", false),
            disk("/dev/sdf", 10, "PATH1", false),
            disk("/dev/sdg", 10, "PATH2", false),
            disk("/dev/dm-0", 10, "MPATH", false),
            disk("/dev/sda", 100, "BIG", true),
        ];
        let why = |d: &Disk| match d.name.as_str() {
            "/dev/sdd" => Some(Exclusion::Usb),
            "/dev/sde" => Some(Exclusion::Removable),
            "/dev/sdf" | "/dev/sdg" => Some(Exclusion::MultipathPath("/dev/dm-0".into())),
            _ => None,
        };
        assert_eq!(choose(&disks, None, why).unwrap().name, "/dev/dm-0");
        let hint = json!({"serial": "USB1"});
        assert_eq!(
            choose(&disks, hint.as_object(), why).unwrap().name,
            "/dev/sdd"
        );
        let hint = json!({"serial": "PATH1"});
        let e = choose(&disks, hint.as_object(), why).unwrap_err();
        assert!(
            e.to_string()
                .contains("a path of multipath device /dev/dm-0"),
            "{e}"
        );
        let only_skipped = &disks[..4];
        let e = choose(only_skipped, None, why).unwrap_err();
        assert!(matches!(e, HintError::NoDisk(_)), "{e}");
        assert!(e.to_string().contains("skipped: a USB disk"), "{e}");
        // Equal sizes: the first by name, as IPA's guess_root_disk.
        let twins = vec![
            disk("/dev/sdb", 8, "B", false),
            disk("/dev/sda", 8, "A", false),
        ];
        assert_eq!(choose(&twins, None, |_| None).unwrap().name, "/dev/sda");
    }

    #[test]
    fn operators() {
        assert_eq!(pick(json!({"serial": "aaa1"})).unwrap(), "/dev/sda");
        assert_eq!(pick(json!({"name": "sdc"})).unwrap(), "/dev/sdc");
        assert_eq!(pick(json!({"name": "s== /dev/sdb"})).unwrap(), "/dev/sdb");
        assert_eq!(pick(json!({"size": 100})).unwrap(), "/dev/sda");
        assert_eq!(
            pick(json!({"size": ">= 10", "rotational": false})).unwrap(),
            "/dev/sdb"
        );
        assert_eq!(pick(json!({"size": "<= 5"})).unwrap(), "/dev/sdc");
        assert_eq!(
            pick(json!({"serial": "<or> ZZZ <or> CCC3"})).unwrap(),
            "/dev/sdc"
        );
        assert_eq!(
            pick(json!({"by_path": "<in> ata-BBB"})).unwrap(),
            "/dev/sdb"
        );
        assert_eq!(pick(json!({"wwn": "0x5000c500AAA1", "vendor": "ata", "model": "qemu harddisk", "hctl": "0:0:0:0"})).unwrap(), "/dev/sda");
        assert_eq!(pick(json!({"rotational": "true"})).unwrap(), "/dev/sda");
        assert_eq!(
            pick(json!({"serial": "s!= AAA1", "size": "> 10"})).unwrap(),
            "/dev/sdb"
        );
    }

    #[test]
    fn no_match_and_bad_hints_are_named() {
        let e = pick(json!({"serial": "NOPE"})).unwrap_err();
        assert!(
            e.to_string()
                .contains("no disk matches the root device hints"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("/dev/sda (107374182400 bytes, serial AAA1)"),
            "{e}"
        );
        assert_eq!(
            pick(json!({"colour": "red"})).unwrap_err(),
            HintError::Unknown("colour".into())
        );
        assert!(matches!(
            pick(json!({"size": "big"})),
            Err(HintError::Bad { .. })
        ));
        assert!(matches!(
            pick(json!({"model": ">= 3"})),
            Err(HintError::Bad { .. })
        ));
    }
}
