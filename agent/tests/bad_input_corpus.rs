//! Issue 15's bad-input corpus, agent side: malformed and hostile requests against a real
//! agent API on a loopback socket, sent as raw bytes so nothing gets tidied on the way.
//! Every one is answered 4xx with an IPA fault naming what was wrong (a few framing errors
//! are refused by hyper before our code sees them: 4xx without a body); none is 5xx; the
//! agent keeps serving; and none started a command, ran a system hook, cached a node or
//! locked the agent down. The conductor's half is conductor/tests/bad_input_corpus.rs.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Agent, TOKEN};
use ferrite_agent::state::AgentConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Small, so a "huge" body is cheap to send; the rules are the same at any limit.
const BODY_LIMIT: usize = 64 * 1024;

/// What a case must get back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// A 4xx IPA fault (`faultcode` Client) whose faultstring contains this.
    Fault(u16, &'static str),
    /// Refused by hyper's HTTP parser: a 4xx status line (hyper sends no body), or the
    /// connection closed when what came was not HTTP at all.
    Framing,
}

struct Case {
    what: String,
    bytes: Vec<u8>,
    expect: Expect,
    /// Close our sending side after the request (a body that never completes).
    half_close: bool,
}

fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n");
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn commands_url() -> String {
    format!("/v1/commands/?agent_token={TOKEN}")
}

/// Builds the corpus; `case` adds one POST of `body` to the command endpoint.
struct Corpus(Vec<Case>);

impl Corpus {
    fn add(&mut self, what: impl Into<String>, bytes: Vec<u8>, expect: Expect) {
        self.0.push(Case {
            what: what.into(),
            bytes,
            expect,
            half_close: false,
        });
    }

    fn body(&mut self, what: impl Into<String>, body: impl AsRef<[u8]>, expect: Expect) {
        let bytes = request(
            "POST",
            &commands_url(),
            &[("Content-Type", "application/json")],
            body.as_ref(),
        );
        self.add(what, bytes, expect);
    }

    /// A well-formed body for command `name` with bad `params`.
    fn params(&mut self, name: &str, params: Value, needle: &'static str) {
        let body = json!({"name": name, "params": params}).to_string();
        self.body(format!("{name} {params}"), body, Expect::Fault(400, needle));
    }
}

fn corpus() -> Vec<Case> {
    let mut c = Corpus(vec![]);
    token_cases(&mut c);
    body_cases(&mut c);
    param_cases(&mut c);
    unknown_command_cases(&mut c);
    path_and_method_cases(&mut c);
    header_and_size_cases(&mut c);
    c.0
}

fn token_cases(c: &mut Corpus) {
    use Expect::Fault;
    let overlong = "t".repeat(8000);
    let tokens: Vec<(&str, String, &'static str)> = vec![
        ("no token", String::new(), "requires its token"),
        ("empty token", "?agent_token=".into(), "does not match"),
        ("wrong token", "?agent_token=wrong".into(), "does not match"),
        (
            "token of other case",
            format!("?agent_token={}", TOKEN.to_uppercase()),
            "does not match",
        ),
        (
            "token prefix",
            format!("?agent_token={}", &TOKEN[..TOKEN.len() - 1]),
            "does not match",
        ),
        (
            "token plus a byte",
            format!("?agent_token={TOKEN}x"),
            "does not match",
        ),
        (
            "token with NUL",
            format!("?agent_token={TOKEN}%00"),
            "does not match",
        ),
        (
            "token with trailing space",
            format!("?agent_token={TOKEN}%20"),
            "does not match",
        ),
        (
            "token in unicode",
            "?agent_token=%E2%80%AE%F0%9F%94%91".into(),
            "does not match",
        ),
        (
            "invalid UTF-8 token",
            "?agent_token=%FF%FE".into(),
            "does not match",
        ),
        (
            "overlong token",
            format!("?agent_token={overlong}"),
            "does not match",
        ),
        (
            "wrong token first, right one second",
            format!("?agent_token=wrong&agent_token={TOKEN}"),
            "does not match",
        ),
        (
            "token under another name",
            format!("?token={TOKEN}"),
            "requires its token",
        ),
        (
            "token name in other case",
            format!("?Agent_Token={TOKEN}"),
            "requires its token",
        ),
    ];
    let good_cmd = json!({"name": "standby.sync", "params": {}}).to_string();
    for (what, query, needle) in &tokens {
        c.add(
            format!("GET list, {what}"),
            request("GET", &format!("/v1/commands/{query}"), &[], b""),
            Fault(401, needle),
        );
        c.add(
            format!("POST standby.sync, {what}"),
            request(
                "POST",
                &format!("/v1/commands/{query}"),
                &[],
                good_cmd.as_bytes(),
            ),
            Fault(401, needle),
        );
        c.add(
            format!("GET one command, {what}"),
            request("GET", &format!("/v1/commands/some-id{query}"), &[], b""),
            Fault(401, needle),
        );
    }
    // Places a token is not read from.
    for (header, value) in [
        ("X-Auth-Token", TOKEN.to_string()),
        ("Authorization", format!("Bearer {TOKEN}")),
        ("Cookie", format!("agent_token={TOKEN}")),
    ] {
        c.add(
            format!("token in {header}"),
            request(
                "POST",
                "/commands",
                &[(header, &value)],
                good_cmd.as_bytes(),
            ),
            Fault(401, "requires its token"),
        );
    }
    let form = format!("agent_token={TOKEN}");
    c.add(
        "token in a form body",
        request(
            "POST",
            "/v1/commands",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        ),
        Fault(401, "requires its token"),
    );
}

