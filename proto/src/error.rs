//! The one error-chain formatter: an error and its causes as one line
//! (`what failed: why: why`), for logs, `last_error` and `command_error` alike. Every crate
//! that reports errors reaches it (`ferrite-image`, the agent and the conductor all depend
//! on `ferrite-proto`; the protocol crates below them report through their callers).
//!
//! Errors follow STYLE.md §5: the message says what failed and the cause is a `#[source]`,
//! never pasted into the message, so walking the chain repeats nothing. For errors that
//! still paste their cause (our older ones, other crates'), a cause is left out when its
//! text is all of its parent's text or the end of it after `": "`; a cause whose text
//! merely appears somewhere in its parent's is kept.

use std::error::Error;
use std::fmt;

/// Displays an error and its causes joined with `": "`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

/// Whether `cause` only repeats what `parent` already shows.
fn repeats(parent: &str, cause: &str) -> bool {
    parent == cause
        || parent
            .strip_suffix(cause)
            .is_some_and(|head| head.ends_with(": "))
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parent = self.0.to_string();
        f.write_str(&parent)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let m = c.to_string();
            if !repeats(&parent, &m) {
                write!(f, ": {m}")?;
            }
            parent = m;
            cause = c.source();
        }
        Ok(())
    }
}

/// `e` and its causes, one line.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    Chain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn e(msgs: &[&'static str]) -> E {
        let mut err: Option<Box<E>> = None;
        for m in msgs.iter().rev() {
            err = Some(Box::new(E(m, err)));
        }
        *err.unwrap()
    }

    #[test]
    fn causes_follow_the_message() {
        assert_eq!(
            chain(&e(&["writing image x", "HTTP 404"])),
            "writing image x: HTTP 404"
        );
        assert_eq!(chain(&e(&["alone"])), "alone");
    }

    #[test]
    fn nested_causes_in_order() {
        assert_eq!(
            chain(&e(&[
                "deploying",
                "writing image x",
                "HTTP 404",
                "not found"
            ])),
            "deploying: writing image x: HTTP 404: not found"
        );
    }

    #[test]
    fn a_cause_pasted_at_the_end_of_its_parent_is_not_repeated() {
        // A wrapper showing its cause's text as its own (`#[error(transparent)]`-like).
        assert_eq!(chain(&e(&["disk full", "disk full"])), "disk full");
        // A parent that pasted its cause after ": ".
        assert_eq!(
            chain(&e(&["config drive I/O on /dev/x: EIO", "EIO"])),
            "config drive I/O on /dev/x: EIO"
        );
        // Only the parent is compared: the grandparent's text is not.
        assert_eq!(
            chain(&e(&["a: b", "b: c", "c"])),
            "a: b: b: c",
            "each link is compared with its own parent"
        );
    }

    #[test]
    fn text_that_merely_contains_a_cause_is_kept() {
        // Old walkers dropped a cause whose text appeared anywhere in the message, so
        // "disk full" vanished after "checking disk full-ness".
        assert_eq!(
            chain(&e(&["checking disk full-ness", "disk full", "disk full"])),
            "checking disk full-ness: disk full"
        );
        // A suffix without the ": " boundary is other text.
        assert_eq!(chain(&e(&["not a disk", "disk"])), "not a disk: disk");
        // At the start or in the middle: kept.
        assert_eq!(chain(&e(&["EIO on write", "EIO"])), "EIO on write: EIO");
    }

    #[test]
    fn io_errors_wrapping_typed_errors_chain_through() {
        // io::Error::other(e) shows e and reports e's source as its own.
        let inner = e(&["iSCSI write failed", "target answered CHECK CONDITION"]);
        let io = std::io::Error::other(inner);
        let outer = e(&["writing the disk"]);
        struct Outer(E, std::io::Error);
        impl fmt::Debug for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.1)
            }
        }
        assert_eq!(
            chain(&Outer(outer, io)),
            "writing the disk: iSCSI write failed: target answered CHECK CONDITION"
        );
    }
}
