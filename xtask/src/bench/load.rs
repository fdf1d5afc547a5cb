//! The machine's load average around a measurement: every record says what it was, and
//! figures taken on a busy machine are marked as such.

use anyhow::Context;

use super::Record;

/// Above this 1-minute load average a figure is not an idle-machine figure.
pub const BUSY: f64 = 1.5;

/// The marker that starts the notes of a figure taken on a busy machine.
pub const BUSY_MARK: &str = "[busy machine: load > 1.5, not an idle-machine figure]";

/// The 1-minute load average.
pub fn now() -> anyhow::Result<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    parse(&s).with_context(|| format!("parsing /proc/loadavg {s:?}"))
}

fn parse(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

/// Appends the load before and after to the notes; marks the record if either was high.
pub fn annotate(r: &mut Record, before: f64, after: f64) {
    let load = format!("load average (1 min) {before:.2} before, {after:.2} after");
    r.notes = match (r.notes.is_empty(), before.max(after) > BUSY) {
        (true, false) => load,
        (false, false) => format!("{}; {load}", r.notes),
        (true, true) => format!("{BUSY_MARK} {load}"),
        (false, true) => format!("{BUSY_MARK} {}; {load}", r.notes),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_first_field_of_proc_loadavg() {
        assert_eq!(parse("0.52 1.10 2.00 3/456 7890\n"), Some(0.52));
        assert_eq!(parse(""), None);
        assert_eq!(parse("x 1 2"), None);
    }

    #[test]
    fn idle_runs_carry_the_load_and_busy_runs_are_marked() {
        let mut r = Record::new("m", "s", 1.0, "lower").notes("3 runs");
        annotate(&mut r, 0.4, 0.9);
        assert_eq!(
            r.notes,
            "3 runs; load average (1 min) 0.40 before, 0.90 after"
        );
        let mut r = Record::new("m", "s", 1.0, "lower");
        annotate(&mut r, 0.4, 2.0);
        assert!(r.notes.starts_with(BUSY_MARK), "{}", r.notes);
        assert!(r.notes.ends_with("0.40 before, 2.00 after"), "{}", r.notes);
    }
}
