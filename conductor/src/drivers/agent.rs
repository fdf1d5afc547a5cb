//! The agent-driven interfaces, `direct` deploy (the agent writes the image with
//! `standby.prepare_image`) and `agent` inspection, and how drivers and engine call the
//! agent: [`AgentApi`] (over HTTP in `agent_client`, scripted in unit tests by
//! [`super::scripted_agent`]) with ferrite-proto's typed parameters and results.

use ferrite_proto::agent::{names_command, CommandResult, CommandStatus};
use ferrite_proto::commands::{
    self as cmd, CommandFailure, InstallBootloaderParams, PrepareImageParams, PrepareImageResult,
};
use ferrite_proto::image::{ImageInfo, PARTITION, WHOLE_DISK};
use ferrite_proto::steps::{ExecuteStepResult, StepKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::*;
use crate::agent_client::{AgentClient, AgentError, AgentTarget};
use crate::model::Obj;

/// The agent API as the conductor uses it (CONTRACT.md §1).
pub trait AgentApi: Send + Sync {
    /// Runs `name`; with `wait` the agent answers once the command has ended.
    fn command<'a>(
        &'a self,
        t: &'a AgentTarget<'a>,
        name: &'a str,
        params: Map<String, Value>,
        wait: bool,
    ) -> BoxFut<'a, Result<CommandResult, AgentError>>;
    /// The current state of command `id`.
    fn get_command<'a>(
        &'a self,
        t: &'a AgentTarget<'a>,
        id: &'a str,
    ) -> BoxFut<'a, Result<CommandResult, AgentError>>;
}

impl AgentApi for AgentClient {
    fn command<'a>(
        &'a self,
        t: &'a AgentTarget<'a>,
        name: &'a str,
        params: Map<String, Value>,
        wait: bool,
    ) -> BoxFut<'a, Result<CommandResult, AgentError>> {
        Box::pin(AgentClient::command(self, t, name, params, wait))
    }
    fn get_command<'a>(
        &'a self,
        t: &'a AgentTarget<'a>,
        id: &'a str,
    ) -> BoxFut<'a, Result<CommandResult, AgentError>> {
        Box::pin(AgentClient::get_command(self, t, id))
    }
}

/// Why a call to the agent did not give the answer the caller needs.
#[derive(Debug, thiserror::Error)]
pub enum AgentCallError {
    #[error("the agent has not heartbeated yet, so its URL is unknown")]
    NoUrl,
    #[error("calling {command} on the agent failed")]
    Call {
        command: String,
        #[source]
        source: AgentError,
    },
    /// The command ran and failed; `failure` is the agent's own account of it.
    #[error("{command} failed on the agent: {failure}")]
    Failed { command: String, failure: String },
    #[error("{command} was still running when the agent answered")]
    Unfinished { command: String },
    #[error("the agent's result of {command} is not what the protocol describes")]
    BadResult {
        command: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Where to reach the node's agent.
pub fn target(node: &Node) -> Result<AgentTarget<'_>, AgentCallError> {
    let url = node.agent_url.as_deref().ok_or(AgentCallError::NoUrl)?;
    Ok(AgentTarget {
        url,
        token: node.agent_token.as_deref(),
        verify_ca: node.agent_verify_ca.as_deref(),
    })
}

/// An asynchronous agent command the node waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommand {
    pub id: String,
    pub name: String,
}

/// Where a step that may run on the agent stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The work is done.
    Done,
    /// An agent command does the work; a heartbeat polls it.
    Running(PendingCommand),
}

fn call_error(command: &str) -> impl FnOnce(AgentError) -> AgentCallError + '_ {
    move |source| AgentCallError::Call {
        command: command.into(),
        source,
    }
}

/// Runs `name` to its end and reads its `command_result` as `R`.
pub async fn run<R: DeserializeOwned>(
    api: &dyn AgentApi,
    node: &Node,
    name: &str,
    params: &impl Serialize,
) -> Result<R, AgentCallError> {
    let t = target(node)?;
    let r = api
        .command(&t, name, cmd::to_params(params), true)
        .await
        .map_err(call_error(name))?;
    match r.command_status {
        CommandStatus::Succeeded => result_of(name, &r),
        CommandStatus::Failed | CommandStatus::VersionMismatch => Err(failed(name, &r)),
        CommandStatus::Running => Err(AgentCallError::Unfinished {
            command: name.into(),
        }),
    }
}