fn body_cases(c: &mut Corpus) {
    use Expect::Fault;
    let json_err = "not valid JSON";
    let object = "must be a JSON object";
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_params = format!(
        r#"{{"name":"standby.sync","params":{}1{}}}"#,
        r#"{"a":"#.repeat(3000),
        "}".repeat(3000)
    );
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("empty body", b"".to_vec(), Fault(400, json_err)),
        (
            "only whitespace",
            b" \r\n\t ".to_vec(),
            Fault(400, json_err),
        ),
        ("open brace", b"{".to_vec(), Fault(400, json_err)),
        ("close brace", b"}".to_vec(), Fault(400, json_err)),
        (
            "truncated object",
            br#"{"name": "standby.sync", "par"#.to_vec(),
            Fault(400, json_err),
        ),
        (
            "single quotes",
            b"{'name': 'standby.sync', 'params': {}}".to_vec(),
            Fault(400, json_err),
        ),
        (
            "trailing comma",
            br#"{"name": "standby.sync", "params": {},}"#.to_vec(),
            Fault(400, json_err),
        ),
        (
            "trailing garbage",
            br#"{"name": "standby.sync", "params": {}} x"#.to_vec(),
            Fault(400, json_err),
        ),
        (
            "two objects",
            br#"{"name":"standby.sync","params":{}}{"name":"standby.sync","params":{}}"#.to_vec(),
            Fault(400, json_err),
        ),
        (
            "comment",
            b"/* hi */ {\"name\": \"standby.sync\", \"params\": {}}".to_vec(),
            Fault(400, json_err),
        ),
        (
            "NaN",
            br#"{"name": "standby.sync", "params": {"x": NaN}}"#.to_vec(),
            Fault(400, json_err),
        ),
        (
            "invalid UTF-8",
            b"{\"name\": \"standby.\xff\xfe\", \"params\": {}}".to_vec(),
            Fault(400, json_err),
        ),
        (
            "UTF-8 byte order mark",
            b"\xef\xbb\xbf{\"name\": \"standby.sync\", \"params\": {}}".to_vec(),
            Fault(400, json_err),
        ),
        (
            "UTF-16 body",
            "{\"name\":\"standby.sync\",\"params\":{}}"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
            Fault(400, json_err),
        ),
        (
            "raw NUL byte",
            b"{\"name\": \"standby.sync\0\", \"params\": {}}".to_vec(),
            Fault(400, json_err),
        ),
        (
            "lone surrogate escape",
            br#"{"name": "\ud800.sync", "params": {}}"#.to_vec(),
            Fault(400, json_err),
        ),
        (
            "control character in string",
            b"{\"name\": \"standby.\x01sync\", \"params\": {}}".to_vec(),
            Fault(400, json_err),
        ),
        ("nesting 5000 deep", deep.into_bytes(), Fault(400, json_err)),
        (
            "params nesting 3000 deep",
            deep_params.into_bytes(),
            Fault(400, json_err),
        ),
        (
            "number too large",
            br#"{"name": "standby.sync", "params": {"x": 1e999}}"#.to_vec(),
            Fault(400, json_err),
        ),
        ("null", b"null".to_vec(), Fault(400, object)),
        (
            "array",
            br#"[{"name": "standby.sync", "params": {}}]"#.to_vec(),
            Fault(400, object),
        ),
        ("string", br#""standby.sync""#.to_vec(), Fault(400, object)),
        ("number", b"42".to_vec(), Fault(400, object)),
        ("boolean", b"true".to_vec(), Fault(400, object)),
        (
            "empty object",
            b"{}".to_vec(),
            Fault(400, "missing field `name`"),
        ),
        (
            "no name",
            br#"{"params": {}}"#.to_vec(),
            Fault(400, "missing field `name`"),
        ),
        (
            "no params",
            br#"{"name": "standby.sync"}"#.to_vec(),
            Fault(400, "missing field `params`"),
        ),
        (
            "name null",
            br#"{"name": null, "params": {}}"#.to_vec(),
            Fault(400, "`name` must be a string"),
        ),
        (
            "name number",
            br#"{"name": 7, "params": {}}"#.to_vec(),
            Fault(400, "`name` must be a string"),
        ),
        (
            "name array",
            br#"{"name": ["standby", "sync"], "params": {}}"#.to_vec(),
            Fault(400, "`name` must be a string"),
        ),
        (
            "name object",
            br#"{"name": {"standby": "sync"}, "params": {}}"#.to_vec(),
            Fault(400, "`name` must be a string"),
        ),
        (
            "params null",
            br#"{"name": "standby.sync", "params": null}"#.to_vec(),
            Fault(400, "`params` must be a JSON object"),
        ),
        (
            "params array",
            br#"{"name": "standby.sync", "params": []}"#.to_vec(),
            Fault(400, "`params` must be a JSON object"),
        ),
        (
            "params string",
            br#"{"name": "standby.sync", "params": "{}"}"#.to_vec(),
            Fault(400, "`params` must be a JSON object"),
        ),
        (
            "params number",
            br#"{"name": "standby.sync", "params": 0}"#.to_vec(),
            Fault(400, "`params` must be a JSON object"),
        ),
        (
            "extra top-level field",
            br#"{"name": "standby.sync", "params": {}, "id": "x"}"#.to_vec(),
            Fault(400, "unknown field `id`"),
        ),
        (
            "extra field with NUL name",
            b"{\"name\": \"standby.sync\", \"params\": {}, \"\\u0000\": 1}".to_vec(),
            Fault(400, "unknown field"),
        ),
        (
            "name in other case",
            br#"{"Name": "standby.sync", "params": {}}"#.to_vec(),
            Fault(400, "unknown field `Name`"),
        ),
    ];
    for (what, body, expect) in cases {
        c.body(what, body, expect);
    }
}

