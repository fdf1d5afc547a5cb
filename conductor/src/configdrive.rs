//! Config drives from a JSON dict (Ironic's `configdrive` object: `meta_data`,
//! `user_data`, `network_data`, `vendor_data`): an OpenStack config-2 tree
//! (`openstack/latest/meta_data.json`, `user_data`, `network_data.json`,
//! `vendor_data2.json`) on a VFAT filesystem labelled `config-2`, gzipped and base64
//! encoded — the form the agent writes (CONTRACT.md §5). Pure: bytes in, text out. The
//! filesystem is built by `ferrite_image::disk::vfat_build`, the builder the agent uses
//! for 4Kn disks (with its fix of fatfs's `.`/`..` slot order that `fsck.fat` needs).

use std::io::Write;

use base64::Engine;
use ferrite_image::disk::configdrive::MAX_BYTES;
use ferrite_image::disk::iso9660::Entry;
use ferrite_image::disk::vfat_build::{self, VfatError};
use serde_json::{json, Map, Value};

use crate::model::Obj;

/// The largest tree accepted (the agent's config drive limit).
pub const MAX_CONTENT: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    #[error("configdrive has an unknown key {0:?}: use meta_data, user_data, network_data and vendor_data")]
    UnknownKey(String),
    #[error("configdrive {key} must be {want}")]
    Type {
        key: &'static str,
        want: &'static str,
    },
    #[error("the config drive content is {0} bytes, too much for a config drive of at most 64 MiB; pass a URL instead")]
    TooLarge(usize),
    #[error("building the config drive's VFAT image failed")]
    Image(#[source] VfatError),
    #[error("compressing the config drive failed")]
    Gzip(#[source] std::io::Error),
}

/// The files of the config-2 tree, as (path under `openstack/latest/`, bytes).
pub fn files(
    dict: &Obj,
    uuid: &str,
    name: Option<&str>,
) -> Result<Vec<(&'static str, Vec<u8>)>, ConfigDriveError> {
    if let Some(k) = dict
        .keys()
        .find(|k| !["meta_data", "user_data", "network_data", "vendor_data"].contains(&k.as_str()))
    {
        return Err(ConfigDriveError::UnknownKey(k.clone()));
    }
    let object = |key: &'static str| -> Result<Option<Map<String, Value>>, ConfigDriveError> {
        match dict.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o.clone())),
            Some(_) => Err(ConfigDriveError::Type {
                key,
                want: "a JSON object",
            }),
        }
    };
    // As Ironic does: the node's UUID (and name) unless the caller set them.
    let mut meta = object("meta_data")?.unwrap_or_default();
    meta.entry("uuid").or_insert_with(|| json!(uuid));
    if let Some(n) = name {
        meta.entry("name").or_insert_with(|| json!(n));
    }
    let to_bytes = |v: &Map<String, Value>| serde_json::to_vec(v).unwrap_or_default();
    let mut out = vec![("meta_data.json", to_bytes(&meta))];
    match dict.get("user_data") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.push(("user_data", s.as_bytes().to_vec())),
        Some(v @ (Value::Object(_) | Value::Array(_))) => {
            out.push(("user_data", serde_json::to_vec(v).unwrap_or_default()))
        }
        Some(_) => {
            return Err(ConfigDriveError::Type {
                key: "user_data",
                want: "a string, a JSON object or a list",
            })
        }
    }
    if let Some(n) = object("network_data")? {
        out.push(("network_data.json", to_bytes(&n)));
    }
    if let Some(v) = object("vendor_data")? {
        out.push(("vendor_data2.json", to_bytes(&v)));
    }
    let total: usize = out.iter().map(|(_, b)| b.len()).sum();
    if total > MAX_CONTENT {
        return Err(ConfigDriveError::TooLarge(total));
    }
    Ok(out)
}

