//! `ferrite node …` and `ferrite port …`: requests, JSON Patch from `key=value` flags, and
//! `--wait` with live progress (`watch.rs`: state, current step, the image write's bar).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::client::Client;
use super::output;

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Enroll a node.
    Create(NodeFields),
    /// List nodes.
    List {
        /// Show more columns.
        #[arg(long)]
        long: bool,
        #[arg(long)]
        provision_state: Option<String>,
    },
    /// Show one node (UUID or name).
    Show {
        node: String,
    },
    /// Set fields (JSON Patch "add").
    Set {
        node: String,
        #[command(flatten)]
        fields: NodeFields,
    },
    /// Remove fields (JSON Patch "remove").
    Unset {
        node: String,
        #[arg(long)]
        name: bool,
        #[arg(long = "driver-info", value_name = "KEY")]
        driver_info: Vec<String>,
        #[arg(long = "property", value_name = "KEY")]
        properties: Vec<String>,
        #[arg(long = "instance-info", value_name = "KEY")]
        instance_info: Vec<String>,
    },
    Delete {
        node: String,
    },
    Manage(Verb),
    Provide(Verb),
    Inspect(Verb),
    /// Manual cleaning with the given steps (JSON list).
    Clean {
        #[command(flatten)]
        verb: Verb,
        #[arg(long, value_name = "JSON")]
        clean_steps: String,
    },
    Deploy {
        #[command(flatten)]
        verb: Verb,
        /// Config drive: base64 gzip, URL, or JSON with meta_data/user_data/…
        #[arg(long)]
        config_drive: Option<String>,
    },
    Undeploy(Verb),
    Rebuild(Verb),
    Abort(Verb),
    /// Rescue an active node: boot the rescue ramdisk with a `rescue` user.
    Rescue {
        #[command(flatten)]
        verb: Verb,
        /// The rescue user's password (taken from the environment, so that it does not
        /// show in the process list).
        #[arg(long, env = "FERRITE_RESCUE_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Leave rescue: boot the instance again (back to active).
    Unrescue(Verb),
    /// Power on or off.
    Power {
        #[arg(value_parser = ["on", "off", "reboot"])]
        action: String,
        node: String,
    },
    /// `boot-device set NODE DEVICE [--persistent]`.
    BootDevice {
        #[arg(value_parser = ["set"])]
        action: String,
        node: String,
        device: String,
        #[arg(long)]
        persistent: bool,
    },
    Validate {
        node: String,
    },
    /// Follow nodes (default: every node with work going on) until they settle: state,
    /// current step and the image write's progress.
    Watch {
        nodes: Vec<String>,
        /// Seconds between polls.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// The agent logs kept for the node (after a failure, or every deploy with
    /// --deploy-logs-collect always): the newest archive's files, printed.
    Logs {
        node: String,
        /// List the archives instead.
        #[arg(long)]
        list: bool,
        /// This archive rather than the newest (a name from --list).
        #[arg(long)]
        archive: Option<String>,
        /// Only this file of the archive (e.g. ferrite-agent.log, dmesg.txt).
        #[arg(long)]
        file: Option<String>,
        /// Only the last N lines of each file.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Save the archive (.tar.gz) to this path instead of printing it.
        #[arg(long, value_name = "PATH")]
        save: Option<std::path::PathBuf>,
    },
    /// The node's step timeline with durations (states, steps, power actions).
    History {
        node: String,
        /// Ironic's history events (failures, provision verbs) instead.
        #[arg(long)]
        events: bool,
    },
}

#[derive(Debug, Args)]
pub struct Verb {
    pub node: String,
    /// Wait until the node settles (optionally at most SECS seconds).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "3600")]
    pub wait: Option<u64>,
}

#[derive(Debug, Args, Default)]
pub struct NodeFields {
    #[arg(long)]
    pub driver: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub uuid: Option<String>,
    #[arg(long = "driver-info", value_name = "KEY=VALUE")]
    pub driver_info: Vec<String>,
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    #[arg(long = "instance-info", value_name = "KEY=VALUE")]
    pub instance_info: Vec<String>,
    #[arg(long)]
    pub resource_class: Option<String>,
    #[arg(long)]
    pub deploy_interface: Option<String>,
    #[arg(long)]
    pub inspect_interface: Option<String>,
    #[arg(long)]
    pub power_interface: Option<String>,
    #[arg(long)]
    pub management_interface: Option<String>,
    #[arg(long)]
    pub boot_interface: Option<String>,
    /// `no-rescue` (default), `agent` or (fake-hardware) `fake`.
    #[arg(long)]
    pub rescue_interface: Option<String>,
    /// The node's network_data (OpenStack network_data.json): JSON, or a file holding it.
    #[arg(long, value_name = "JSON|FILE")]
    pub network_data: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PortCmd {
    Create {
        address: String,
        #[arg(long)]
        node: String,
        #[arg(long)]
        pxe_enabled: Option<bool>,
    },
    List {
        #[arg(long)]
        node: Option<String>,
    },
    Delete {
        port: String,
    },
}

/// `key=value`; a value that parses as JSON (numbers, true, objects) is kept typed.
fn kv(s: &str) -> anyhow::Result<(String, Value)> {
    let Some((k, v)) = s.split_once('=') else {
        bail!("expected KEY=VALUE, got {s:?}");
    };
    if k.is_empty() {
        bail!("empty key in {s:?}");
    }
    let val = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.into()));
    Ok((k.to_string(), val))
}

