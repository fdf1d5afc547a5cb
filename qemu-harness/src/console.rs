//! A VM's serial console, captured in a file: wait for a pattern with a deadline, read the tail.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Error;

/// Reads a console file that QEMU appends to. Waits consume the text they matched, so a
/// sequence of waits follows the boot in order.
#[derive(Debug)]
pub struct Console {
    path: PathBuf,
    cursor: usize,
}

const POLL: Duration = Duration::from_millis(100);

impl Console {
    pub fn new(path: impl Into<PathBuf>) -> Console {
        Console {
            path: path.into(),
            cursor: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything captured so far (lossy UTF-8).
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.path).unwrap_or_default()).into_owned()
    }

    /// The last `n` lines, with terminal escapes and carriage returns removed.
    pub fn tail(&self, n: usize) -> String {
        tail_lines(&self.contents(), n)
    }

    /// Waits until `pattern` appears after the previous match, and returns the whole line it
    /// is on. `alive` is asked between polls; when it returns an error (the VM exited), the
    /// wait stops with that error.
    pub fn wait_for_or(
        &mut self,
        pattern: &str,
        timeout: Duration,
        mut alive: impl FnMut() -> Result<(), String>,
    ) -> Result<String, Error> {
        let start = Instant::now();
        loop {
            let text = self.contents();
            if let Some(found) = text.get(self.cursor..).and_then(|t| t.find(pattern)) {
                let at = self.cursor + found;
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
                self.cursor = at + pattern.len();
                return Ok(clean(&text[line_start..line_end]));
            }
            if let Err(why) = alive() {
                return Err(Error::VmExited {
                    waiting_for: pattern.into(),
                    why,
                    console_tail: tail_lines(&text, 30),
                });
            }
            if start.elapsed() >= timeout {
                return Err(Error::ConsoleTimeout {
                    pattern: pattern.into(),
                    waited: timeout,
                    console: self.path.clone(),
                    console_tail: tail_lines(&text, 30),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Forgets everything captured so far: the next wait only sees new output.
    pub fn skip_to_end(&mut self) {
        self.cursor = self.contents().len();
    }

    /// [`Console::wait_for_or`] without a liveness check.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String, Error> {
        self.wait_for_or(pattern, timeout, || Ok(()))
    }
}

/// Drops ANSI escape sequences and carriage returns (SeaBIOS and iPXE draw with them).
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    while let Some(&n) = chars.peek() {
                        chars.next();
                        if n.is_ascii_alphabetic() {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' | '\x08' => {}
            c => out.push(c),
        }
    }
    out
}

/// The last `n` non-empty lines of `text`, terminal escapes removed.
pub fn tail_lines(text: &str, n: usize) -> String {
    let text = clean(text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_in_order_and_returns_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, "boot\r\nmarker one\nx\nmarker two\n").unwrap();
        let mut c = Console::new(&path);
        assert_eq!(c.wait_for("marker", Duration::ZERO).unwrap(), "marker one");
        assert_eq!(c.wait_for("marker", Duration::ZERO).unwrap(), "marker two");
        let e = c
            .wait_for("marker", Duration::from_millis(250))
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("marker") && msg.contains("marker two"),
            "{msg}"
        );
    }

    #[test]
    fn sees_text_appended_while_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, "").unwrap();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                std::fs::write(&path, "late FERRITE-DEPLOYED uuid=1\n").unwrap();
            })
        };
        let mut c = Console::new(&path);
        let line = c
            .wait_for("FERRITE-DEPLOYED", Duration::from_secs(5))
            .unwrap();
        assert_eq!(line, "late FERRITE-DEPLOYED uuid=1");
        writer.join().unwrap();
    }

    #[test]
    fn a_dead_vm_ends_the_wait_early() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, "kernel panic\n").unwrap();
        let start = Instant::now();
        let e = Console::new(&path)
            .wait_for_or("never", Duration::from_secs(30), || {
                Err("qemu exited: 1".into())
            })
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(matches!(e, Error::VmExited { .. }));
        assert!(e.to_string().contains("kernel panic"));
    }

    #[test]
    fn escapes_are_cleaned() {
        assert_eq!(clean("\x1b[2J\x1b[0mSeaBIOS\r"), "SeaBIOS");
        assert_eq!(clean("\x1bcA\x1b[?7lB"), "AB");
    }
}
