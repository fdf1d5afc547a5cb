//! A small RFC 6902 JSON Patch applier with RFC 6901 pointers, limited to what Ironic
//! accepts: add, replace and remove. `copy` and `move` could carry a secret
//! (`driver_info/ipmi_password`) to a field shown unmasked, and `copy` could double a
//! document per operation; `test` is refused with them. Pure: no I/O, errors name the
//! operation and path.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub op: String,
    pub path: String,
    /// `Some(Value::Null)` for `"value": null` (clearing a field, as openstacksdk does);
    /// `None` only when the key is absent.
    #[serde(default, deserialize_with = "present")]
    pub value: Option<Value>,
    #[serde(default)]
    pub from: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// Splits a JSON pointer into unescaped tokens.
pub fn pointer(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(vec![]);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PatchError(format!(
            "Invalid patch path {path:?}: it must start with '/'"
        )));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent<'a>(
    doc: &'a mut Value,
    tokens: &[String],
    path: &str,
) -> Result<&'a mut Value, PatchError> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(o) => o.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| PatchError(format!("Patch path {path:?} does not exist")))?;
    }
    Ok(cur)
}

fn get(doc: &Value, tokens: &[String]) -> Option<Value> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(o) => o.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur.clone())
}

fn add(doc: &mut Value, tokens: &[String], value: Value, path: &str) -> Result<(), PatchError> {
    let Some((last, init)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent(doc, init, path)? {
        Value::Object(o) => {
            o.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| PatchError(format!("Patch path {path:?}: bad array index")))?
            };
            a.insert(i, value);
            Ok(())
        }
        _ => Err(PatchError(format!(
            "Patch path {path:?}: parent is not an object or array"
        ))),
    }
}

