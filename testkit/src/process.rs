//! A child process that is killed and reaped when the test lets go of it, even when the
//! test fails with a panic.

use std::ops::{Deref, DerefMut};
use std::process::Child;

/// Owns a child process; on drop, SIGKILL and wait (no zombie, no stray daemon).
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn dropping_kills_and_reaps_the_child() {
        let child = Reaped(Command::new("sleep").arg("600").spawn().unwrap());
        let pid = child.id();
        drop(child);
        // Reaped: the pid no longer names a process of ours (not even a zombie).
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