fn field_ops(f: &NodeFields) -> anyhow::Result<Vec<(String, Value)>> {
    let mut out = vec![];
    for (name, v) in [
        ("driver", &f.driver),
        ("name", &f.name),
        ("uuid", &f.uuid),
        ("resource_class", &f.resource_class),
        ("deploy_interface", &f.deploy_interface),
        ("inspect_interface", &f.inspect_interface),
        ("power_interface", &f.power_interface),
        ("management_interface", &f.management_interface),
        ("boot_interface", &f.boot_interface),
        ("rescue_interface", &f.rescue_interface),
    ] {
        if let Some(v) = v {
            out.push((format!("/{name}"), json!(v)));
        }
    }
    if let Some(nd) = &f.network_data {
        let text = if nd.trim_start().starts_with('{') {
            nd.clone()
        } else {
            std::fs::read_to_string(nd).map_err(|e| {
                anyhow::anyhow!("--network-data {nd:?}: not JSON and not a readable file ({e})")
            })?
        };
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("--network-data is not valid JSON: {e}"))?;
        out.push(("/network_data".into(), v));
    }
    for (group, items) in [
        ("driver_info", &f.driver_info),
        ("properties", &f.properties),
        ("instance_info", &f.instance_info),
    ] {
        for i in items {
            let (k, v) = kv(i)?;
            out.push((
                format!("/{group}/{}", k.replace('~', "~0").replace('/', "~1")),
                v,
            ));
        }
    }
    Ok(out)
}

fn create_body(f: &NodeFields) -> anyhow::Result<Value> {
    let mut body = Map::new();
    for (path, v) in field_ops(f)? {
        let parts: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
        match parts.as_slice() {
            [k] => {
                body.insert(k.to_string(), v);
            }
            [group, key] => {
                let g = body.entry(group.to_string()).or_insert_with(|| json!({}));
                g[key.replace("~1", "/").replace("~0", "~")] = v;
            }
            _ => {}
        }
    }
    if !body.contains_key("driver") {
        bail!("--driver is required (e.g. --driver fake-hardware)");
    }
    Ok(Value::Object(body))
}

