//! The conductor's log carries no ANSI colour codes when stderr is a pipe or a file (the
//! demo's conductor.log, a process manager's journal): colour is for terminals only.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn log_to_a_pipe_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["conductor", "--listen", "127.0.0.1:0", "--host", "log-test"])
        .arg("--state-dir")
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ferrite conductor");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = vec![];
    let found = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let serving = line.contains("ferrite conductor serving");
                seen.push(line);
                if serving {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "no 'serving' log line within 60 s; got {seen:?}");
    assert!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a piped log: {seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("INFO")),
        "log lines carry their level: {seen:?}"
    );
}