fn param_cases(c: &mut Corpus) {
    let unknown = "unknown field";
    // Commands that take no parameters: anything given is an unknown field.
    for name in [
        "standby.sync",
        "standby.power_off",
        "standby.run_image",
        "standby.get_partition_uuids",
        "poll.get_hardware_info",
        "system.lockdown",
        "log.collect_system_logs",
        "iscsi.stop_iscsi_target",
    ] {
        c.params(name, json!({"force": true}), unknown);
        c.params(name, json!({"": null}), unknown);
        c.params(name, json!({"../../etc/passwd": "x"}), unknown);
    }

    // standby.prepare_image
    let p = "standby.prepare_image";
    let info = |extra: Value| {
        let mut i = json!({"id": "img-1", "urls": ["http://127.0.0.1:9/img"],
                           "os_hash_algo": "sha256", "os_hash_value": "00"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                i.as_object_mut().unwrap().remove(k);
            } else {
                i[k] = v.clone();
            }
        }
        i
    };
    c.params(p, json!({}), "image_info");
    c.params(p, json!({"image_info": null}), "image_info");
    c.params(p, json!({"image_info": "img-1"}), "image_info");
    c.params(p, json!({"image_info": []}), "image_info");
    c.params(p, json!({"image_info": info(json!({"id": null}))}), "id");
    c.params(
        p,
        json!({"image_info": info(json!({"id": 5}))}),
        "image_info.id",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"urls": null}))}),
        "urls",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"urls": "http://x/img"}))}),
        "image_info.urls",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"urls": [1]}))}),
        "image_info.urls",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"urls": []}))}),
        "image_info.urls",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"image_type": "evil"}))}),
        "image_info.image_type",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"image_type": 1}))}),
        "image_info.image_type",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"preserve_ephemeral": true}))}),
        "image_info.preserve_ephemeral",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"preserve_ephemeral": "yes"}))}),
        "image_info.preserve_ephemeral",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"root_mb": -1}))}),
        "image_info.root_mb",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"root_mb": "10G"}))}),
        "image_info.root_mb",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"swap_mb": 1.5}))}),
        "image_info.swap_mb",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"stream_raw_images": "true"}))}),
        "image_info.stream_raw_images",
    );
    c.params(
        p,
        json!({"image_info": info(json!({"disk_format": ["raw"]}))}),
        "image_info.disk_format",
    );
    c.params(
        p,
        json!({"image_info": info(json!({})), "configdrive": 5}),
        "configdrive",
    );
    c.params(
        p,
        json!({"image_info": info(json!({})), "configdrive": {"a": 1}}),
        "configdrive",
    );
    c.params(
        p,
        json!({"image_info": info(json!({})), "target": "/dev/sda"}),
        unknown,
    );

    // Step listing and step execution, for clean and deploy alike.
    for kind in ["clean", "deploy"] {
        let get = format!("{kind}.get_{kind}_steps");
        c.params(&get, json!({}), "node");
        c.params(&get, json!({"node": [], "ports": []}), "node");
        c.params(&get, json!({"node": {}, "ports": {}}), "ports");
        c.params(&get, json!({"node": {}}), "ports");
        c.params(&get, json!({"node": {}, "ports": [], "x": 1}), unknown);

        let run = format!("{kind}.execute_{kind}_step");
        let step = json!({"step": "erase_devices_metadata", "interface": "deploy",
                          "priority": 99, "args": {}});
        c.params(&run, json!({"node": {}, "ports": []}), "step");
        c.params(
            &run,
            json!({"step": "erase_devices", "node": {}, "ports": []}),
            "step",
        );
        c.params(
            &run,
            json!({"step": step, "node": null, "ports": []}),
            "node",
        );
        c.params(
            &run,
            json!({"step": step, "node": {}, "ports": "p"}),
            "ports",
        );
        c.params(
            &run,
            json!({"step": step, "node": {}, "ports": [], "clean_version": "1"}),
            "clean_version",
        );
        c.params(
            &run,
            json!({"step": step, "node": {}, "ports": [], "deploy_version": []}),
            "deploy_version",
        );
        c.params(
            &run,
            json!({"step": step, "node": {}, "ports": [], "extra": 1}),
            unknown,
        );
        c.params(
            &run,
            json!({"step": {}, "node": {}, "ports": []}),
            "step.step",
        );
        c.params(
            &run,
            json!({"step": {"step": 5}, "node": {}, "ports": []}),
            "step.step",
        );
        c.params(
            &run,
            json!({"step": {"step": ""}, "node": {}, "ports": []}),
            "step.step",
        );
        c.params(
            &run,
            json!({"step": {"step": "erase_devices", "args": "all"}, "node": {}, "ports": []}),
            "step.args",
        );
    }

    // iscsi.start_iscsi_target
    let i = "iscsi.start_iscsi_target";
    let iqn = "iqn.2026-01.org.example:node-1";
    c.params(i, json!({}), "iqn");
    c.params(i, json!({"iqn": 5}), "iqn");
    c.params(i, json!({"iqn": null}), "iqn");
    c.params(i, json!({"iqn": "not an iqn"}), "iqn");
    c.params(i, json!({"iqn": "../../etc/passwd"}), "iqn");
    c.params(i, json!({"iqn": "iqn.2026-01.org.example:\u{0}"}), "iqn");
    c.params(i, json!({"iqn": "iqn.2026-01.org.example:ünï"}), "iqn");
    c.params(i, json!({"iqn": iqn, "portal_port": 70000}), "portal_port");
    c.params(i, json!({"iqn": iqn, "portal_port": -1}), "portal_port");
    c.params(i, json!({"iqn": iqn, "portal_port": "3260"}), "portal_port");
    c.params(
        i,
        json!({"iqn": iqn, "wipe_disk_metadata": "yes"}),
        "wipe_disk_metadata",
    );
    c.params(
        i,
        json!({"iqn": iqn, "ferrite_chap_user": "u"}),
        "ferrite_chap",
    );
    c.params(
        i,
        json!({"iqn": iqn, "ferrite_chap_secret": 1}),
        "ferrite_chap_secret",
    );
    c.params(i, json!({"iqn": iqn, "device": "/dev/sda"}), unknown);
}