/// `command_result` of a finished command as `R` (no result reads as `{}`).
pub fn result_of<R: DeserializeOwned>(name: &str, r: &CommandResult) -> Result<R, AgentCallError> {
    let v = r
        .command_result
        .clone()
        .unwrap_or_else(|| Value::Object(Map::new()));
    serde_json::from_value(v).map_err(|source| AgentCallError::BadResult {
        command: name.into(),
        source,
    })
}

/// The error of a failed command `name`.
pub fn failed(name: &str, r: &CommandResult) -> AgentCallError {
    AgentCallError::Failed {
        command: name.into(),
        failure: CommandFailure::describe(r.command_error.as_ref()),
    }
}

/// Starts `name` without waiting for it. A command that ended at once leaves its facts on
/// the node ([`record_result`]); one that still runs is returned for polling.
pub async fn start(
    api: &dyn AgentApi,
    node: &mut Node,
    name: &str,
    params: &impl Serialize,
) -> Result<Progress, AgentCallError> {
    let r = {
        let t = target(node)?;
        api.command(&t, name, cmd::to_params(params), false)
            .await
            .map_err(call_error(name))?
    };
    match r.command_status {
        CommandStatus::Succeeded => {
            record_result(node, &r);
            Ok(Progress::Done)
        }
        CommandStatus::Failed | CommandStatus::VersionMismatch => Err(failed(name, &r)),
        CommandStatus::Running => Ok(Progress::Running(PendingCommand {
            id: r.id,
            name: name.into(),
        })),
    }
}

/// The state of the command the node waits for.
pub async fn poll(
    api: &dyn AgentApi,
    node: &Node,
    pending: &PendingCommand,
) -> Result<CommandResult, AgentCallError> {
    let t = target(node)?;
    api.get_command(&t, &pending.id)
        .await
        .map_err(call_error(&pending.name))
}

/// Facts a finished agent command leaves on the node: after `prepare_image` (or the
/// agent's `write_image` deploy step, whose `deploy_result` is prepare_image's result), the
/// root UUID it reported (`root_uuid_or_disk_id`, as Ironic keeps it).
pub fn record_result(node: &mut Node, r: &CommandResult) {
    // IPA names commands without their extension in results (`prepare_image`).
    let written = if names_command(&r.command_name, cmd::PREPARE_IMAGE) {
        result_of::<PrepareImageResult>(&r.command_name, r).ok()
    } else if names_command(&r.command_name, cmd::EXECUTE_DEPLOY_STEP) {
        result_of::<ExecuteStepResult>(&r.command_name, r)
            .ok()
            .filter(|s| s.step_name(StepKind::Deploy) == Some("write_image"))
            .and_then(|s| s.deploy_result)
            .and_then(|v| serde_json::from_value::<PrepareImageResult>(v).ok())
    } else {
        None
    };
    let Some(result) = written else {
        return;
    };
    if let Some(uuid) = result.root_uuid() {
        node.driver_internal_info
            .insert("root_uuid_or_disk_id".into(), Value::String(uuid.into()));
    }
    if let Some(uuid) = result.efi_system_partition_uuid() {
        node.driver_internal_info
            .insert(EFI_PART_UUID.into(), Value::String(uuid.into()));
    }
}

/// Where the ESP's UUID from prepare_image's message is kept.
const EFI_PART_UUID: &str = "efi_system_partition_uuid";

