//! Inspection rules (API 1.96) evaluated on a node's inspection data, after Ironic's
//! `common/inspection_rules`: rules of the `main` phase by priority (highest first); a
//! rule whose conditions all hold runs its actions on the node. Arguments are Python
//! `str.format` templates over `node`, `inventory`, `plugin_data` (and `item` in loops),
//! so interpolated values are strings, as in Ironic. Pure: the caller loads the rules and
//! saves the node.
//!
//! Not evaluated (the rule then fails the inspection, naming the action): the
//! plugin-data and port actions and `api-call`. Regular expressions (`matches`,
//! `contains`) are Rust's `regex` syntax, close to Python's `re` but without
//! look-around and back-references.

mod python;

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::model::{Node, Obj, EXTENDED_FIELDS};
use python::{interpolate, py_eq, py_lt, py_repr, py_str, truthy};

/// Why applying the rules stopped: a `fail` action, or a rule that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleFailure(pub String);

type R<T> = Result<T, RuleFailure>;

fn fail<T>(msg: impl Into<String>) -> R<T> {
    Err(RuleFailure(msg.into()))
}

/// The argument names of an operator or action: (required, optional, formatted).
fn signature(
    op: &str,
) -> Option<(
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
)> {
    Some(match op {
        "eq" | "lt" | "gt" => (&["values"], &["force_strings"], &["values"]),
        "is-empty" | "is-none" | "is-true" | "is-false" => (&["value"], &[], &["value"]),
        "one-of" => (&["value"], &["values"], &["value"]),
        "in-net" => (&["address", "subnet"], &[], &["address", "subnet"]),
        "matches" | "contains" => (&["value", "regex"], &[], &["value"]),
        "log" => (&["msg"], &["level"], &["msg"]),
        "fail" => (&["msg"], &[], &[]),
        "set-attribute" => (&["path", "value"], &[], &["value"]),
        "extend-attribute" => (&["path", "value"], &["unique"], &["value"]),
        "del-attribute" => (&["path"], &[], &[]),
        "add-trait" | "remove-trait" => (&["name"], &[], &[]),
        "set-capability" => (&["name", "value"], &[], &["value"]),
        "unset-capability" => (&["name"], &[], &[]),
        _ => return None,
    })
}

/// The operation's arguments by name (a list is positional, Ironic's deprecated form),
/// interpolated where Ironic formats them.
fn args(op: &str, given: &Value, ctx: &Obj, in_loop: bool) -> R<Map<String, Value>> {
    let Some((required, optional, formatted)) = signature(op) else {
        return fail(format!(
            "inspection rule operation {op:?} is not evaluated by Ferrite"
        ));
    };
    let mut named = match given {
        Value::Object(o) => o.clone(),
        Value::Array(a) => {
            if a.len() < required.len() {
                return fail(format!(
                    "Not enough arguments for {op}: missing {}",
                    required[a.len()..].join(", ")
                ));
            }
            required
                .iter()
                .chain(optional.iter())
                .zip(a.iter())
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        }
        _ => return fail(format!("args of {op} must be a list or an object")),
    };
    if let Some(k) = required.iter().find(|k| !named.contains_key(**k)) {
        return fail(format!("{op}: missing required argument {k}"));
    }
    for (k, v) in named.iter_mut() {
        if in_loop || formatted.contains(&k.as_str()) {
            *v = interpolate(v, ctx, op);
        }
    }
    Ok(named)
}

fn in_net(address: &Value, subnet: &Value) -> R<bool> {
    let addr: IpAddr = py_str(address)
        .parse()
        .or_else(|_| fail(format!("invalid IP address {}", py_repr(address))))?;
    let net = py_str(subnet);
    let (base, len) = net.split_once('/').unwrap_or((&net, ""));
    let base: IpAddr = base
        .parse()
        .or_else(|_| fail(format!("invalid value: {net}")))?;
    let bits = |ip: IpAddr| -> (u128, u32) {
        match ip {
            IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
            IpAddr::V6(v) => (u128::from(v), 128),
        }
    };
    let ((a, width), (b, width_b)) = (bits(addr), bits(base));
    if width != width_b {
        return Ok(false);
    }
    let len: u32 = if len.is_empty() {
        width
    } else {
        len.parse()
            .ok()
            .filter(|l| *l <= width)
            .ok_or_else(|| RuleFailure(format!("invalid value: {net}")))?
    };
    let shift = width - len;
    Ok(len == 0 || (a >> shift) == (b >> shift))
}