fn unknown_command_cases(c: &mut Corpus) {
    let form = "<extension>.<command>";
    let unknown = "unknown command";
    for (name, needle) in [
        ("", form),
        ("sync", form),
        (".sync", form),
        ("standby.", form),
        (".", form),
        ("standby.fly", unknown),
        ("nope.sync", unknown),
        ("STANDBY.SYNC", unknown),
        ("standby.sync ", unknown),
        (" standby.sync", unknown),
        ("standby..sync", unknown),
        ("standby.sync.now", unknown),
        ("../../bin/sh.x", form),
        ("standby.sync\u{0}", unknown),
        ("standby.sync\n", unknown),
        ("ѕtandby.sync", unknown),
        ("standby.\u{202e}cnys", unknown),
        ("test.nothing", unknown),
    ] {
        let body = json!({"name": name, "params": {}}).to_string();
        c.body(
            format!("command {name:?}"),
            body,
            Expect::Fault(400, needle),
        );
    }
    let long = format!("standby.{}", "s".repeat(60_000));
    let body = json!({"name": long, "params": {}}).to_string();
    c.body("60 kB command name", body, Expect::Fault(400, unknown));
}

fn path_and_method_cases(c: &mut Corpus) {
    use Expect::Fault;
    let t = format!("?agent_token={TOKEN}");
    let cmd = br#"{"name": "standby.sync", "params": {}}"#;
    let not_found = "no such resource";
    for (method, path, body, expect) in [
        ("PUT", commands_url(), &cmd[..], Fault(405, "GET, POST")),
        ("DELETE", commands_url(), b"", Fault(405, "GET, POST")),
        ("PATCH", commands_url(), &cmd[..], Fault(405, "GET, POST")),
        ("OPTIONS", commands_url(), b"", Fault(405, "GET, POST")),
        ("TRACE", "/v1/status".into(), b"", Fault(405, "GET")),
        ("FROB", commands_url(), b"", Fault(405, "GET, POST")),
        ("POST", "/v1/status".into(), &cmd[..], Fault(405, "GET")),
        ("DELETE", "/v1/".into(), b"", Fault(405, "GET")),
        ("POST", "/".into(), &cmd[..], Fault(405, "GET")),
        (
            "POST",
            format!("/v1/commands/some-id{t}"),
            &cmd[..],
            Fault(405, "GET"),
        ),
        (
            "DELETE",
            format!("/v1/commands/some-id{t}"),
            b"",
            Fault(405, "GET"),
        ),
        ("GET", "/v2/".into(), b"", Fault(404, not_found)),
        ("GET", "/v1/nodes".into(), b"", Fault(404, not_found)),
        (
            "GET",
            format!("/v1/commands/a/b{t}"),
            b"",
            Fault(404, not_found),
        ),
        (
            "GET",
            "/../../etc/passwd".into(),
            b"",
            Fault(404, not_found),
        ),
        (
            "GET",
            "/v1/%2e%2e/%2e%2e/etc/passwd".into(),
            b"",
            Fault(404, not_found),
        ),
        ("GET", "/v1/status/..".into(), b"", Fault(404, not_found)),
        ("GET", "/%00".into(), b"", Fault(404, not_found)),
        ("GET", "/v1/%E2%80%AE".into(), b"", Fault(404, not_found)),
        ("GET", "/v1//commands".into(), b"", Fault(404, not_found)),
        (
            "POST",
            format!("/v1/commands/..%2f..%2fetc{t}"),
            &cmd[..],
            Fault(405, "GET"),
        ),
        (
            "GET",
            format!("/v1/commands/..%2f..%2fetc%2fpasswd{t}"),
            b"",
            Fault(404, "not found"),
        ),
        (
            "GET",
            format!("/v1/commands/%00{t}"),
            b"",
            Fault(404, "not found"),
        ),
        (
            "GET",
            format!("/v1/commands/%F0%9F%92%A3{t}"),
            b"",
            Fault(404, "not found"),
        ),
        (
            "GET",
            format!("/v1/commands/{}{t}", "a".repeat(4000)),
            b"",
            Fault(404, "not found"),
        ),
        (
            "GET",
            format!("/v1/commands/some-id{t}&wait=maybe"),
            b"",
            Fault(400, "`wait`"),
        ),
        (
            "GET",
            format!("/v1/commands/{t}&wait=1"),
            b"",
            Fault(400, "`wait`"),
        ),
        (
            "POST",
            format!("/v1/commands/{t}&wait=%00"),
            &cmd[..],
            Fault(400, "`wait`"),
        ),
        (
            "POST",
            format!("/v1/commands/{t}&wait=yes&wait=true"),
            &cmd[..],
            Fault(400, "`wait`"),
        ),
    ] {
        c.add(
            format!("{method} {}", &path[..path.len().min(80)]),
            request(method, &path, &[], body),
            expect,
        );
    }
}

