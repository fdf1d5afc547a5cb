//! Live progress in the terminal: `--wait` and `ferrite node watch` poll the node and, while
//! a step runs, its open timeline entries (`/v1/nodes/{node}/timeline?open=true`), and draw
//! the state, the current step and — while the agent writes an image — a bar with bytes,
//! rate and ETA from the agent's progress. Without a terminal they print a line whenever
//! what they would draw changes.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::client::Client;
use super::timeline;

/// What is drawn of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub node: String,
    pub state: String,
    /// `interface.step` of the step that runs.
    pub step: Option<String>,
    /// The agent's image write: bytes done, bytes in all (when known), bytes per second.
    pub write: Option<(u64, Option<u64>, f64)>,
    /// The node's lock is free and it has no target state.
    pub settled: bool,
    /// The node as the API showed it.
    pub raw: Value,
}

fn current_step(n: &Value) -> Option<String> {
    [&n["deploy_step"], &n["clean_step"], &n["service_step"]]
        .into_iter()
        .find(|s| s.as_object().is_some_and(|o| !o.is_empty()))
        .map(|s| {
            format!(
                "{}.{}",
                s["interface"].as_str().unwrap_or("?"),
                s["step"].as_str().unwrap_or("?")
            )
        })
}

/// Reads the node (and, while a step runs, its open timeline entries).
pub async fn fetch(c: &Client, node: &str) -> anyhow::Result<View> {
    let n = c.call("GET", &format!("/v1/nodes/{node}"), None).await?;
    let step = current_step(&n);
    let mut write = None;
    if step.is_some() {
        // An older conductor has no timeline: the bar is only left out.
        if let Ok(tl) = c
            .call("GET", &format!("/v1/nodes/{node}/timeline?open=true"), None)
            .await
        {
            let running = tl["timeline"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["type"] == "step");
            if let Some(p) = running.map(|e| &e["progress"]) {
                if let Some(done) = p["bytes_done"].as_u64() {
                    write = Some((
                        done,
                        p["bytes_total"].as_u64(),
                        p["rate_bytes_per_s"].as_f64().unwrap_or(0.0),
                    ));
                }
            }
        }
    }
    Ok(View {
        node: node.to_string(),
        state: n["provision_state"].as_str().unwrap_or("?").to_string(),
        step,
        write,
        settled: n["reservation"].is_null() && n["target_provision_state"].is_null(),
        raw: n,
    })
}

/// `12s`, `3m05s`: the time left at `rate` for what remains.
fn eta(done: u64, total: Option<u64>, rate: f64) -> Option<String> {
    let total = total?;
    if rate <= 0.0 || done >= total {
        return None;
    }
    let secs = (total - done) as f64 / rate;
    Some(if secs < 60.0 {
        format!("{secs:.0}s")
    } else {
        format!("{}m{:02}s", secs as u64 / 60, secs as u64 % 60)
    })
}

/// One line of text: `node: state step x.y writing 1.0 GiB of 2.0 GiB at 80.0 MiB/s ETA 12s`.
pub fn line(v: &View) -> String {
    let mut s = format!("{}: {}", v.node, v.state);
    if let Some(step) = &v.step {
        s.push_str(&format!(" step {step}"));
    }
    if let Some((done, total, rate)) = v.write {
        s.push_str(&format!(" wrote {}", timeline::bytes(done)));
        if let Some(t) = total {
            s.push_str(&format!(" of {}", timeline::bytes(t)));
        }
        s.push_str(&format!(" at {:.1} MiB/s", rate / 1048576.0));
        if let Some(e) = eta(done, total, rate) {
            s.push_str(&format!(" ETA {e}"));
        }
    }
    s
}