/// `image.install_bootloader` parameters for a node deployed with a partition image, as
/// Ironic's `configure_local_boot` sends them: the root and ESP UUIDs the agent reported
/// after writing, and the boot mode the image was laid out for. `None` for whole-disk
/// images, which keep their own boot loader.
pub fn install_bootloader_params(node: &Node) -> Option<InstallBootloaderParams> {
    let partition = node.instance_info.get("image_type").and_then(Value::as_str) == Some(PARTITION);
    if !partition {
        return None;
    }
    let internal = |k: &str| {
        node.driver_internal_info
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let boot_mode = node.boot_mode();
    Some(InstallBootloaderParams {
        root_uuid: internal("root_uuid_or_disk_id"),
        efi_system_part_uuid: if boot_mode == "uefi" {
            internal(EFI_PART_UUID)
        } else {
            None
        },
        prep_boot_part_uuid: None,
        target_boot_mode: Some(boot_mode),
        ignore_bootloader_failure: None,
    })
}

/// `image_info` for `standby.prepare_image` from the node's `instance_info` (CONTRACT.md §5).
/// A partition image also gets its layout, as Ironic sends it: sizes (`root_gb`/`root_mb`,
/// `swap_mb`, `ephemeral_gb`/`ephemeral_mb`), `disk_label` and `boot_mode` from the
/// capabilities (instance_info's first, then the node's), `deploy_boot_mode` defaulting to
/// uefi as Ironic's does.
pub fn image_info(node: &Node) -> DResult<ImageInfo> {
    let ii = &node.instance_info;
    let source = text(ii, "image_source")?.unwrap_or_default();
    let image_type = text(ii, "image_type")?.unwrap_or_else(|| WHOLE_DISK.into());
    let partition = image_type == PARTITION;
    let mut info = ImageInfo {
        id: source.clone(),
        urls: vec![source],
        disk_format: Some(text(ii, "image_disk_format")?.unwrap_or_else(|| "raw".into())),
        image_type: Some(image_type),
        os_hash_algo: text(ii, "image_os_hash_algo")?,
        os_hash_value: text(ii, "image_os_hash_value")?,
        checksum: text(ii, "image_checksum")?,
        stream_raw_images: Some(true),
        node_uuid: Some(node.uuid.clone()),
        ..ImageInfo::default()
    };
    if !partition {
        return Ok(info);
    }
    info.root_mb = mebibytes(ii, "root")?;
    info.swap_mb = mebibytes(ii, "swap")?;
    info.ephemeral_mb = mebibytes(ii, "ephemeral")?;
    info.ephemeral_format = text(ii, "ephemeral_format")?;
    info.preserve_ephemeral = flag(ii, "preserve_ephemeral")?;
    info.disk_label = node.capability("disk_label");
    info.deploy_boot_mode = Some(node.boot_mode());
    info.boot_option = Some("local".into());
    Ok(info)
}

/// Whether the image would be checked with MD5: `image_os_hash_algo` says md5, or only
/// the legacy `image_checksum` is set and is a 32-digit value (what the agent takes for
/// MD5, as IPA). A checksum file URL is judged by the agent, which sees its entries.
pub fn checksum_is_md5(node: &Node) -> bool {
    let ii = &node.instance_info;
    let field = |k: &str| ii.get(k).and_then(Value::as_str);
    let spec = ferrite_image::checksum::spec(
        field("image_os_hash_algo"),
        field("image_os_hash_value"),
        field("image_checksum"),
    );
    let algo_named_md5 = field("image_os_hash_algo").is_some_and(|a| a.eq_ignore_ascii_case("md5"));
    match spec {
        Ok(ferrite_image::checksum::Spec::Value(e)) => e.algo == ferrite_image::checksum::Algo::Md5,
        // A malformed value is the agent's to report; a named md5 is refused all the same.
        _ => algo_named_md5,
    }
}

/// The config drive of the deploy (`instance_info.configdrive`): base64 of a gzipped
/// image or an http(s) URL; the API turned a dict into an image already.
pub fn configdrive(node: &Node) -> DResult<Option<String>> {
    match node.instance_info.get("configdrive") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(DriverError::invalid(
            "instance_info.configdrive must be a base64 gzip string or an http(s) URL; \
             deploy again with --config-drive to replace it",
        )),
    }
}

/// A string of instance_info, if set.
fn text(ii: &Obj, key: &str) -> DResult<Option<String>> {
    match ii.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(DriverError::Invalid(format!(
            "instance_info.{key} must be a string, got {v}; fix it with `ferrite node set`"
        ))),
    }
}

