//! Field-by-field comparison with OpenStack Ironic: `fixtures/ironic/scenario.json` is
//! replayed against Ferrite and every answer is compared with the one Ironic 39 gave
//! (`fixtures/ironic/ironic-39.json`, recorded by `fixtures/ironic/record.py`). Values
//! that differ per run (uuids, timestamps, the base URL in links) are normalized; every
//! other difference must be listed, with its reason, in `known-differences.json`, and
//! every listed difference must still occur, so the list stays true.

mod common;

use std::collections::BTreeMap;

use common::{Api, Backend, Server};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ironic");

fn load(name: &str) -> Value {
    let path = format!("{FIXTURES}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// `s` with every uuid in it replaced by `<uuid>`.
fn without_uuids(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if rest.len() >= 36 && rest.is_char_boundary(36) && is_uuid(&rest[..36]) {
            out.push_str("<uuid>");
            rest = &rest[36..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn is_timestamp(s: &str) -> bool {
    // 2026-12-03T14:50:00.123456+00:00 and the like.
    let b = s.as_bytes();
    b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && s[..4].bytes().all(|c| c.is_ascii_digit())
}

/// The answer with run-specific values replaced; Ironic's error documents carry a JSON
/// string, which is parsed so its fields compare one by one.
fn normalize(v: &Value) -> Value {
    match v {
        Value::String(s) if is_timestamp(s) => Value::String("<timestamp>".into()),
        Value::String(s) if s.starts_with("http://") => {
            let rest = &s["http://".len()..];
            let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
            Value::String(format!("<base>{}", without_uuids(path)))
        }
        Value::String(s) if !s.starts_with('{') => Value::String(without_uuids(s)),
        Value::String(s) if s.starts_with('{') => match serde_json::from_str::<Value>(s) {
            Ok(inner @ Value::Object(_)) => normalize(&inner),
            _ => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let mut v = normalize(v);
                    // Ironic builds a driver's enabled interfaces from a set.
                    if let (true, Value::Array(a)) = (k.starts_with("enabled_"), &mut v) {
                        a.sort_by_key(|x| x.to_string());
                    }
                    (k.clone(), v)
                })
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// Every leaf where the two documents differ, as `path` → "ironic X, ferrite Y"; a field
/// only one side has is a difference at its own path.
fn diff(path: &str, ironic: &Value, ferrite: &Value, out: &mut BTreeMap<String, String>) {
    match (ironic, ferrite) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let p = format!("{path}/{k}");
                match b.get(k) {
                    Some(vb) => diff(&p, va, vb, out),
                    None => {
                        out.insert(p, format!("only Ironic has it: {va}"));
                    }
                }
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    out.insert(format!("{path}/{k}"), format!("only Ferrite has it: {vb}"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}/{i}"), va, vb, out);
            }
        }
        _ if ironic != ferrite => {
            out.insert(
                path.to_string(),
                format!("Ironic {ironic}, Ferrite {ferrite}"),
            );
        }
        _ => {}
    }
}

fn fill(text: &str, saved: &BTreeMap<String, String>) -> String {
    saved.iter().fold(text.to_string(), |t, (k, v)| {
        t.replace(&format!("{{{k}}}"), v)
    })
}

#[tokio::test]
async fn node_port_and_driver_documents_match_ironic_39() {
    let scenario = load("scenario.json");
    let recorded = load("ironic-39.json");
    let known = load("known-differences.json");
    let server = Server::start(Backend::Sqlite, |c| c.host = Some("fixture".into())).await;
    let api = Api::new(&server.url);

    let mut saved = BTreeMap::new();
    let mut answers = Vec::new();
    for step in scenario["steps"].as_array().unwrap() {
        let path = fill(step["path"].as_str().unwrap(), &saved);
        let body = step
            .get("body")
            .map(|b| serde_json::from_str(&fill(&b.to_string(), &saved)).unwrap());
        let versions: Vec<&str> = match step.get("versions") {
            Some(v) => v
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect(),
            None => vec![step["version"].as_str().unwrap()],
        };
        for version in versions {
            let method = step["method"].as_str().unwrap();
            let (status, doc) = api.call_v(version, method, &path, body.clone()).await;
            if let Some(key) = step.get("save") {
                let uuid = doc["uuid"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{path}: {doc}"));
                saved.insert(key.as_str().unwrap().to_string(), uuid.to_string());
            }
            answers.push((
                step["name"].as_str().unwrap().to_string(),
                version,
                status,
                doc,
            ));
        }
    }

    let recorded = recorded.as_array().unwrap();
    assert_eq!(
        recorded.len(),
        answers.len(),
        "re-record ironic-39.json: the scenario changed"
    );
    let mut found = BTreeMap::new();
    for (rec, (name, version, status, doc)) in recorded.iter().zip(&answers) {
        assert_eq!(rec["name"], name.as_str(), "re-record ironic-39.json");
        assert_eq!(rec["version"], *version, "re-record ironic-39.json");
        let at = format!("{name} @{version}");
        let mut d = BTreeMap::new();
        if rec["status"] != *status {
            d.insert(
                "status".to_string(),
                format!("Ironic {}, Ferrite {status}", rec["status"]),
            );
        }
        diff("", &normalize(&rec["body"]), &normalize(doc), &mut d);
        for (path, what) in d {
            found.insert(format!("{at} {path}"), what);
        }
    }

    // A known difference names a path (e.g. `/default_bios_interface`) and, optionally,
    // the steps it applies to; its reason is for readers.
    let known: Vec<(&str, Option<Vec<&str>>)> = known["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert!(
                k["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{k}: no reason"
            );
            let steps = k.get("steps").map(|s| {
                s.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap())
                    .collect()
            });
            (k["path"].as_str().unwrap(), steps)
        })
        .collect();
    let explained = |key: &str| -> Option<usize> {
        known.iter().position(|(path, steps)| {
            let (at, p) = key.rsplit_once(' ').unwrap();
            (p == *path || p.starts_with(&format!("{path}/")))
                && steps
                    .as_ref()
                    .is_none_or(|s| s.iter().any(|s| at.starts_with(&format!("{s} @"))))
        })
    };
    let mut used = vec![false; known.len()];
    let mut unexplained = Vec::new();
    for (key, what) in &found {
        match explained(key) {
            Some(i) => used[i] = true,
            None => unexplained.push(format!("{key}: {what}")),
        }
    }
    let stale: Vec<&str> = known
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|((p, _), _)| *p)
        .collect();
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "{} answers compared.\nDifferences from Ironic 39 not in known-differences.json:\n{}\n\
         Listed differences that no longer occur: {stale:?}",
        answers.len(),
        unexplained.join("\n")
    );
}
