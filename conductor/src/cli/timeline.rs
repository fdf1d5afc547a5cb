//! `ferrite node history NODE`: the node's step timeline (`/v1/nodes/{node}/timeline`) as
//! a table with durations, or Ironic's history events with `--events`; and the one-line
//! summaries of the agent's progress that `--wait` and `node watch` show.

use serde_json::Value;

use super::output;

/// `1.234s`, `2m03s`, `1h02m`.
pub fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.3}s")
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

/// `1.2 GiB`, `300 MiB`, `12 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The agent's progress (`ferrite_progress`) in a few words: `downloading 1.2 GiB of
/// 2.0 GiB at 85.3 MiB/s`.
pub fn progress(p: &Value) -> Option<String> {
    let done = p.get("bytes_done")?.as_u64()?;
    let mut s = format!(
        "{} {}",
        p["phase"].as_str().unwrap_or("writing"),
        bytes(done)
    );
    if let Some(total) = p["bytes_total"].as_u64() {
        s.push_str(&format!(" of {}", bytes(total)));
    }
    if let Some(rate) = p["rate_bytes_per_s"].as_f64() {
        s.push_str(&format!(" at {:.1} MiB/s", rate / 1048576.0));
    }
    Some(s)
}

fn offset(first: Option<&str>, t: &str) -> String {
    let Some(first) = first else {
        return String::new();
    };
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    match (parse(first), parse(t)) {
        (Some(a), Some(b)) => format!("+{}", duration((b - a).as_seconds_f64().max(0.0))),
        _ => String::new(),
    }
}

/// The timeline (the API's `timeline` list) as a table: states flush left, the steps and
/// power actions inside them indented.
pub fn table(entries: &[Value]) -> String {
    let first = entries
        .first()
        .and_then(|e| e["started_at"].as_str())
        .map(str::to_owned);
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let ty = e["type"].as_str().unwrap_or("?");
            let name = e["name"].as_str().unwrap_or("?");
            let name = if ty == "state" {
                name.to_string()
            } else {
                format!("  {name}")
            };
            let started = e["started_at"].as_str().unwrap_or("");
            let dur = e["duration_s"].as_f64().map(duration).unwrap_or_default();
            let dur = if e["running"] == true {
                format!("{dur}…")
            } else {
                dur
            };
            let outcome = if e["running"] == true {
                "running".to_string()
            } else {
                e["outcome"].as_str().unwrap_or("").to_string()
            };
            let mut detail = e
                .get("progress")
                .and_then(progress)
                .or_else(|| e["detail"].as_str().map(str::to_owned))
                .or_else(|| e["event"].as_str().map(|ev| format!("on {ev}")))
                .unwrap_or_default();
            if detail.chars().count() > 80 {
                detail = format!("{}…", detail.chars().take(79).collect::<String>());
            }
            vec![
                offset(first.as_deref(), started),
                ty.to_string(),
                name,
                dur,
                outcome,
                detail,
            ]
        })
        .collect();
    output::table(
        &["Start", "Type", "Name", "Duration", "Outcome", "Detail"],
        &rows,
    )
}

/// Ironic's history events as a table.
pub fn events(items: &[Value]) -> String {
    output::list(
        items,
        &[
            ("created_at", "Time"),
            ("severity", "Severity"),
            ("event_type", "Type"),
            ("event", "Event"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(duration(1.2345), "1.234s");
        assert_eq!(duration(123.0), "2m03s");
        assert_eq!(duration(3725.0), "1h02m");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(
            progress(&json!({"phase": "downloading", "bytes_done": 1u64 << 20,
                             "bytes_total": 2u64 << 20, "rate_bytes_per_s": 1048576.0}))
            .unwrap(),
            "downloading 1.0 MiB of 2.0 MiB at 1.0 MiB/s"
        );
        assert_eq!(progress(&json!({})), None);
    }

    #[test]
    fn timeline_table_indents_steps_and_shows_offsets() {
        let t = table(&[
            json!({"type": "state", "name": "deploying", "started_at": "2026-01-01T00:00:00Z",
                   "duration_s": 2.5, "outcome": "ok", "event": "deploy", "running": false}),
            json!({"type": "step", "name": "deploy.write_image",
                   "started_at": "2026-01-01T00:00:01Z", "duration_s": 1.0,
                   "running": true, "progress": {"phase": "downloading", "bytes_done": 10}}),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[3].contains("| +0.000s | state | deploying "), "{t}");
        assert!(lines[3].contains("on deploy"), "{t}");
        assert!(lines[4].contains("|   deploy.write_image "), "{t}");
        assert!(
            lines[4].contains("1.000s…") && lines[4].contains("running"),
            "{t}"
        );
        assert!(lines[4].contains("downloading 10 B"), "{t}");
    }
}