const NODE_COLUMNS: &[(&str, &str)] = &[
    ("uuid", "UUID"),
    ("name", "Name"),
    ("instance_uuid", "Instance UUID"),
    ("power_state", "Power State"),
    ("provision_state", "Provisioning State"),
    ("maintenance", "Maintenance"),
];
const NODE_LONG: &[(&str, &str)] = &[
    ("uuid", "UUID"),
    ("name", "Name"),
    ("driver", "Driver"),
    ("power_state", "Power State"),
    ("provision_state", "Provisioning State"),
    ("target_provision_state", "Target"),
    ("maintenance", "Maintenance"),
    ("last_error", "Last Error"),
];

fn print(json_out: bool, v: &Value, render: impl Fn(&Value) -> String) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        print!("{}", render(v));
    }
}

/// The state a verb ends in when it succeeds.
fn goal(verb: &str) -> &'static [&'static str] {
    match verb {
        "manage" | "inspect" | "clean" => &["manageable"],
        "provide" | "deleted" => &["available"],
        "active" | "rebuild" | "unrescue" => &["active"],
        "rescue" => &["rescue"],
        _ => &["manageable", "available", "active", "enroll", "error"],
    }
}

fn is_failure(state: &str) -> bool {
    state.ends_with("failed") || state == "error"
}

