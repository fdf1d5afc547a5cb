//! Config drives built from Ironic's JSON dict, read back by real tools: mtools lists and
//! prints the files, blkid sees the `config-2` label cloud-init looks for, fsck.fat finds
//! nothing to repair.

use std::io::Read;
use std::process::Command;

use base64::Engine;
use serde_json::{json, Value};

fn image(dict: Value) -> tempfile::NamedTempFile {
    let text =
        ferrite_conductor::configdrive::build(dict.as_object().unwrap(), "uuid-1", Some("node-1"))
            .unwrap();
    let gz = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    let mut raw = vec![];
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), raw).unwrap();
    f
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run `cargo xtask deps`: mtools)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn mtools_and_blkid_read_the_config_drive() {
    let user_data = "#cloud-config\nhostname: web-1\n";
    let f = image(json!({
        "meta_data": {"hostname": "web-1", "public_keys": {"k": "ssh-ed25519 AAAA"}},
        "user_data": user_data,
        "network_data": {"links": [{"id": "eth0", "type": "phy"}], "networks": [], "services": []},
    }));
    let img = f.path().to_str().unwrap();
    let listing = run(Command::new("mdir").args(["-b", "-i", img, "::/openstack/latest"]));
    for name in ["meta_data.json", "user_data", "network_data.json"] {
        assert!(listing.contains(name), "{name} missing from:\n{listing}");
    }
    assert!(!listing.contains("vendor_data2.json"), "{listing}");
    let meta: Value = serde_json::from_str(&run(Command::new("mtype").args([
        "-i",
        img,
        "::/openstack/latest/meta_data.json",
    ])))
    .unwrap();
    assert_eq!(meta["uuid"], "uuid-1");
    assert_eq!(meta["name"], "node-1");
    assert_eq!(meta["hostname"], "web-1");
    let ud = run(Command::new("mtype").args(["-i", img, "::/openstack/latest/user_data"]));
    assert_eq!(ud, user_data);
    let label = run(Command::new("blkid").args(["-p", "-o", "value", "-s", "LABEL", img]));
    assert_eq!(label.trim(), "config-2");
    let fstype = run(Command::new("blkid").args(["-p", "-o", "value", "-s", "TYPE", img]));
    assert_eq!(fstype.trim(), "vfat");
    // fsck.fat -n checks without repairing and fails on any damage, such as `.`/`..`
    // not in the first two slots of a directory (fatfs's order, which the builder fixes).
    run(Command::new("fsck.fat").args(["-n", "-V", img]));
}

#[test]
fn bad_dicts_are_refused() {
    let e = ferrite_conductor::configdrive::build(
        json!({"meta_data": [1]}).as_object().unwrap(),
        "u",
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("meta_data"), "{e}");
}