/// The raw VFAT image (512-byte sectors) holding `files` under `openstack/latest/`, at
/// most the agent's config drive limit.
pub fn vfat_image(files: &[(&str, Vec<u8>)]) -> Result<Vec<u8>, ConfigDriveError> {
    let dir = |path: &str| Entry {
        path: path.into(),
        data: None,
    };
    let mut entries = vec![dir("openstack"), dir("openstack/latest")];
    entries.extend(files.iter().map(|(name, bytes)| Entry {
        path: format!("openstack/latest/{name}"),
        data: Some(bytes.clone()),
    }));
    let content = files.iter().map(|(_, b)| b.len()).sum();
    vfat_build::build("config-2", &entries, 512, MAX_BYTES).map_err(|e| match e {
        VfatError::TooLarge(..) => ConfigDriveError::TooLarge(content),
        e => ConfigDriveError::Image(e),
    })
}

/// The config drive for `dict` on node `uuid`, as base64 of the gzipped image.
pub fn build(dict: &Obj, uuid: &str, name: Option<&str>) -> Result<String, ConfigDriveError> {
    let image = vfat_image(&files(dict, uuid, name)?)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&image).map_err(ConfigDriveError::Gzip)?;
    let gz = gz.finish().map_err(ConfigDriveError::Gzip)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(gz))
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::*;

    fn obj(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn files_follow_ironic() {
        let f = files(
            &obj(
                json!({"meta_data": {"hostname": "h"}, "user_data": "#cloud-config\n",
                        "network_data": {"links": []}, "vendor_data": {"a": 1}}),
            ),
            "u-1",
            Some("n"),
        )
        .unwrap();
        let names: Vec<&str> = f.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "meta_data.json",
                "user_data",
                "network_data.json",
                "vendor_data2.json"
            ]
        );
        let meta: Value = serde_json::from_slice(&f[0].1).unwrap();
        assert_eq!(meta, json!({"hostname": "h", "uuid": "u-1", "name": "n"}));
        assert_eq!(f[1].1, b"#cloud-config\n");
        // A caller's uuid wins; a dict user_data becomes JSON; absent parts are left out.
        let f = files(
            &obj(json!({"meta_data": {"uuid": "mine"}, "user_data": {"k": 1}})),
            "u",
            None,
        )
        .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&f[0].1).unwrap()["uuid"],
            "mine"
        );
        assert_eq!(f[1].1, br#"{"k":1}"#);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn bad_dicts_say_what_is_wrong() {
        let e = files(&obj(json!({"metadata": {}})), "u", None).unwrap_err();
        assert!(e.to_string().contains("\"metadata\""), "{e}");
        let e = files(&obj(json!({"meta_data": "x"})), "u", None).unwrap_err();
        assert!(
            e.to_string().contains("meta_data must be a JSON object"),
            "{e}"
        );
        let e = files(&obj(json!({"user_data": 5})), "u", None).unwrap_err();
        assert!(e.to_string().contains("user_data"), "{e}");
        let big = "x".repeat(MAX_CONTENT + 1);
        let e = files(&obj(json!({"user_data": big})), "u", None).unwrap_err();
        assert!(matches!(e, ConfigDriveError::TooLarge(_)), "{e}");
    }

    #[test]
    fn the_image_reads_back() {
        let files = vec![
            ("meta_data.json", br#"{"uuid":"u"}"#.to_vec()),
            ("user_data", vec![7u8; 3 << 20]),
        ];
        let img = vfat_image(&files).unwrap();
        assert_eq!(img.len() % (1 << 20), 0);
        assert_eq!(u16::from_le_bytes([img[11], img[12]]), 512);
        let mut c = Cursor::new(img);
        let fs = fatfs::FileSystem::new(&mut c, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label(), "config-2");
        let dir = fs.root_dir().open_dir("openstack/latest").unwrap();
        for (name, want) in &files {
            let mut got = vec![];
            dir.open_file(name).unwrap().read_to_end(&mut got).unwrap();
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn build_is_base64_gzip() {
        let text = build(&obj(json!({"user_data": "hi"})), "u", None).unwrap();
        let gz = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let mut img = vec![];
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut img)
            .unwrap();
        assert_eq!(img.len(), 8 << 20, "the builder's smallest image");
        assert!(gz.len() < 64 * 1024, "zeros compress: {}", gz.len());
    }
}