/// `NAME_mb`, or `NAME_gb` × 1024, from instance_info: a whole number (or a string of one).
fn mebibytes(ii: &Obj, name: &str) -> DResult<Option<u64>> {
    let whole = |k: &str| -> DResult<Option<u64>> {
        match ii.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(Value::String(s)) if s.trim().parse::<u64>().is_ok() => {
                Ok(s.trim().parse::<u64>().ok())
            }
            Some(v) => Err(DriverError::Invalid(format!(
                "instance_info.{k} must be a whole number, got {v}; fix it with `ferrite node set`"
            ))),
        }
    };
    if let Some(mb) = whole(&format!("{name}_mb"))? {
        return Ok(Some(mb));
    }
    Ok(whole(&format!("{name}_gb"))?.map(|gb| gb.saturating_mul(1024)))
}

/// A boolean of instance_info, also as the strings "true"/"false" (the CLI sets strings).
fn flag(ii: &Obj, key: &str) -> DResult<Option<bool>> {
    match ii.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(DriverError::Invalid(format!(
            "instance_info.{key} must be true or false, got {v}; fix it with `ferrite node set`"
        ))),
    }
}

/// Streams the image through the agent (`standby.prepare_image`).
pub struct DirectDeploy;

impl Deploy for DirectDeploy {
    fn name(&self) -> &'static str {
        "direct"
    }
    fn agent_installs_bootloader(&self) -> bool {
        true
    }
    fn validate(&self, node: &Node) -> DResult<()> {
        let ii = &node.instance_info;
        if ii.get("image_source").and_then(|v| v.as_str()).is_none() {
            return Err(DriverError::invalid(
                "instance_info.image_source is missing: set it to the image URL \
                 (and image_checksum or image_os_hash_value)",
            ));
        }
        Ok(())
    }
    fn uses_agent(&self) -> bool {
        true
    }
    fn write_image<'a>(
        &'a self,
        agent: &'a dyn AgentApi,
        node: &'a mut Node,
    ) -> BoxFut<'a, DResult<Progress>> {
        Box::pin(async move {
            let params = PrepareImageParams {
                image_info: image_info(node)?,
                configdrive: configdrive(node)?,
            };
            Ok(start(agent, node, cmd::PREPARE_IMAGE, &params).await?)
        })
    }
    fn deploy_steps(&self) -> Vec<Step> {
        agent_deploy_steps()
    }
    fn clean_steps(&self) -> Vec<Step> {
        vec![]
    }
}

/// Boots the agent and waits for its inventory (`POST /v1/continue_inspection`).
pub struct AgentInspect;