fn header_and_size_cases(c: &mut Corpus) {
    use Expect::{Fault, Framing};
    let url = commands_url();
    let cmd = br#"{"name": "standby.sync", "params": {}}"#;
    let too_large = "limit of 65536 bytes";

    // A body over the limit, declared: refused before it is read.
    let mut big = format!(
        "POST {url} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        BODY_LIMIT + 1
    )
    .into_bytes();
    big.extend_from_slice(&cmd[..]);
    c.add(
        "declared length one over the limit",
        big,
        Fault(413, too_large),
    );
    let huge = format!(
        "POST {url} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{{",
        1u64 << 60
    );
    c.add(
        "declared length 2^60",
        huge.into_bytes(),
        Fault(413, too_large),
    );
    // The same, chunked: the limit applies while reading.
    let pad = "x".repeat(BODY_LIMIT);
    let body = json!({"name": "standby.sync", "params": {"pad": pad}}).to_string();
    let mut chunked = format!(
        "POST {url} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for part in body.as_bytes().chunks(8192) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    c.add("chunked body over the limit", chunked, Fault(413, "limit"));
    // A body of exactly the limit that is not a command.
    let exact = format!(
        r#"{{"name": "standby.sync", "params": {{"p": "{}"}}}}"#,
        "y".repeat(BODY_LIMIT - 45)
    );
    assert_eq!(exact.len(), BODY_LIMIT);
    c.body(
        "body of exactly the limit with an unknown param",
        exact,
        Fault(400, "unknown field `p`"),
    );

    // A body that never completes: the client gives up sending.
    let mut short = format!(
        "POST {url} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nContent-Length: 500\r\n\r\n"
    )
    .into_bytes();
    short.extend_from_slice(&cmd[..]);
    c.0.push(Case {
        what: "body shorter than its Content-Length, then EOF".into(),
        bytes: short,
        expect: Fault(400, "reading the request body failed"),
        half_close: true,
    });

    // Content types and encodings the agent does not decode are just bytes to it.
    for (k, v) in [
        ("Content-Type", "text/plain"),
        ("Content-Type", "application/xml"),
        ("Content-Encoding", "gzip"),
        ("Content-Type", "application/json; charset=utf-16"),
    ] {
        c.add(
            format!("{k}: {v} with an XML body"),
            request("POST", &url, &[(k, v)], b"<command name=\"standby.sync\"/>"),
            Fault(400, "not valid JSON"),
        );
    }
    // Odd but legal headers do not change the outcome.
    c.add(
        "HTTP/1.0 request with a broken body",
        format!("POST {url} HTTP/1.0\r\nContent-Length: 1\r\n\r\n{{").into_bytes(),
        Fault(400, "not valid JSON"),
    );
    c.add(
        "Host header with unicode",
        request("POST", &url, &[("Host", "ägent.example")], b"[]"),
        Fault(400, "must be a JSON object"),
    );
    c.add(
        "Expect: 100-continue with a broken body",
        request("POST", &url, &[("Expect", "100-continue")], b"{"),
        Fault(400, "not valid JSON"),
    );
    c.add(
        "a 60 kB header",
        request("POST", &url, &[("X-Pad", &"p".repeat(60_000))], b"{"),
        Fault(400, "not valid JSON"),
    );

    // Framing errors hyper refuses itself.
    for (what, bytes) in [
        ("TLS ClientHello on the plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec()),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("Content-Length not a number", format!("POST {url} HTTP/1.1\r\nHost: a\r\nContent-Length: nope\r\n\r\n{{").into_bytes()),
        ("two different Content-Lengths", format!("POST {url} HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{{}}").into_bytes()),
        ("negative Content-Length", format!("POST {url} HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n").into_bytes()),
        ("NUL in a header value", format!("POST {url} HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\nContent-Length: 1\r\n\r\n{{").into_bytes()),
        ("header without a colon", format!("GET {url} HTTP/1.1\r\nHost a\r\n\r\n").into_bytes()),
        ("space in the request target", b"GET /v1/com mands/ HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("NUL in the request target", b"GET /v1/\0 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("unknown HTTP version", b"GET /v1/status HTTP/9.9\r\nHost: a\r\n\r\n".to_vec()),
        ("bad chunk size", format!("POST {url} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").into_bytes()),
        ("70 kB URL", format!("GET /v1/commands/?agent_token={} HTTP/1.1\r\nHost: a\r\n\r\n", "t".repeat(70_000)).into_bytes()),
        ("200 headers", format!("GET /v1/status HTTP/1.1\r\nHost: a\r\n{}\r\n", "X-A: b\r\n".repeat(200)).into_bytes()),
    ] {
        c.add(what, bytes, Framing);
    }
}

/// What the server sent back on one connection.
struct Answer {
    status: Option<u16>,
    body: String,
    raw: String,
}

async fn send(addr: SocketAddr, case: &Case) -> Answer {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before reading everything: a failed write is
    // fine, what matters is what it said.
    let _ = conn.write_all(&case.bytes).await;
    if case.half_close {
        let _ = conn.shutdown().await;
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("{}: no answer within 20 s", case.what),
        }
    }
    let mut raw = String::from_utf8_lossy(&out).into_owned();
    // An interim answer to `Expect: 100-continue` precedes the real one.
    if let Some(rest) = raw.strip_prefix("HTTP/1.1 100 Continue\r\n\r\n") {
        raw = rest.to_string();
    }
    let status = raw
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| s.parse().ok());
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Answer { status, body, raw }
}

fn check(case: &Case, a: &Answer) -> Result<(), String> {
    let short: String = a.raw.chars().take(300).collect();
    match case.expect {
        Expect::Fault(code, needle) => {
            if a.status != Some(code) {
                return Err(format!("wanted {code}, got {:?}: {short:?}", a.status));
            }
            let v: Value = serde_json::from_str(&a.body)
                .map_err(|e| format!("body is not JSON ({e}): {short:?}"))?;
            if v["faultcode"] != "Client" {
                return Err(format!("faultcode is not Client: {v}"));
            }
            let fs = v["faultstring"].as_str().unwrap_or("");
            if fs.len() < 10 || !fs.contains(needle) {
                return Err(format!("faultstring {fs:?} lacks {needle:?}"));
            }
        }
        Expect::Framing => match a.status {
            Some(s) if (400..500).contains(&s) => {}
            None if a.raw.is_empty() => {}
            other => return Err(format!("wanted a 4xx or a close, got {other:?}: {short:?}")),
        },
    }
    Ok(())
}

#[tokio::test]
async fn hostile_requests_get_4xx_with_a_message_and_change_nothing() {
    let config = AgentConfig {
        max_body_bytes: BODY_LIMIT,
        ..AgentConfig::default()
    };
    let agent = Agent::start_with(config, None, None).await;
    let cases = corpus();
    assert!(
        cases.len() >= 150,
        "the corpus has {} requests",
        cases.len()
    );
    let mut failures = vec![];
    let mut framing = 0;
    for case in &cases {
        let answer = send(agent.addr, case).await;
        if answer.status.is_some_and(|s| s >= 500) {
            failures.push(format!("{}: 5xx: {}", case.what, answer.raw));
        } else if let Err(e) = check(case, &answer) {
            failures.push(format!("{}: {e}", case.what));
        }
        if case.expect == Expect::Framing {
            framing += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests were answered wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The agent is up, nothing ran and nothing was stored.
    agent.assert_serving().await;
    let (code, list) = agent.get("/v1/commands/").await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(
        list["commands"],
        json!([]),
        "a hostile request started a command"
    );
    assert!(agent.hooks.calls().is_empty(), "{:?}", agent.hooks.calls());
    assert!(!agent.state.is_locked_down());
    assert!(
        agent.state.cached_node().is_none(),
        "a refused step cached its node"
    );
    // And a good command still works.
    let (code, body) = agent
        .command("", "standby.get_partition_uuids", json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    let (_, list) = agent.get("/v1/commands/").await;
    assert_eq!(list["commands"].as_array().map(Vec::len), Some(1), "{list}");
    eprintln!(
        "{} hostile requests, {} of them refused by hyper's parser",
        cases.len(),
        framing
    );
}