/// Python's `re.match(regex + '$', str(value))` (`matches`) or `re.search(regex,
/// str(value))` (`contains`), as Ironic's operators call them.
fn regex_check(op: &str, value: &Value, regex: &Value) -> R<bool> {
    use regex_automata::{meta::Regex, Anchored, Input};
    let mut pattern = py_str(regex);
    if op == "matches" && !pattern.ends_with('$') {
        pattern.push('$');
    }
    let re = Regex::new(&pattern)
        .or_else(|e| fail(format!("invalid regular expression {pattern:?}: {e}")))?;
    let hay = py_str(value);
    let input = Input::new(&hay);
    Ok(if op == "matches" {
        re.is_match(input.anchored(Anchored::Yes))
    } else {
        re.is_match(input)
    })
}

fn check(op: &str, a: &Map<String, Value>) -> R<bool> {
    let v = |k: &str| a.get(k).cloned().unwrap_or(Value::Null);
    Ok(match op {
        "eq" | "lt" | "gt" => {
            let Value::Array(mut values) = v("values") else {
                return fail(format!(
                    "Failed to check condition: '{op}': expected a list for 'values', got {}",
                    py_repr(&v("values"))
                ));
            };
            if truthy(&v("force_strings"), true) {
                values = values.iter().map(|x| json!(py_str(x))).collect();
            }
            let mut ok = true;
            for w in values.windows(2) {
                ok &= match op {
                    "eq" => py_eq(&w[0], &w[1]),
                    "lt" => py_lt(&w[0], &w[1])?,
                    _ => py_lt(&w[1], &w[0])?,
                };
            }
            ok
        }
        "is-empty" => ["", "None", "[]", "{}"].contains(&py_str(&v("value")).as_str()),
        "is-none" => v("value").is_null(),
        "is-true" => truthy(&v("value"), true),
        "is-false" => truthy(&v("value"), false),
        "one-of" => match v("values") {
            Value::Array(vs) => vs.iter().any(|x| py_eq(x, &v("value"))),
            _ => false,
        },
        "in-net" => in_net(&v("address"), &v("subnet"))?,
        "matches" | "contains" => regex_check(op, &v("value"), &v("regex"))?,
        _ => {
            return fail(format!(
                "inspection rule operator {op:?} is not evaluated by Ferrite"
            ))
        }
    })
}

/// Runs `f` once, or once per `loop` item (with `item` in the context).
fn each(operation: &Obj, ctx: &Obj, mut f: impl FnMut(&Obj, bool) -> R<bool>) -> R<Vec<bool>> {
    match operation.get("loop") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out = vec![];
            for item in items {
                let mut c = ctx.clone();
                c.insert("item".into(), item.clone());
                out.push(f(&c, true)?);
            }
            Ok(out)
        }
        Some(item @ Value::Object(o)) if !o.is_empty() => {
            let mut c = ctx.clone();
            c.insert("item".into(), item.clone());
            Ok(vec![f(&c, true)?])
        }
        _ => Ok(vec![f(ctx, false)?]),
    }
}

fn condition_holds(cond: &Obj, ctx: &Obj) -> R<bool> {
    let raw = cond.get("op").and_then(Value::as_str).unwrap_or("").trim();
    let (op, inverted) = match raw.strip_prefix('!') {
        Some(o) => (o.trim(), true),
        None => (raw, false),
    };
    let given = cond.get("args").cloned().unwrap_or(json!({}));
    let results = each(cond, ctx, |c, in_loop| {
        let mut a = args(op, &given, c, in_loop)?;
        if in_loop && a.contains_key("values") {
            a.insert("force_strings".into(), json!(true));
        }
        Ok(check(op, &a)? != inverted)
    })?;
    if results.len() == 1 && !cond.contains_key("loop") {
        return Ok(results[0]);
    }
    Ok(
        match cond
            .get("multiple")
            .and_then(Value::as_str)
            .unwrap_or("any")
        {
            "all" => results.iter().all(|r| *r),
            // Ironic's `first` answers true at the first item that holds: `any`, in effect.
            "first" => results.iter().any(|r| *r),
            "last" => results.last().copied().unwrap_or(false),
            _ => results.iter().any(|r| *r),
        },
    )
}