async fn wait_for(c: &Client, node: &str, verb: &str, limit: u64) -> anyhow::Result<Value> {
    let start = Instant::now();
    let mut screen = super::watch::Screen::new();
    loop {
        let v = super::watch::fetch(c, node).await?;
        screen.show(&v);
        let state = v.state.as_str();
        if goal(verb).contains(&state) && v.settled {
            screen.finish(node);
            return Ok(v.raw);
        }
        if is_failure(state) && v.settled
            || (verb == "manage" && state == "enroll" && !v.raw["last_error"].is_null())
        {
            screen.finish(node);
            bail!(
                "node {node} is {state}: {}",
                v.raw["last_error"].as_str().unwrap_or("no last_error")
            );
        }
        if start.elapsed() > Duration::from_secs(limit) {
            let step = v.step.map(|s| format!(" step {s}")).unwrap_or_default();
            bail!("node {node} did not finish {verb} within {limit} s (now {state}{step})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn provision(
    c: &Client,
    v: &Verb,
    target: &str,
    extra: Map<String, Value>,
    json_out: bool,
) -> anyhow::Result<()> {
    let mut body = extra;
    body.insert("target".into(), json!(target));
    c.call(
        "PUT",
        &format!("/v1/nodes/{}/states/provision", v.node),
        Some(&Value::Object(body)),
    )
    .await?;
    match v.wait {
        Some(limit) => {
            let n = wait_for(c, &v.node, target, limit).await?;
            if json_out {
                print(true, &n, output::object);
            } else {
                println!(
                    "node {} is {}",
                    v.node,
                    n["provision_state"].as_str().unwrap_or("?")
                );
            }
        }
        None => {
            if !json_out {
                println!("requested {target} for node {}", v.node);
            }
        }
    }
    Ok(())
}

pub async fn node(c: &Client, cmd: NodeCmd, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Create(f) => {
            let n = c.call("POST", "/v1/nodes", Some(&create_body(&f)?)).await?;
            print(json_out, &n, output::object);
        }
        NodeCmd::List {
            long,
            provision_state,
        } => {
            let mut path = if long {
                "/v1/nodes?detail=true".to_string()
            } else {
                "/v1/nodes?limit=1000".to_string()
            };
            if let Some(ps) = provision_state {
                path.push_str(&format!("&provision_state={}", ps.replace(' ', "%20")));
            }
            let mut all = vec![];
            loop {
                let page = c.call("GET", &path, None).await?;
                all.extend(page["nodes"].as_array().cloned().unwrap_or_default());
                match page["next"].as_str() {
                    Some(next) => path = next.strip_prefix(&c.base).unwrap_or(next).to_string(),
                    None => break,
                }
            }
            let v = Value::Array(all);
            print(json_out, &v, |v| {
                output::list(
                    v.as_array().map(Vec::as_slice).unwrap_or(&[]),
                    if long { NODE_LONG } else { NODE_COLUMNS },
                )
            });
        }
        NodeCmd::Show { node } => {
            let n = c.call("GET", &format!("/v1/nodes/{node}"), None).await?;
            print(json_out, &n, output::object);
        }
        NodeCmd::Set { node, fields } => {
            let ops: Vec<Value> = field_ops(&fields)?
                .into_iter()
                .map(|(path, value)| json!({"op": "add", "path": path, "value": value}))
                .collect();
            if ops.is_empty() {
                bail!("nothing to set: pass --name, --driver-info KEY=VALUE, --property, --instance-info, …");
            }
            let n = c
                .call(
                    "PATCH",
                    &format!("/v1/nodes/{node}"),
                    Some(&Value::Array(ops)),
                )
                .await?;
            print(json_out, &n, output::object);
        }
        NodeCmd::Unset {
            node,
            name,
            driver_info,
            properties,
            instance_info,
        } => {
            let mut ops = vec![];
            if name {
                ops.push(json!({"op": "remove", "path": "/name"}));
            }
            for (g, keys) in [
                ("driver_info", driver_info),
                ("properties", properties),
                ("instance_info", instance_info),
            ] {
                for k in keys {
                    ops.push(json!({"op": "remove", "path": format!("/{g}/{k}")}));
                }
            }
            if ops.is_empty() {
                bail!("nothing to unset: pass --name, --driver-info KEY, --property KEY or --instance-info KEY");
            }
            let n = c
                .call(
                    "PATCH",
                    &format!("/v1/nodes/{node}"),
                    Some(&Value::Array(ops)),
                )
                .await?;
            print(json_out, &n, output::object);
        }
        NodeCmd::Delete { node } => {
            c.call("DELETE", &format!("/v1/nodes/{node}"), None).await?;
            if !json_out {
                println!("deleted node {node}");
            }
        }
        NodeCmd::Manage(v) => provision(c, &v, "manage", Map::new(), json_out).await?,
        NodeCmd::Provide(v) => provision(c, &v, "provide", Map::new(), json_out).await?,
        NodeCmd::Inspect(v) => provision(c, &v, "inspect", Map::new(), json_out).await?,
        NodeCmd::Undeploy(v) => provision(c, &v, "deleted", Map::new(), json_out).await?,
        NodeCmd::Rebuild(v) => provision(c, &v, "rebuild", Map::new(), json_out).await?,
        NodeCmd::Abort(v) => provision(c, &v, "abort", Map::new(), json_out).await?,
        NodeCmd::Rescue { verb, password } => {
            let mut m = Map::new();
            m.insert("rescue_password".into(), Value::String(password));
            provision(c, &verb, "rescue", m, json_out).await?
        }
        NodeCmd::Unrescue(v) => provision(c, &v, "unrescue", Map::new(), json_out).await?,
        NodeCmd::Clean { verb, clean_steps } => {
            let steps: Value = serde_json::from_str(&clean_steps)
                .context("--clean-steps must be a JSON list of steps")?;
            let mut m = Map::new();
            m.insert("clean_steps".into(), steps);
            provision(c, &verb, "clean", m, json_out).await?
        }
        NodeCmd::Deploy { verb, config_drive } => {
            let mut m = Map::new();
            if let Some(cd) = config_drive {
                let v = serde_json::from_str::<Value>(&cd)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or(Value::String(cd));
                m.insert("configdrive".into(), v);
            }
            provision(c, &verb, "active", m, json_out).await?
        }
        NodeCmd::Power { action, node } => {
            let target = match action.as_str() {
                "on" => "power on",
                "off" => "power off",
                _ => "rebooting",
            };
            c.call(
                "PUT",
                &format!("/v1/nodes/{node}/states/power"),
                Some(&json!({"target": target})),
            )
            .await?;
            if !json_out {
                println!("requested {target} for node {node}");
            }
        }
        NodeCmd::BootDevice {
            node,
            device,
            persistent,
            ..
        } => {
            c.call(
                "PUT",
                &format!("/v1/nodes/{node}/management/boot_device"),
                Some(&json!({"boot_device": device, "persistent": persistent})),
            )
            .await?;
            if !json_out {
                println!("boot device of {node} set to {device}");
            }
        }
        NodeCmd::Logs {
            node,
            list,
            archive,
            file,
            tail,
            save,
        } => {
            let args = super::logs::Args {
                node,
                list,
                archive,
                file,
                tail,
                save,
            };
            super::logs::logs(c, args, json_out).await?
        }
        NodeCmd::Watch { nodes, interval } => {
            super::watch::watch(c, nodes, Duration::from_secs_f64(interval.max(0.1))).await?
        }
        NodeCmd::History { node, events } => {
            if events {
                let v = c
                    .call(
                        "GET",
                        &format!("/v1/nodes/{node}/history?detail=true"),
                        None,
                    )
                    .await?;
                let items = v["history"].clone();
                print(json_out, &items, |v| {
                    super::timeline::events(v.as_array().map(Vec::as_slice).unwrap_or(&[]))
                });
            } else {
                let v = c
                    .call("GET", &format!("/v1/nodes/{node}/timeline"), None)
                    .await?;
                print(json_out, &v, |v| {
                    super::timeline::table(
                        v["timeline"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                    )
                });
            }
        }
        NodeCmd::Validate { node } => {
            let v = c
                .call("GET", &format!("/v1/nodes/{node}/validate"), None)
                .await?;
            print(json_out, &v, |v| {
                let rows: Vec<Vec<String>> = v
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, r)| {
                                vec![
                                    k.clone(),
                                    r["result"].to_string(),
                                    r["reason"].as_str().unwrap_or("").to_string(),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                output::table(&["Interface", "Result", "Reason"], &rows)
            });
        }
    }
    Ok(())
}

pub async fn port(c: &Client, cmd: PortCmd, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        PortCmd::Create {
            address,
            node,
            pxe_enabled,
        } => {
            let mut body = json!({"address": address, "node_uuid": node});
            if let Some(p) = pxe_enabled {
                body["pxe_enabled"] = json!(p);
            }
            let p = c.call("POST", "/v1/ports", Some(&body)).await?;
            print(json_out, &p, output::object);
        }
        PortCmd::List { node } => {
            let path = match node {
                Some(n) => format!("/v1/nodes/{n}/ports?detail=true"),
                None => "/v1/ports?detail=true".into(),
            };
            let v = c.call("GET", &path, None).await?;
            let ports = v["ports"].clone();
            print(json_out, &ports, |p| {
                output::list(
                    p.as_array().map(Vec::as_slice).unwrap_or(&[]),
                    &[
                        ("uuid", "UUID"),
                        ("address", "Address"),
                        ("node_uuid", "Node"),
                        ("pxe_enabled", "PXE"),
                    ],
                )
            });
        }
        PortCmd::Delete { port } => {
            c.call("DELETE", &format!("/v1/ports/{port}"), None).await?;
            if !json_out {
                println!("deleted port {port}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_keep_types() {
        assert_eq!(kv("a=1").unwrap(), ("a".into(), json!(1)));
        assert_eq!(kv("a=x y").unwrap(), ("a".into(), json!("x y")));
        assert!(kv("novalue").is_err());
        assert!(kv("=x").is_err());
    }

    #[test]
    fn create_needs_a_driver() {
        let f = NodeFields {
            name: Some("n".into()),
            driver_info: vec!["ipmi_port=623".into()],
            ..Default::default()
        };
        assert!(create_body(&f)
            .unwrap_err()
            .to_string()
            .contains("--driver"));
        let f = NodeFields {
            driver: Some("fake-hardware".into()),
            ..f
        };
        assert_eq!(
            create_body(&f).unwrap(),
            json!({"driver": "fake-hardware", "name": "n", "driver_info": {"ipmi_port": 623}})
        );
    }
}
