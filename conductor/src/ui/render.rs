//! The dashboard's HTML, rendered on the server from plain data: the page frame, the
//! fleet table with counts by state, and a node's view (verbs, last error with the log
//! tail, the timeline as an inline SVG Gantt chart, inventory and ports). Every value is
//! escaped here.

use std::fmt::Write;

use serde_json::Value;

/// `&`, `<`, `>`, `"` and `'` escaped for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `42s`, `3m05s`, `2h10m`, `3d4h`.
pub fn age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// A whole page: `body` inside the frame, `live` the URL its live region polls.
pub fn page(title: &str, live: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t} · Ferrite</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/ui/static/style.css\">\
         </head><body><header><a href=\"/ui/\" class=\"brand\">Ferrite</a>\
         <span class=\"title\">{t}</span><span id=\"msg\" role=\"status\"></span></header>\
         <main id=\"live\" data-live=\"{l}\">{body}</main>\
         <script src=\"/ui/static/app.js\"></script></body></html>\n",
        t = esc(title),
        l = esc(live),
    )
}

/// One row of the fleet table.
pub struct FleetRow {
    pub uuid: String,
    pub name: Option<String>,
    pub state: String,
    pub target: Option<String>,
    pub power: Option<String>,
    pub step: Option<String>,
    /// The agent's write: bytes done, in all, bytes per second.
    pub write: Option<(u64, Option<u64>, f64)>,
    pub last_error: Option<String>,
    pub in_state_secs: Option<f64>,
    pub maintenance: bool,
}

fn state_class(state: &str) -> &'static str {
    if state.ends_with("failed") || state == "error" {
        "bad"
    } else if state.contains("wait") || state.ends_with("ing") {
        "busy"
    } else {
        "ok"
    }
}

fn progress_cell(write: Option<(u64, Option<u64>, f64)>) -> String {
    let Some((done, total, rate)) = write else {
        return String::new();
    };
    let mib = |b: u64| b as f64 / 1048576.0;
    match total {
        Some(t) if t > 0 => format!(
            "<progress max=\"{t}\" value=\"{done}\"></progress> {:.0}/{:.0} MiB, {:.1} MiB/s",
            mib(done),
            mib(t),
            rate / 1048576.0
        ),
        _ => format!("{:.0} MiB, {:.1} MiB/s", mib(done), rate / 1048576.0),
    }
}

/// The fleet view's live region: counts by state (links that filter) and the table.
pub fn fleet(rows: &[FleetRow], filter_state: Option<&str>) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in rows {
        *counts.entry(r.state.as_str()).or_default() += 1;
    }
    let mut h = String::from("<section class=\"counts\">");
    let _ = write!(
        h,
        "<a href=\"/ui/\" class=\"count{}\">all <b>{}</b></a>",
        if filter_state.is_none() { " on" } else { "" },
        rows.len()
    );
    for (state, n) in &counts {
        let _ =
            write!(
            h,
            "<a href=\"/ui/?state={}\" class=\"count {}{}\" data-state=\"{}\">{} <b>{n}</b></a>",
            esc(&state.replace(' ', "%20")),
            state_class(state),
            if filter_state == Some(state) { " on" } else { "" },
            esc(state),
            esc(state)
        );
    }
    h.push_str("</section>");
    h.push_str(
        "<table id=\"fleet\"><thead><tr><th>Name</th><th>State</th><th>Power</th>\
         <th>Current step</th><th>Last error</th><th>In state</th></tr></thead><tbody>",
    );
    for r in rows
        .iter()
        .filter(|r| filter_state.is_none_or(|f| f == r.state))
    {
        let name = r.name.clone().unwrap_or_else(|| r.uuid.clone());
        let target = r
            .target
            .as_deref()
            .map(|t| format!(" → {}", esc(t)))
            .unwrap_or_default();
        let search = format!(
            "{} {} {} {}",
            name,
            r.uuid,
            r.state,
            r.last_error.as_deref().unwrap_or("")
        )
        .to_lowercase();
        let err = r.last_error.as_deref().unwrap_or("");
        let short: String = err.chars().take(120).collect();
        let _ = write!(
            h,
            "<tr data-search=\"{search}\" data-node=\"{uuid}\"><td><a href=\"/ui/nodes/{uuid}\">{name}</a>{maint}</td>\
             <td><span class=\"state {cls}\">{state}</span>{target}</td><td>{power}</td>\
             <td>{step} {progress}</td><td class=\"err\" title=\"{err}\">{short}</td><td>{age}</td></tr>",
            search = esc(&search),
            uuid = esc(&r.uuid),
            name = esc(&name),
            maint = if r.maintenance { " <span class=\"tag\">maintenance</span>" } else { "" },
            cls = state_class(&r.state),
            state = esc(&r.state),
            power = esc(r.power.as_deref().unwrap_or("None")),
            step = esc(r.step.as_deref().unwrap_or("")),
            progress = progress_cell(r.write),
            err = esc(err),
            short = esc(&short),
            age = r.in_state_secs.map(age).unwrap_or_default(),
        );
    }
    h.push_str("</tbody></table>");
    h
}

