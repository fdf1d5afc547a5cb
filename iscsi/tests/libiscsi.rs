//! libiscsi's own tools against our target: the whole `iscsi-test-cu` default run,
//! `iscsi-inq` and `iscsi-ls`.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_tool, start, wait_until, IQN};
use ferrite_testkit::Reaped;

/// libiscsi 1.19's default run: our target passes every test (tgtd 1.0.85 passes 598 here,
/// ARCHITECTURE.md), so any failure is a regression.
const TOTAL: u32 = 615;
/// The run takes 63–78 s under load (some tests wait out 3 s timeouts on purpose); a
/// target that stops answering must fail the test, not hang it.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Parses CUnit's "tests  <total> <ran> <passed> <failed> <inactive>" summary line.
fn summary(out: &str) -> Option<(u32, u32, u32)> {
    let line = out.lines().find(|l| l.trim_start().starts_with("tests "))?;
    let n: Vec<u32> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    Some((*n.first()?, *n.get(2)?, *n.get(3)?))
}

#[test]
fn iscsi_test_cu_full_run() {
    let tool = require_tool("iscsi-test-cu", "libiscsi-bin");
    let t = start(256 << 20, |_| {});
    let url = format!("iscsi://{}/{IQN}/0", t.addr);
    let started = Instant::now();
    // Output goes to files: a full pipe would stall the tool while we wait for it.
    let log = tempfile::tempfile().unwrap();
    let mut child = Reaped(
        Command::new(tool)
            .args(["-d", &url])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log.try_clone().unwrap())
            .spawn()
            .expect("run iscsi-test-cu"),
    );
    let status = wait_until("iscsi-test-cu to finish", RUN_TIMEOUT, || {
        child.0.try_wait().expect("waiting for iscsi-test-cu")
    });
    let took = started.elapsed();
    let mut text = String::new();
    std::io::Seek::rewind(&mut &log).unwrap();
    (&log).read_to_string(&mut text).unwrap();
    let (total, passed, failed) = summary(&text)
        .unwrap_or_else(|| panic!("no CUnit summary in iscsi-test-cu output ({status}):\n{text}"));
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_end().ends_with("FAILED"))
        .collect();
    eprintln!(
        "iscsi-test-cu: {passed}/{total} passed, {failed} failed, {:.1} s wall",
        took.as_secs_f64()
    );
    for f in &failures {
        eprintln!("  {f}");
    }
    assert_eq!(total, TOTAL, "the default run should have {TOTAL} tests");
    assert_eq!(
        (passed, failed),
        (TOTAL, 0),
        "{passed} of {total} passed; failures:\n{}",
        failures.join("\n")
    );
    // The LUN file is never grown or shrunk by the suite.
    assert_eq!(std::fs::metadata(&t.backing).unwrap().len(), 256 << 20);
}

#[test]
fn iscsi_inq_and_ls() {
    let inq = require_tool("iscsi-inq", "libiscsi-bin");
    let ls = require_tool("iscsi-ls", "libiscsi-bin");
    let t = start(8 << 20, |_| {});
    let out = Command::new(inq)
        .arg(format!("iscsi://{}/{IQN}/0", t.addr))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "iscsi-inq failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Peripheral Device Type:DIRECT_ACCESS"),
        "{text}"
    );
    assert!(text.contains("Vendor:FERRITE"), "{text}");
    let out = Command::new(ls)
        .args(["-s", &format!("iscsi://{}", t.addr)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "iscsi-ls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("Target:{IQN} Portal:{},1", t.addr)),
        "{text}"
    );
    // iscsi-ls rounds (last LBA × block size) down to MiB: 8 MiB shows as 7M.
    assert!(
        text.contains("Lun:0") && text.contains("Type:DIRECT_ACCESS (Size:7M)"),
        "{text}"
    );
    let rc = require_tool("iscsi-readcapacity16", "libiscsi-bin");
    let out = Command::new(rc)
        .arg(format!("iscsi://{}/{IQN}/0", t.addr))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "iscsi-readcapacity16 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Total size:8388608") && text.contains("LBPME:1 LBPRZ:1"),
        "{text}"
    );
}