fn style(bar: bool) -> ProgressStyle {
    let template = if bar {
        "{prefix:.bold} {wide_msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes}"
    } else {
        "{prefix:.bold} {spinner} {wide_msg}"
    };
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Draws `v` on `pb`: a bar while the agent reports a write with a known size, a spinner
/// and the state otherwise.
pub fn draw(pb: &ProgressBar, v: &View, elapsed: Duration) {
    pb.set_prefix(format!("[{:6.1}s] {}", elapsed.as_secs_f64(), v.node));
    let mut msg = v.state.clone();
    if let Some(step) = &v.step {
        msg.push_str(&format!(" {step}"));
    }
    match v.write {
        Some((done, Some(total), rate)) => {
            pb.set_style(style(true));
            pb.set_length(total);
            pb.set_position(done);
            msg.push_str(&format!(" {:.1} MiB/s", rate / 1048576.0));
            if let Some(e) = eta(done, Some(total), rate) {
                msg.push_str(&format!(" ETA {e}"));
            }
        }
        Some((done, None, rate)) => {
            pb.set_style(style(false));
            msg.push_str(&format!(
                " wrote {} at {:.1} MiB/s",
                timeline::bytes(done),
                rate / 1048576.0
            ));
        }
        None => pb.set_style(style(false)),
    }
    pb.set_message(msg);
    pb.tick();
}

/// Where the drawing goes: bars on a terminal, changed lines otherwise.
pub struct Screen {
    multi: Option<MultiProgress>,
    bars: Vec<(String, ProgressBar)>,
    last: Vec<(String, String)>,
    start: Instant,
}

impl Screen {
    pub fn new() -> Screen {
        let tty = std::io::stderr().is_terminal();
        Screen {
            multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: vec![],
            last: vec![],
            start: Instant::now(),
        }
    }

    pub fn show(&mut self, v: &View) {
        let elapsed = self.start.elapsed();
        match &self.multi {
            Some(m) => {
                let pb = match self.bars.iter().find(|(n, _)| *n == v.node) {
                    Some((_, pb)) => pb.clone(),
                    None => {
                        let pb = m.add(ProgressBar::new(0));
                        self.bars.push((v.node.clone(), pb.clone()));
                        pb
                    }
                };
                draw(&pb, v, elapsed);
            }
            None => {
                let text = line(v);
                let changed = self
                    .last
                    .iter()
                    .find(|(n, _)| *n == v.node)
                    .is_none_or(|(_, t)| *t != text);
                if changed {
                    eprintln!("[{:6.1}s] {text}", elapsed.as_secs_f64());
                    self.last.retain(|(n, _)| *n != v.node);
                    self.last.push((v.node.clone(), text));
                }
            }
        }
    }

    /// Leaves the node's last drawing on screen.
    pub fn finish(&mut self, node: &str) {
        if let Some((_, pb)) = self.bars.iter().find(|(n, _)| n == node) {
            pb.abandon();
        }
    }
}

impl Default for Screen {
    fn default() -> Self {
        Screen::new()
    }
}

/// `ferrite node watch [NODE…]`: follows the named nodes, or every node with a target
/// state (work going on), until all have settled.
pub async fn watch(c: &Client, nodes: Vec<String>, interval: Duration) -> anyhow::Result<()> {
    let mut screen = Screen::new();
    let mut done: Vec<String> = vec![];
    // Without names: the nodes with work going on at each look, and those seen before (a
    // node that settled meanwhile is shown once more, settled).
    let mut names: Vec<String> = nodes.clone();
    loop {
        let busy_now: Vec<String> = if nodes.is_empty() {
            let list = c
                .call(
                    "GET",
                    "/v1/nodes?fields=uuid,name,target_provision_state&limit=1000",
                    None,
                )
                .await?;
            list["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| !n["target_provision_state"].is_null())
                .map(|n| {
                    n["name"]
                        .as_str()
                        .or(n["uuid"].as_str())
                        .unwrap_or("?")
                        .to_string()
                })
                .collect()
        } else {
            vec![]
        };
        for n in busy_now {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let mut busy = 0;
        for n in &names {
            let v = fetch(c, n).await?;
            screen.show(&v);
            if v.settled {
                if !done.contains(n) {
                    screen.finish(n);
                    done.push(n.clone());
                }
            } else {
                done.retain(|d| d != n);
                busy += 1;
            }
        }
        if busy == 0 {
            if names.is_empty() {
                eprintln!("no node has work going on");
            }
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_write_reads_with_rate_and_eta() {
        let v = View {
            node: "n1".into(),
            state: "wait call-back".into(),
            step: Some("deploy.write_image".into()),
            write: Some((1 << 30, Some(2 << 30), 100.0 * 1048576.0)),
            settled: false,
            raw: json!({}),
        };
        assert_eq!(
            line(&v),
            "n1: wait call-back step deploy.write_image wrote 1.0 GiB of 2.0 GiB at 100.0 MiB/s \
             ETA 10s"
        );
        assert_eq!(eta(0, Some(6000), 50.0), Some("2m00s".into()));
        assert_eq!(eta(10, None, 50.0), None);
        assert_eq!(
            current_step(
                &json!({"deploy_step": {}, "clean_step": {"interface": "deploy",
                                 "step": "erase_devices"}})
            ),
            Some("deploy.erase_devices".into())
        );
        assert_eq!(current_step(&json!({"deploy_step": {}})), None);
        let pb = ProgressBar::hidden();
        draw(&pb, &v, Duration::from_secs(3));
        assert_eq!(pb.length(), Some(2 << 30));
        assert_eq!(pb.position(), 1 << 30);
        assert!(pb.message().contains("ETA 10s"), "{}", pb.message());
    }
}