/// The path parts of `/properties/capabilities` (Ironic's `normalize_path`).
fn path_parts(path: &Value) -> R<Vec<String>> {
    let p = py_str(path);
    let parts: Vec<String> = p
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if parts.is_empty() {
        return fail(format!("invalid attribute path {p:?}"));
    }
    Ok(parts)
}

/// The node's JSON attribute `name`, where rules may change it: its documents, and its
/// string fields.
fn attr<'a>(node: &'a mut Node, name: &str) -> R<&'a mut Obj> {
    Ok(match name {
        "properties" => &mut node.properties,
        "extra" => &mut node.extra,
        "driver_info" => &mut node.driver_info,
        "instance_info" => &mut node.instance_info,
        _ => return fail(format!("inspection rules cannot change the node's {name}")),
    })
}

fn set_top(node: &mut Node, name: &str, value: Option<Value>) -> R<()> {
    let text = |v: &Option<Value>| v.as_ref().map(py_str);
    match name {
        "resource_class" => node.resource_class = text(&value),
        "name" => node.name = text(&value),
        n if EXTENDED_FIELDS
            .iter()
            .any(|f| f.name == n && f.ty == crate::model::ExtTy::Str) =>
        {
            match value {
                Some(v) => {
                    node.extended.insert(n.into(), json!(py_str(&v)));
                }
                None => {
                    node.extended.remove(n);
                }
            }
        }
        "properties" | "extra" | "driver_info" | "instance_info" => {
            let o = match value {
                Some(Value::Object(o)) => o,
                None => Obj::new(),
                Some(v) => return fail(format!("{name} must be an object, not {}", py_repr(&v))),
            };
            *attr(node, name)? = o;
        }
        _ => return fail(format!("inspection rules cannot change the node's {name}")),
    }
    Ok(())
}

fn capabilities(node: &Node) -> Vec<(String, String)> {
    match node.properties.get("capabilities") {
        Some(Value::String(s)) => s
            .split(',')
            .filter_map(|kv| kv.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect(),
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), py_str(v))).collect(),
        _ => vec![],
    }
}

fn store_capabilities(node: &mut Node, caps: Vec<(String, String)>) {
    let s: Vec<String> = caps.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    node.properties
        .insert("capabilities".into(), json!(s.join(",")));
}

fn act(op: &str, a: &Map<String, Value>, node: &mut Node) -> R<()> {
    let v = |k: &str| a.get(k).cloned().unwrap_or(Value::Null);
    match op {
        "log" => tracing::info!(node = %node.uuid, "inspection rule: {}", py_str(&v("msg"))),
        "fail" => return fail(py_str(&v("msg"))),
        "set-attribute" | "extend-attribute" | "del-attribute" => {
            let parts = path_parts(&v("path"))?;
            let (first, rest) = parts.split_first().unwrap_or((&parts[0], &[]));
            let Some((last, middle)) = rest.split_last() else {
                return match op {
                    "set-attribute" => set_top(node, first, Some(v("value"))),
                    "del-attribute" => set_top(node, first, None),
                    _ => fail(format!("Cannot extend non-list attribute {first}")),
                };
            };
            let mut cur = attr(node, first)?;
            for p in middle {
                let next = cur.entry(p.clone()).or_insert_with(|| json!({}));
                cur = next.as_object_mut().ok_or_else(|| {
                    RuleFailure(format!("{p} in {} is not an object", py_str(&v("path"))))
                })?;
            }
            match op {
                "set-attribute" => {
                    cur.insert(last.clone(), v("value"));
                }
                "del-attribute" => {
                    if cur.remove(last).is_none() {
                        return fail(format!(
                            "Failed to delete attribute at {}: not set",
                            py_str(&v("path"))
                        ));
                    }
                }
                _ => {
                    let list = cur.entry(last.clone()).or_insert_with(|| json!([]));
                    let Value::Array(list) = list else {
                        return fail(format!(
                            "Cannot extend non-list attribute {}",
                            py_str(&v("path"))
                        ));
                    };
                    let value = v("value");
                    if !truthy(&v("unique"), true) || !list.contains(&value) {
                        list.push(value);
                    }
                }
            }
        }
        "add-trait" | "remove-trait" => {
            let name = py_str(&v("name"));
            let mut traits: Vec<Value> = node.ext("traits").as_array().cloned().unwrap_or_default();
            if op == "add-trait" {
                if !crate::api::is_trait(&name) {
                    return fail(format!("Failed to add new trait {name}: not a trait name"));
                }
                if !traits.contains(&json!(name)) {
                    traits.push(json!(name));
                }
            } else {
                traits.retain(|t| t != &json!(name));
            }
            node.extended.insert("traits".into(), Value::Array(traits));
        }
        "set-capability" | "unset-capability" => {
            let name = py_str(&v("name"));
            let mut caps = capabilities(node);
            caps.retain(|(k, _)| *k != name);
            if op == "set-capability" {
                caps.push((name, py_str(&v("value"))));
            }
            store_capabilities(node, caps);
        }
        _ => {
            return fail(format!(
                "inspection rule action {op:?} is not evaluated by Ferrite"
            ))
        }
    }
    Ok(())
}