impl Inspect for AgentInspect {
    fn name(&self) -> &'static str {
        "agent"
    }
    fn validate(&self, _node: &Node) -> DResult<()> {
        Ok(())
    }
    fn uses_agent(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripted_agent::ScriptedAgent;
    use super::*;
    use serde_json::json;

    fn node_with(instance_info: Value, properties: Value) -> Node {
        let mut n = crate::api::nodes::blank_node();
        n.instance_info = instance_info.as_object().cloned().unwrap_or_default();
        n.properties = properties.as_object().cloned().unwrap_or_default();
        n.agent_url = Some("http://agent.test:9999".into());
        n
    }

    #[test]
    fn partition_images_get_their_layout_as_ironic_sends_it() {
        let n = node_with(
            json!({"image_source": "http://i/root.img", "image_type": "partition",
                   "root_gb": 10, "swap_mb": "512", "ephemeral_gb": "2",
                   "preserve_ephemeral": "false",
                   "capabilities": {"disk_label": "msdos"}}),
            json!({"capabilities": "boot_mode:bios,disk_label:gpt"}),
        );
        let i = image_info(&n).unwrap();
        assert_eq!(i.image_type.as_deref(), Some("partition"));
        assert_eq!(i.root_mb, Some(10 * 1024));
        assert_eq!(i.swap_mb, Some(512));
        assert_eq!(i.ephemeral_mb, Some(2048));
        assert_eq!(i.preserve_ephemeral, Some(false));
        assert_eq!(
            i.disk_label.as_deref(),
            Some("msdos"),
            "instance_info's capabilities win"
        );
        assert_eq!(
            i.deploy_boot_mode.as_deref(),
            Some("bios"),
            "then the node's"
        );
        let wire = serde_json::to_value(&i).unwrap();
        assert_eq!(wire["root_mb"], 10240);
        assert_eq!(wire["boot_option"], "local");

        let plain = node_with(
            json!({"image_source": "http://i/root.img", "image_type": "partition", "root_mb": 64}),
            json!({}),
        );
        let i = image_info(&plain).unwrap();
        assert_eq!(
            i.deploy_boot_mode.as_deref(),
            Some("uefi"),
            "Ironic's default boot mode"
        );
        assert_eq!(i.disk_label, None);
        assert_eq!(i.root_mb, Some(64));

        let whole = node_with(
            json!({"image_source": "http://i/disk.raw", "root_gb": 10,
                   "image_os_hash_algo": "sha256", "image_os_hash_value": "ab"}),
            json!({}),
        );
        let i = image_info(&whole).unwrap();
        assert_eq!(i.image_type.as_deref(), Some("whole-disk"));
        assert_eq!(i.disk_format.as_deref(), Some("raw"));
        assert_eq!(i.root_mb, None, "whole-disk images carry no layout");
        let wire = serde_json::to_value(&i).unwrap();
        assert_eq!(
            wire,
            json!({"id": "http://i/disk.raw", "urls": ["http://i/disk.raw"],
                   "disk_format": "raw", "image_type": "whole-disk",
                   "os_hash_algo": "sha256", "os_hash_value": "ab",
                   "stream_raw_images": true, "node_uuid": whole.uuid})
        );
    }

    #[test]
    fn bad_instance_info_says_which_field() {
        for (field, v) in [
            ("root_gb", json!("ten")),
            ("swap_mb", json!(-1)),
            ("preserve_ephemeral", json!("yes")),
            ("image_checksum", json!(12)),
        ] {
            let mut ii = json!({"image_source": "http://i/r.img", "image_type": "partition"});
            ii[field] = v;
            let e = image_info(&node_with(ii, json!({})))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("instance_info.{field}")), "{e}");
        }
        let n = node_with(json!({"configdrive": {"meta_data": {}}}), json!({}));
        let e = configdrive(&n).unwrap_err().to_string();
        assert!(e.contains("instance_info.configdrive"), "{e}");
    }

    #[test]
    fn prepare_image_result_leaves_the_root_uuid() {
        let mut n = node_with(json!({}), json!({}));
        let r = |name: &str, msg: &str| CommandResult {
            id: "1".into(),
            command_name: name.into(),
            command_params: Map::new(),
            command_status: CommandStatus::Succeeded,
            command_error: None,
            command_result: Some(json!({"result": msg})),
        };
        record_result(&mut n, &r("prepare_image", "prepare_image: image (x) written to device /dev/sda root_uuid=0x1234abcd; config drive written"));
        assert_eq!(n.driver_internal_info["root_uuid_or_disk_id"], "0x1234abcd");
        let mut m = node_with(json!({}), json!({}));
        record_result(&mut m, &r("execute_clean_step", "root_uuid=nope"));
        record_result(&mut m, &r("prepare_image", "written root_uuid="));
        assert!(!m.driver_internal_info.contains_key("root_uuid_or_disk_id"));
        // IPA's write_image deploy step: prepare_image's result nested in deploy_result.
        let mut step = r("execute_deploy_step", "");
        step.command_result = Some(json!({
            "deploy_result": {"result": "prepare_image: image (x) written to device /dev/vda root_uuid=0xfeedbeef"},
            "deploy_step": {"interface": "deploy", "step": "write_image", "args": {}},
        }));
        let mut d = node_with(json!({}), json!({}));
        record_result(&mut d, &step);
        assert_eq!(d.driver_internal_info["root_uuid_or_disk_id"], "0xfeedbeef");
        step.command_result.as_mut().unwrap()["deploy_step"]["step"] = json!("other");
        let mut o = node_with(json!({}), json!({}));
        record_result(&mut o, &step);
        assert!(!o.driver_internal_info.contains_key("root_uuid_or_disk_id"));
    }

    #[test]
    fn partition_images_get_install_bootloader_params_as_ironic_sends_them() {
        let r = CommandResult {
            id: "1".into(),
            command_name: "prepare_image".into(),
            command_params: Map::new(),
            command_status: CommandStatus::Succeeded,
            command_error: None,
            command_result: Some(
                json!({"result": "prepare_image: image (x) written to device /dev/vda root_uuid=f3e7a1d0-5e1f-4c2b-9a7d-0000000f0017 efi_system_partition_uuid=ABCD-1234"}),
            ),
        };
        let mut n = node_with(json!({"image_type": "partition"}), json!({}));
        record_result(&mut n, &r);
        let p = install_bootloader_params(&n).expect("a partition image gets a boot loader");
        assert_eq!(
            p.root_uuid.as_deref(),
            Some("f3e7a1d0-5e1f-4c2b-9a7d-0000000f0017")
        );
        assert_eq!(p.efi_system_part_uuid.as_deref(), Some("ABCD-1234"));
        assert_eq!(
            p.target_boot_mode.as_deref(),
            Some("uefi"),
            "Ironic's default"
        );
        // BIOS: no ESP passed.
        n.properties
            .insert("capabilities".into(), json!("boot_mode:bios"));
        let p = install_bootloader_params(&n).unwrap();
        assert_eq!(p.target_boot_mode.as_deref(), Some("bios"));
        assert_eq!(p.efi_system_part_uuid, None);
        // Whole-disk images keep their own loader: nothing to send.
        assert!(install_bootloader_params(&node_with(json!({}), json!({}))).is_none());
    }

    #[tokio::test]
    async fn direct_write_image_starts_prepare_image_with_typed_params() {
        let agent = ScriptedAgent::new();
        agent.running(cmd::PREPARE_IMAGE, "c1");
        let mut n = node_with(
            json!({"image_source": "http://i/disk.qcow2", "image_disk_format": "qcow2",
                   "image_checksum": "d41d8cd98f00b204e9800998ecf8427e",
                   "configdrive": "H4sIAAAA"}),
            json!({}),
        );
        let p = DirectDeploy.write_image(&agent, &mut n).await.unwrap();
        assert_eq!(
            p,
            Progress::Running(PendingCommand {
                id: "c1".into(),
                name: cmd::PREPARE_IMAGE.into()
            })
        );
        let calls = agent.calls();
        assert_eq!(calls.len(), 1);
        assert!(!calls[0].wait, "prepare_image runs asynchronously");
        // What the agent parses it with.
        let sent: PrepareImageParams =
            serde_json::from_value(Value::Object(calls[0].params.clone())).unwrap();
        assert_eq!(sent.image_info.disk_format.as_deref(), Some("qcow2"));
        assert_eq!(sent.configdrive.as_deref(), Some("H4sIAAAA"));
        assert_eq!(sent.image_info.node_uuid.as_deref(), Some(n.uuid.as_str()));
    }

    #[tokio::test]
    async fn direct_write_image_reports_the_agents_failure() {
        let agent = ScriptedAgent::new();
        agent.failed(
            cmd::PREPARE_IMAGE,
            json!({"type": "ImageDownloadError", "code": 500,
                   "message": "Error downloading image", "details": "HTTP 404 from http://i/x"}),
        );
        let mut n = node_with(json!({"image_source": "http://i/x"}), json!({}));
        let e = DirectDeploy.write_image(&agent, &mut n).await.unwrap_err();
        assert_eq!(
            crate::error_chain(&e),
            "standby.prepare_image failed on the agent: Error downloading image: HTTP 404 from http://i/x"
        );

        let agent = ScriptedAgent::new();
        agent.done(
            cmd::PREPARE_IMAGE,
            json!({"result": "prepare_image: image (x) written to device /dev/vda root_uuid=0xabcd"}),
        );
        assert_eq!(
            DirectDeploy.write_image(&agent, &mut n).await.unwrap(),
            Progress::Done
        );
        assert_eq!(n.driver_internal_info["root_uuid_or_disk_id"], "0xabcd");

        n.agent_url = None;
        let e = DirectDeploy.write_image(&agent, &mut n).await.unwrap_err();
        assert!(e.to_string().contains("has not heartbeated"), "{e}");
    }
}