/// The node view's data.
pub struct NodeView<'a> {
    pub node: &'a crate::model::Node,
    pub step: Option<String>,
    pub write: Option<(u64, Option<u64>, f64)>,
    /// (verb word for the API, button label).
    pub verbs: Vec<(&'static str, &'static str)>,
    pub timeline: &'a [Value],
    pub ports: &'a [crate::model::Port],
    pub inventory: Option<Value>,
    /// (archive name, file name, last lines).
    pub log_tail: Option<(String, String, String)>,
}

/// The timeline as a Gantt chart: one bar per entry on a shared time axis.
pub fn gantt(entries: &[Value]) -> String {
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    let rows: Vec<(f64, f64, &Value)> = {
        let Some(t0) = entries
            .first()
            .and_then(|e| e["started_at"].as_str())
            .and_then(parse)
        else {
            return "<p class=\"muted\">No timeline yet.</p>".into();
        };
        entries
            .iter()
            .filter_map(|e| {
                let s = parse(e["started_at"].as_str()?)?;
                let start = (s - t0).as_seconds_f64().max(0.0);
                Some((start, e["duration_s"].as_f64().unwrap_or(0.0).max(0.0), e))
            })
            .collect()
    };
    let span = rows
        .iter()
        .map(|(s, d, _)| s + d)
        .fold(0.0f64, f64::max)
        .max(0.001);
    let (label_w, chart_w, row_h) = (230.0, 620.0, 18.0);
    let height = row_h * rows.len() as f64 + 24.0;
    let mut h = format!(
        "<svg class=\"gantt\" role=\"img\" aria-label=\"timeline\" viewBox=\"0 0 {w} {height}\" \
         width=\"100%\" preserveAspectRatio=\"xMinYMin meet\">",
        w = label_w + chart_w + 70.0
    );
    for (i, (start, dur, e)) in rows.iter().enumerate() {
        let y = row_h * i as f64;
        let ty = e["type"].as_str().unwrap_or("state");
        let running = e["running"] == true;
        let outcome = e["outcome"].as_str().unwrap_or("");
        let class = if outcome == "failed" {
            "failed".to_string()
        } else {
            format!("{ty}{}", if running { " running" } else { "" })
        };
        let x = label_w + start / span * chart_w;
        let w = (dur / span * chart_w).max(1.5);
        let indent = if ty == "state" { 0.0 } else { 12.0 };
        let name = e["name"].as_str().unwrap_or("?");
        let _ = write!(
            h,
            "<g class=\"{class}\"><title>{name}: {dur:.3} s{out}</title>\
             <text x=\"{tx}\" y=\"{ty_}\" class=\"label\">{name}</text>\
             <rect x=\"{x:.1}\" y=\"{ry}\" width=\"{w:.1}\" height=\"{rh}\" rx=\"2\"></rect>\
             <text x=\"{dx:.1}\" y=\"{ty_}\" class=\"dur\">{dtxt}</text></g>",
            name = esc(name),
            out = if outcome.is_empty() {
                String::new()
            } else {
                format!(" ({})", esc(outcome))
            },
            tx = 4.0 + indent,
            ty_ = y + 13.0,
            ry = y + 3.0,
            rh = row_h - 6.0,
            dx = (x + w + 4.0).min(label_w + chart_w + 8.0),
            dtxt = crate::cli::timeline::duration(*dur),
        );
    }
    let _ = write!(
        h,
        "<text x=\"{label_w}\" y=\"{ay}\" class=\"axis\">0</text>\
         <text x=\"{ax}\" y=\"{ay}\" class=\"axis\" text-anchor=\"end\">{total}</text></svg>",
        ay = height - 6.0,
        ax = label_w + chart_w,
        total = crate::cli::timeline::duration(span),
    );
    h
}

