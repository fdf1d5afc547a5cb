//! The Python semantics inspection rules are written in: `str.format` templates over
//! JSON data (`{inventory[cpu][count]}`, `{node.driver}`), `str()`/`repr()` of values,
//! and the comparisons and truth tests of Ironic's operators.

use serde_json::Value;

use crate::model::Obj;

/// Python's `str()` of a JSON value (`repr` inside containers).
pub(super) fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

pub(super) fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A `str.format` field (`node.properties[cpu_arch]`, `inventory[disks][0][size]`)
/// looked up in `ctx`; `None` when a name, key or index is missing.
pub(super) fn lookup<'a>(field: &str, ctx: &'a Obj) -> Option<&'a Value> {
    let end = field.find(['.', '[']).unwrap_or(field.len());
    let mut cur = ctx.get(&field[..end])?;
    let mut rest = &field[end..];
    while !rest.is_empty() {
        let key;
        if let Some(r) = rest.strip_prefix('.') {
            let e = r.find(['.', '[']).unwrap_or(r.len());
            key = &r[..e];
            rest = &r[e..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let e = r.find(']')?;
            key = &r[..e];
            rest = &r[e + 1..];
        } else {
            return None;
        }
        cur = match cur {
            Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
            Value::Object(o) => o.get(key)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Python's `template.format(**ctx)`: `Ok(None)` when a field is missing (Ironic then
/// keeps the template, or gives `None` to `is-empty`).
pub(super) fn format(template: &str, ctx: &Obj) -> Option<String> {
    let mut out = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let close = template[i..].find('}')? + i;
                let field = &template[i + 1..close];
                out.push_str(&py_str(lookup(field, ctx)?));
                while chars.peek().is_some_and(|p| p.0 <= close) {
                    chars.next();
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// Ironic's `interpolate_variables`: strings formatted, containers recursed.
pub(super) fn interpolate(v: &Value, ctx: &Obj, op: &str) -> Value {
    match v {
        Value::String(s) => match format(s, ctx) {
            Some(f) => Value::String(f),
            None if op == "is-empty" => Value::Null,
            None => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| interpolate(x, ctx, op)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), interpolate(x, ctx, op)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Python's `a < b` for the JSON types: numbers and strings compare among themselves.
pub(super) fn py_lt(a: &Value, b: &Value) -> Result<bool, super::RuleFailure> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x < y),
        _ => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => Ok(x < y),
            _ => Err(super::RuleFailure(format!(
                "'<' not supported between {} and {}",
                py_repr(a),
                py_repr(b)
            ))),
        },
    }
}

pub(super) fn py_eq(a: &Value, b: &Value) -> bool {
    match (as_f64(a), as_f64(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

pub(super) fn truthy(v: &Value, yes: bool) -> bool {
    match v {
        Value::Bool(b) => *b == yes,
        Value::Number(_) => (as_f64(v) != Some(0.0)) == yes,
        Value::String(s) => {
            let s = s.to_lowercase();
            if yes {
                s == "yes" || s == "true"
            } else {
                s == "no" || s == "false"
            }
        }
        Value::Null => !yes,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn format_follows_python() {
        let ctx = obj(
            json!({"inventory": json!({"memory": {"physical_mb": 65536}, "interfaces": [{"name": "eth0"}]}), "node": {"driver": "x", "n": null}}),
        );
        assert_eq!(
            format("{inventory[memory][physical_mb]}", &ctx).as_deref(),
            Some("65536")
        );
        assert_eq!(
            format("{node.driver}-{{x}}", &ctx).as_deref(),
            Some("x-{x}")
        );
        assert_eq!(
            format("{inventory[interfaces][0][name]}", &ctx).as_deref(),
            Some("eth0")
        );
        assert_eq!(format("{node.n}", &ctx).as_deref(), Some("None"));
        assert_eq!(format("{inventory[nope]}", &ctx), None);
        assert_eq!(
            py_repr(&json!({"a": [1, true, "b"]})),
            "{'a': [1, True, 'b']}"
        );
    }
}