fn remove(doc: &mut Value, tokens: &[String], path: &str) -> Result<Value, PatchError> {
    let Some((last, init)) = tokens.split_last() else {
        return Err(PatchError("Cannot remove the whole document".into()));
    };
    let missing = || PatchError(format!("Cannot remove {path:?}: it does not exist"));
    match parent(doc, init, path)? {
        Value::Object(o) => o.remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(missing)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// Most bytes a patched node or port document may serialize to (a provisioning request's
/// config drive, stored in `instance_info`, is not counted). Each request body is at most
/// 1 MiB, but patches accumulate; Ironic's JSON columns are bounded by the database.
pub const MAX_DOCUMENT: usize = 256 * 1024;

/// The length of `v` serialized as compact JSON, without building the string.
pub fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Refuses a patched document larger than [`MAX_DOCUMENT`].
pub fn check_size(doc: &Value, what: &str) -> Result<(), PatchError> {
    let len = json_len(doc);
    if len > MAX_DOCUMENT {
        return Err(PatchError(format!(
            "The patched {what} would be {len} bytes of JSON; the limit is {MAX_DOCUMENT}: \
             keep large data elsewhere and store a URL"
        )));
    }
    Ok(())
}

/// Applies `ops` to `doc` in order; on error `doc` may be partly changed (callers work on
/// a copy).
pub fn apply(doc: &mut Value, ops: &[Operation]) -> Result<(), PatchError> {
    for op in ops {
        let tokens = pointer(&op.path)?;
        let supported = matches!(op.op.as_str(), "add" | "replace" | "remove");
        if supported && op.from.is_some() {
            return Err(PatchError(format!(
                "Patch operation {:?} on {:?} takes no \"from\" (only copy and move do, \
                 which are not supported)",
                op.op, op.path
            )));
        }
        let need_value = || {
            op.value.clone().ok_or_else(|| {
                PatchError(format!(
                    "Patch operation {:?} on {:?} needs a \"value\"",
                    op.op, op.path
                ))
            })
        };
        match op.op.as_str() {
            "add" => add(doc, &tokens, need_value()?, &op.path)?,
            "remove" => {
                remove(doc, &tokens, &op.path)?;
            }
            "replace" => {
                if get(doc, &tokens).is_none() {
                    return Err(PatchError(format!(
                        "Cannot replace {:?}: it does not exist (use \"add\")",
                        op.path
                    )));
                }
                if !tokens.is_empty() {
                    remove(doc, &tokens, &op.path)?;
                }
                add(doc, &tokens, need_value()?, &op.path)?;
            }
            other => {
                return Err(PatchError(format!(
                    "Patch operation {other:?} is not supported: use add, replace or remove"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_null_value_clears_a_field_and_a_missing_one_is_refused() {
        let mut doc = json!({"instance_uuid": "x", "extra": {}});
        let clear = ops(json!([{"op": "replace", "path": "/instance_uuid", "value": null}]));
        assert_eq!(clear[0].value, Some(Value::Null));
        apply(&mut doc, &clear).unwrap();
        assert_eq!(doc["instance_uuid"], Value::Null);
        let missing = ops(json!([{"op": "add", "path": "/extra/a"}]));
        assert_eq!(missing[0].value, None);
        assert!(apply(&mut doc, &missing).is_err());
    }

    fn ops(v: Value) -> Vec<Operation> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rfc6902_examples() {
        let mut d = json!({"foo": "bar"});
        apply(
            &mut d,
            &ops(json!([{"op": "add", "path": "/baz", "value": "qux"}])),
        )
        .unwrap();
        assert_eq!(d, json!({"foo": "bar", "baz": "qux"}));
        let mut d = json!({"foo": ["bar", "baz"]});
        apply(
            &mut d,
            &ops(json!([{"op": "add", "path": "/foo/1", "value": "qux"}])),
        )
        .unwrap();
        assert_eq!(d, json!({"foo": ["bar", "qux", "baz"]}));
        apply(&mut d, &ops(json!([{"op": "remove", "path": "/foo/0"}]))).unwrap();
        assert_eq!(d, json!({"foo": ["qux", "baz"]}));
        apply(
            &mut d,
            &ops(json!([{"op": "add", "path": "/foo/-", "value": 1}])),
        )
        .unwrap();
        assert_eq!(d, json!({"foo": ["qux", "baz", 1]}));
        let mut d = json!({"a~b": {"c/d": 1}});
        apply(
            &mut d,
            &ops(json!([{"op": "remove", "path": "/a~0b/c~1d"}])),
        )
        .unwrap();
        assert_eq!(d, json!({"a~b": {}}));
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            (json!([{"op": "remove", "path": "/nope"}]), "does not exist"),
            (
                json!([{"op": "replace", "path": "/nope", "value": 1}]),
                "use \"add\"",
            ),
            (
                json!([{"op": "add", "path": "nope", "value": 1}]),
                "must start with '/'",
            ),
            (json!([{"op": "add", "path": "/x"}]), "needs a \"value\""),
            (json!([{"op": "frob", "path": "/x"}]), "not supported"),
            (
                json!([{"op": "add", "path": "/a/b/c", "value": 2}]),
                "does not exist",
            ),
            (
                json!([{"op": "add", "from": "/a", "path": "/b", "value": 1}]),
                "takes no \"from\"",
            ),
        ];
        for (o, why) in cases {
            let mut d = json!({"a": 1});
            let e = apply(&mut d, &ops(o)).unwrap_err().to_string();
            assert!(e.contains(why), "{e} lacks {why}");
        }
    }

    /// Ironic accepts add, replace and remove only: copy and move could carry a secret to
    /// a field shown unmasked, and copy could double a document per operation.
    #[test]
    fn copy_move_and_test_are_refused_and_change_nothing() {
        for op in [
            json!({"op": "copy", "from": "/driver_info/ipmi_password", "path": "/extra/p"}),
            json!({"op": "move", "from": "/driver_info/ipmi_password", "path": "/extra/p"}),
            json!({"op": "test", "path": "/extra", "value": {}}),
        ] {
            let name = op["op"].as_str().unwrap().to_string();
            let mut d = json!({"driver_info": {"ipmi_password": "hunter2"}, "extra": {}});
            let before = d.clone();
            let e = apply(&mut d, &ops(json!([op]))).unwrap_err().to_string();
            assert!(e.contains(&format!("{name:?} is not supported")), "{e}");
            assert!(e.contains("use add, replace or remove"), "{e}");
            assert_eq!(d, before);
        }
    }

    #[test]
    fn document_size_is_bounded() {
        let mut d = json!({"extra": {}});
        let big = "x".repeat(MAX_DOCUMENT);
        apply(
            &mut d,
            &ops(json!([{"op": "add", "path": "/extra/big", "value": big}])),
        )
        .unwrap();
        let e = check_size(&d, "node").unwrap_err().to_string();
        assert!(e.contains("the limit is 262144"), "{e}");
        assert_eq!(json_len(&d), serde_json::to_vec(&d).unwrap().len());
        check_size(&json!({"extra": {"a": 1}}), "node").unwrap();
    }
}
