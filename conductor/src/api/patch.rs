//! A small RFC 6902 JSON Patch applier (add, remove, replace, move, copy, test) with
//! RFC 6901 pointers. Pure: no I/O, errors name the operation and path.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub op: String,
    pub path: String,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub from: Option<String>,
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

/// Applies `ops` to `doc` in order; on error `doc` may be partly changed (callers work on
/// a copy).
pub fn apply(doc: &mut Value, ops: &[Operation]) -> Result<(), PatchError> {
    for op in ops {
        let tokens = pointer(&op.path)?;
        let need_value = || {
            op.value.clone().ok_or_else(|| {
                PatchError(format!(
                    "Patch operation {:?} on {:?} needs a \"value\"",
                    op.op, op.path
                ))
            })
        };
        let need_from = || {
            op.from.as_deref().ok_or_else(|| {
                PatchError(format!(
                    "Patch operation {:?} on {:?} needs a \"from\"",
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
            "move" => {
                let from = need_from()?;
                let ft = pointer(from)?;
                if tokens.starts_with(&ft) && tokens.len() > ft.len() {
                    return Err(PatchError(format!(
                        "Cannot move {from:?} into its own child"
                    )));
                }
                let v = remove(doc, &ft, from)?;
                add(doc, &tokens, v, &op.path)?;
            }
            "copy" => {
                let from = need_from()?;
                let v = get(doc, &pointer(from)?).ok_or_else(|| {
                    PatchError(format!("Cannot copy {from:?}: it does not exist"))
                })?;
                add(doc, &tokens, v, &op.path)?;
            }
            "test" => {
                if get(doc, &tokens) != Some(need_value()?) {
                    return Err(PatchError(format!("Patch test failed at {:?}", op.path)));
                }
            }
            other => {
                return Err(PatchError(format!(
                "Unknown patch operation {other:?}: use add, remove, replace, move, copy or test"
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
        let mut d = json!({"a": {"b": 1}, "c": {}});
        apply(
            &mut d,
            &ops(json!([{"op": "move", "from": "/a/b", "path": "/c/d"},
                                    {"op": "copy", "from": "/c/d", "path": "/e"},
                                    {"op": "test", "path": "/e", "value": 1},
                                    {"op": "replace", "path": "/e", "value": 2}])),
        )
        .unwrap();
        assert_eq!(d, json!({"a": {}, "c": {"d": 1}, "e": 2}));
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
            (
                json!([{"op": "frob", "path": "/x"}]),
                "Unknown patch operation",
            ),
            (
                json!([{"op": "test", "path": "/a", "value": 2}]),
                "test failed",
            ),
            (
                json!([{"op": "add", "path": "/a/b/c", "value": 2}]),
                "does not exist",
            ),
            (
                json!([{"op": "move", "from": "/a", "path": "/a/x"}]),
                "own child",
            ),
        ];
        for (o, why) in cases {
            let mut d = json!({"a": 1});
            let e = apply(&mut d, &ops(o)).unwrap_err().to_string();
            assert!(e.contains(why), "{e} lacks {why}");
        }
    }
}
