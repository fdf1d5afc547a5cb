//! Validation of `POST /v1/commands/` bodies: `{"name": "<ext>.<cmd>", "params": {...}}`,
//! with errors that name the offending field.

use serde_json::{Map, Value};

/// Validates `{"name": "<ext>.<cmd>", "params": {...}}`; the error names the field.
pub fn parse_command_body(body: &[u8]) -> Result<(String, Map<String, Value>), String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!("request body is not valid JSON ({e}); send {{\"name\": \"<extension>.<command>\", \"params\": {{...}}}}")
    })?;
    let Value::Object(mut map) = value else {
        return Err(format!(
            "request body must be a JSON object with `name` and `params`, got {}",
            kind(&value)
        ));
    };
    if let Some(unknown) = map.keys().find(|k| *k != "name" && *k != "params") {
        return Err(format!(
            "unknown field `{unknown}` in the request body; only `name` and `params` are allowed"
        ));
    }
    let name = match map.remove("name") {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(format!(
                "field `name` must be a string, got {}",
                kind(&other)
            ))
        }
        None => return Err("missing field `name` (e.g. \"standby.sync\")".to_string()),
    };
    let params = match map.remove("params") {
        Some(Value::Object(p)) => p,
        Some(other) => {
            return Err(format!(
                "field `params` must be a JSON object, got {}",
                kind(&other)
            ))
        }
        None => {
            return Err("missing field `params` (send {} when the command takes none)".to_string())
        }
    };
    Ok((name, params))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_bodies_are_validated_with_named_fields() {
        let ok = parse_command_body(br#"{"name": "standby.sync", "params": {}}"#).unwrap();
        assert_eq!(ok.0, "standby.sync");
        for (body, needle) in [
            (&b"{"[..], "not valid JSON"),
            (b"[]", "must be a JSON object"),
            (br#"{"params": {}}"#, "missing field `name`"),
            (
                br#"{"name": 3, "params": {}}"#,
                "field `name` must be a string",
            ),
            (br#"{"name": "a.b"}"#, "missing field `params`"),
            (
                br#"{"name": "a.b", "params": [1]}"#,
                "field `params` must be a JSON object, got an array",
            ),
            (
                br#"{"name": "a.b", "params": {}, "x": 1}"#,
                "unknown field `x`",
            ),
        ] {
            let err = parse_command_body(body).unwrap_err();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }
}
