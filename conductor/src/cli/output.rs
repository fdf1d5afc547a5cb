//! Output of the `ferrite` CLI: bordered tables by default, JSON with `-f json`.

use serde_json::Value;

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A table with a header row; columns sized to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = || {
        let mut s = String::from("+");
        for x in &w {
            s.push_str(&"-".repeat(x + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let row = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            s.push_str(&format!(" {c:<width$} |", width = w[i]));
        }
        s.push('\n');
        s
    };
    let mut out = line();
    out.push_str(&row(&headers
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()));
    out.push_str(&line());
    for r in rows {
        out.push_str(&row(r));
    }
    out.push_str(&line());
    out
}

/// One object as a Field/Value table.
pub fn object(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_object()
        .map(|o| {
            let mut keys: Vec<&String> = o
                .keys()
                .filter(|k| *k != "links" && *k != "ports")
                .collect();
            keys.sort();
            keys.into_iter()
                .map(|k| vec![k.clone(), cell(&o[k])])
                .collect()
        })
        .unwrap_or_default();
    table(&["Field", "Value"], &rows)
}

/// A list of objects with the given columns.
pub fn list(items: &[Value], columns: &[(&str, &str)]) -> String {
    let headers: Vec<&str> = columns.iter().map(|(_, h)| *h).collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| columns.iter().map(|(k, _)| cell(&i[*k])).collect())
        .collect();
    table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align() {
        let t = list(
            &[
                json!({"uuid": "a", "name": null}),
                json!({"uuid": "bbb", "name": "x"}),
            ],
            &[("uuid", "UUID"), ("name", "Name")],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[1], "| UUID | Name |");
        assert_eq!(lines[3], "| a    | None |");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()));
        let o = object(&json!({"b": 1, "a": "x", "links": []}));
        assert!(o.find("| a ").unwrap() < o.find("| b ").unwrap());
        assert!(!o.contains("links"));
    }
}