/// Applies the `main`-phase rules (API documents of `inspection_rules`) to `node` with
/// its inspection data. Stops at the first failure (a `fail` action, or a rule Ferrite
/// cannot evaluate), naming the rule.
pub fn apply(rules: &[Obj], node: &mut Node, inventory: &Value, plugin_data: &Value) -> R<()> {
    let mut rules: Vec<&Obj> = rules
        .iter()
        .filter(|r| r.get("phase").and_then(Value::as_str).unwrap_or("main") == "main")
        .collect();
    rules
        .sort_by_key(|r| std::cmp::Reverse(r.get("priority").and_then(Value::as_i64).unwrap_or(0)));
    for rule in rules {
        let uuid = rule.get("uuid").and_then(Value::as_str).unwrap_or("?");
        let named = |e: RuleFailure| RuleFailure(format!("Inspection rule {uuid}: {e}"));
        let mut ctx = Obj::new();
        ctx.insert("node".into(), Value::Object(node.to_api("")));
        ctx.insert("inventory".into(), inventory.clone());
        ctx.insert("plugin_data".into(), plugin_data.clone());
        let conditions = rule
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut holds = true;
        for c in conditions.iter().filter_map(Value::as_object) {
            if !condition_holds(c, &ctx).map_err(named)? {
                holds = false;
                break;
            }
        }
        if !holds {
            continue;
        }
        let actions = rule
            .get("actions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for a in actions.iter().filter_map(Value::as_object) {
            let op = a.get("op").and_then(Value::as_str).unwrap_or("");
            let given = a.get("args").cloned().unwrap_or(json!({}));
            each(a, &ctx, |c, in_loop| {
                let parsed = args(op, &given, c, in_loop)?;
                act(op, &parsed, node)?;
                Ok(true)
            })
            .map_err(named)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    fn node() -> Node {
        let mut n = crate::api::nodes::blank_node();
        n.uuid = "n1".into();
        n.driver = "fake-hardware".into();
        n.properties = obj(json!({"cpu_arch": "x86_64", "capabilities": "boot_mode:bios"}));
        n
    }

    fn inventory() -> Value {
        json!({"memory": {"physical_mb": 65536}, "cpu": {"count": 8},
               "interfaces": [{"name": "eth0", "ipv4_address": "10.0.2.15"}],
               "system_vendor": {"manufacturer": "Dell Inc."}})
    }

    fn rule(v: Value) -> Obj {
        let mut r = obj(json!({"uuid": "r", "priority": 0, "phase": "main", "conditions": []}));
        r.extend(obj(v));
        r
    }

    #[test]
    fn conditions_and_actions_change_the_node() {
        let rules = [
            rule(json!({"priority": 10,
                "conditions": [
                    {"op": "eq", "args": {"values": ["{inventory[cpu][count]}", "8"]}},
                    {"op": "!is-empty", "args": ["{inventory[system_vendor][manufacturer]}"]},
                    {"op": "in-net", "args": {"address": "{inventory[interfaces][0][ipv4_address]}",
                                              "subnet": "10.0.2.0/24"}}],
                "actions": [
                    {"op": "set-attribute", "args": {"path": "/properties/vendor",
                                                     "value": "{inventory[system_vendor][manufacturer]}"}},
                    {"op": "add-trait", "args": ["CUSTOM_BIG"]},
                    {"op": "set-capability", "args": {"name": "boot_mode", "value": "uefi"}},
                    {"op": "extend-attribute", "args": {"path": "/extra/tags", "value": "a", "unique": true}},
                    {"op": "extend-attribute", "args": {"path": "/extra/tags", "value": "a", "unique": true}},
                    {"op": "set-attribute", "args": {"path": "/extra/{item}", "value": 1},
                     "loop": ["x", "y"]}]})),
            // Not matching: nothing happens.
            rule(
                json!({"conditions": [{"op": "is-true", "args": ["{node.maintenance}"]}],
                        "actions": [{"op": "fail", "args": ["never"]}]}),
            ),
        ];
        let mut n = node();
        apply(&rules, &mut n, &inventory(), &json!({})).unwrap();
        assert_eq!(n.properties["vendor"], "Dell Inc.");
        assert_eq!(n.properties["capabilities"], "boot_mode:uefi");
        assert_eq!(n.ext("traits"), json!(["CUSTOM_BIG"]));
        assert_eq!(n.extra["tags"], json!(["a"]));
        assert_eq!((&n.extra["x"], &n.extra["y"]), (&json!(1), &json!(1)));
    }

    #[test]
    fn failures_name_the_rule() {
        let mut n = node();
        let fails = [rule(
            json!({"actions": [{"op": "fail", "args": {"msg": "no {node.driver}"}}]}),
        )];
        // `msg` of `fail` is not formatted (Ironic's FORMATTED_ARGS).
        assert_eq!(
            apply(&fails, &mut n, &inventory(), &json!({}))
                .unwrap_err()
                .to_string(),
            "Inspection rule r: no {node.driver}"
        );
        // Interpolated values are strings: comparing one with a number fails, as in Python.
        let typed = [rule(json!({"conditions": [
            {"op": "gt", "args": {"values": ["{inventory[memory][physical_mb]}", 4096]}}],
            "actions": [{"op": "log", "args": ["x"]}]}))];
        let e = apply(&typed, &mut n, &inventory(), &json!({})).unwrap_err();
        assert!(e.to_string().contains("'<' not supported"), "{e}");
        let unsupported = [rule(
            json!({"actions": [{"op": "api-call", "args": ["http://x"]}]}),
        )];
        let e = apply(&unsupported, &mut n, &inventory(), &json!({})).unwrap_err();
        assert!(e.to_string().contains("not evaluated by Ferrite"), "{e}");
        let bad_path = [rule(
            json!({"actions": [{"op": "set-attribute", "args": ["/driver", "idrac"]}]}),
        )];
        assert!(apply(&bad_path, &mut n, &inventory(), &json!({})).is_err());
    }

    #[test]
    fn regular_expressions_follow_ironics_calls() {
        let re = |op: &str, value: &str, regex: &str| {
            regex_check(op, &json!(value), &json!(regex)).unwrap()
        };
        // `matches`: anchored at the start, `$` appended (so `a|b` is `a|b$`).
        assert!(!re("matches", "Dell Inc.", "Dell"));
        assert!(re("matches", "Dell Inc.", "Dell.*"));
        assert!(re("matches", "a Dell x", "a|b"));
        assert!(!re("matches", "x Dell", "a|b"));
        // `contains`: anywhere.
        assert!(re("contains", "PowerEdge R650", "Edge R6[0-9]+"));
        assert!(!re("contains", "PowerEdge", "^Edge"));
        assert!(regex_check("contains", &json!("x"), &json!("(")).is_err());
    }

    #[test]
    fn loops_combine_as_multiple_says() {
        let ctx = obj(json!({}));
        let c = |multiple: &str| {
            obj(
                json!({"op": "eq", "args": {"values": ["{item}", "b"]}, "loop": ["a", "b"],
                       "multiple": multiple}),
            )
        };
        assert!(condition_holds(&c("any"), &ctx).unwrap());
        assert!(!condition_holds(&c("all"), &ctx).unwrap());
        assert!(condition_holds(&c("first"), &ctx).unwrap());
        assert!(condition_holds(&c("last"), &ctx).unwrap());
        assert!(in_net(&json!("fd00::1"), &json!("fd00::/64")).unwrap());
        assert!(!in_net(&json!("10.0.3.1"), &json!("10.0.2.0/24")).unwrap());
    }
}
