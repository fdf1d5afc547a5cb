//! How an error becomes one line of text with its causes (`what failed: why: why`), for
//! logs, `last_error` and `command_error` alike.
//!
//! Errors follow STYLE.md §5: the message says what failed and the cause is a `#[source]`,
//! never pasted into the message, so walking the chain repeats nothing and no text has to
//! be dropped on the way.

use std::error::Error;
use std::fmt;

/// Displays an error and its causes joined with `": "`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let m = c.to_string();
            // A wrapper that shows its cause's text as its own adds nothing to repeat.
            if m != last {
                write!(f, ": {m}")?;
            }
            last = m;
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
    fn text_that_merely_contains_a_cause_is_kept() {
        // The old walkers dropped a cause whose text appeared anywhere in the message,
        // so "disk full" vanished after "checking disk full-ness".
        assert_eq!(
            chain(&e(&["checking disk full-ness", "disk full", "disk full"])),
            "checking disk full-ness: disk full"
        );
        assert_eq!(chain(&e(&["a: b", "b"])), "a: b: b");
    }
}