/// The node view's live region.
pub fn node(v: &NodeView) -> String {
    let n = v.node;
    let mut h = String::new();
    let name = n.name.clone().unwrap_or_else(|| n.uuid.clone());
    let state = n.provision_state.as_str();
    let in_state = n
        .provision_updated_at
        .as_deref()
        .and_then(crate::model::age_secs)
        .map(age)
        .unwrap_or_default();
    let _ = write!(
        h,
        "<section class=\"summary\"><h1>{name}</h1><dl>\
         <dt>UUID</dt><dd>{uuid}</dd><dt>State</dt><dd><span class=\"state {cls}\" id=\"state\">{state}</span>{target} \
         <span class=\"muted\">for {in_state}</span></dd><dt>Power</dt><dd id=\"power\">{power}</dd>\
         <dt>Driver</dt><dd>{driver} ({deploy} deploy)</dd><dt>Current step</dt><dd>{step} {progress}</dd>\
         </dl>",
        name = esc(&name),
        uuid = esc(&n.uuid),
        cls = state_class(state),
        state = esc(state),
        target = n
            .target_provision_state
            .map(|t| format!(" → {}", esc(t.as_str())))
            .unwrap_or_default(),
        power = esc(n.power_state.as_deref().unwrap_or("None")),
        driver = esc(&n.driver),
        deploy = esc(&n.deploy_interface),
        step = esc(v.step.as_deref().unwrap_or("none")),
        progress = progress_cell(v.write),
    );
    h.push_str("<div class=\"verbs\">");
    for (word, label) in &v.verbs {
        let _ = write!(
            h,
            "<button data-node=\"{uuid}\" data-verb=\"{w}\">{l}</button>",
            uuid = esc(&n.uuid),
            w = esc(word),
            l = esc(label)
        );
    }
    for (target, label) in [
        ("power on", "Power on"),
        ("power off", "Power off"),
        ("rebooting", "Reboot"),
    ] {
        let _ = write!(
            h,
            "<button class=\"power\" data-node=\"{uuid}\" data-power=\"{target}\">{label}</button>",
            uuid = esc(&n.uuid)
        );
    }
    h.push_str("</div></section>");
    if let Some(err) = &n.last_error {
        let _ = write!(
            h,
            "<section class=\"error\"><h2>Last error</h2><p id=\"last-error\">{}</p>",
            esc(err)
        );
        if let Some((archive, file, tail)) = &v.log_tail {
            let _ = write!(
                h,
                "<h3>{file} <span class=\"muted\">(tail of {archive}; all of it: \
                 <code>ferrite node logs {uuid}</code>)</span></h3><pre class=\"log\">{tail}</pre>",
                file = esc(file),
                archive = esc(archive),
                uuid = esc(&n.uuid),
                tail = esc(tail)
            );
        }
        h.push_str("</section>");
    }
    let _ = write!(
        h,
        "<section><h2>Timeline</h2>{}</section>",
        gantt(v.timeline)
    );
    h.push_str("<section class=\"cols\"><div><h2>Inventory</h2><dl>");
    let prop = |k: &str| {
        n.properties
            .get(k)
            .map(|v| match v {
                Value::String(s) => s.clone(),
                o => o.to_string(),
            })
            .unwrap_or_else(|| "?".into())
    };
    let _ = write!(
        h,
        "<dt>CPUs</dt><dd>{} ({})</dd><dt>Memory</dt><dd>{} MiB</dd><dt>Disk</dt><dd>{} GiB</dd>",
        esc(&prop("cpus")),
        esc(&prop("cpu_arch")),
        esc(&prop("memory_mb")),
        esc(&prop("local_gb"))
    );
    if let Some(inv) = &v.inventory {
        let disks = inv["disks"].as_array().map(Vec::len).unwrap_or(0);
        let nics = inv["interfaces"].as_array().map(Vec::len).unwrap_or(0);
        let _ = write!(
            h,
            "<dt>System</dt><dd>{} {}</dd><dt>Disks / NICs</dt><dd>{disks} / {nics}</dd>",
            esc(inv["system_vendor"]["manufacturer"].as_str().unwrap_or("")),
            esc(inv["system_vendor"]["product_name"].as_str().unwrap_or(""))
        );
    }
    h.push_str("</dl></div><div><h2>Ports</h2><table><thead><tr><th>MAC</th><th>PXE</th></tr></thead><tbody>");
    for p in v.ports {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(&p.address),
            p.pxe_enabled
        );
    }
    h.push_str("</tbody></table></div></section>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_escaped_and_ages_read_well() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(age(59.9), "59s");
        assert_eq!(age(61.0), "1m01s");
        assert_eq!(age(7260.0), "2h01m");
        assert_eq!(age(90000.0), "1d1h");
    }

    #[test]
    fn the_fleet_counts_states_and_filters() {
        let row = |name: &str, state: &str, err: Option<&str>| FleetRow {
            uuid: format!("uuid-{name}"),
            name: Some(name.into()),
            state: state.into(),
            target: None,
            power: Some("power on".into()),
            step: None,
            write: None,
            last_error: err.map(str::to_owned),
            in_state_secs: Some(5.0),
            maintenance: false,
        };
        let rows = [
            row("a", "active", None),
            row("b", "active", None),
            row("<c>", "deploy failed", Some("boom")),
        ];
        let all = fleet(&rows, None);
        assert!(all.contains("all <b>3</b>"), "{all}");
        assert!(all.contains(">active <b>2</b>"), "{all}");
        assert!(all.contains("&lt;c&gt;") && !all.contains("<c>"), "{all}");
        assert!(all.contains("class=\"state bad\">deploy failed"), "{all}");
        let failed = fleet(&rows, Some("deploy failed"));
        assert_eq!(failed.matches("<tr data-search").count(), 1, "{failed}");
    }

    #[test]
    fn the_gantt_chart_has_a_bar_per_entry() {
        let svg = gantt(&[
            json!({"type": "state", "name": "deploying", "started_at": "2026-01-01T00:00:00Z",
                   "duration_s": 10.0, "outcome": "ok"}),
            json!({"type": "step", "name": "deploy.write_image",
                   "started_at": "2026-01-01T00:00:02Z", "duration_s": 6.0, "outcome": "failed"}),
            json!({"type": "state", "name": "deploy failed", "started_at": "2026-01-01T00:00:10Z",
                   "duration_s": 1.0, "running": true}),
        ]);
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(
            svg.contains("<g class=\"failed\"><title>deploy.write_image: 6.000 s (failed)"),
            "{svg}"
        );
        assert!(svg.contains("<g class=\"state running\">"), "{svg}");
        assert_eq!(gantt(&[]), "<p class=\"muted\">No timeline yet.</p>");
    }
}
