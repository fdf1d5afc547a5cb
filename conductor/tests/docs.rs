//! The documentation cannot drift from the code: every long flag of `ferrite conductor
//! --help` has a row in docs/configuration.md (and every row there is a real flag), the
//! README stays short, and every relative link in README.md, SECURITY.md and docs/*.md
//! points at a file that exists. Standard library only.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const BEGIN: &str = "<!-- conductor flags -->";
const END: &str = "<!-- end conductor flags -->";
const README_MAX_LINES: usize = 120;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("conductor/ has a parent: the workspace root")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; the documentation lives in README.md, SECURITY.md and docs/",
            path.display()
        )
    })
}

/// The first `--name` of a string, without `<VALUE>`, `=…` or punctuation.
fn long_flags_in(text: &str) -> Vec<String> {
    let mut out = vec![];
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 2 < bytes.len() {
        let starts = bytes[i] == b'-'
            && bytes[i + 1] == b'-'
            && bytes[i + 2].is_ascii_lowercase()
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'-'));
        if starts {
            let mut j = i + 2;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'-') {
                j += 1;
            }
            out.push(text[i..j].trim_end_matches('-').to_string());
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The long flags clap lists in `ferrite conductor --help`: option lines are indented by
/// at most six spaces and start with `-`; descriptions (and the `- value: …` lists of
/// enum values) are indented further.
fn help_flags() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["conductor", "--help"])
        .env_remove("FERRITE_URL")
        .env_remove("FERRITE_USER")
        .env_remove("FERRITE_DATABASE_URL")
        .output()
        .expect("running the built `ferrite conductor --help`");
    assert!(
        out.status.success(),
        "`ferrite conductor --help` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let help = String::from_utf8(out.stdout).expect("help is UTF-8");
    let mut flags = BTreeSet::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if indent <= 6 && trimmed.starts_with('-') {
            if let Some(f) = long_flags_in(trimmed).into_iter().next() {
                flags.insert(f);
            }
        }
    }
    assert!(
        flags.contains("--state-dir") && flags.contains("--listen"),
        "could not read the flags out of `ferrite conductor --help` (found {flags:?}); has \
         clap's help layout changed? Adjust help_flags() in conductor/tests/docs.rs:\n{help}"
    );
    flags
}

/// The flags of the table rows between the markers of docs/configuration.md (the flags
/// in each row's first cell).
fn documented_flags() -> BTreeSet<String> {
    let path = root().join("docs/configuration.md");
    let text = read(&path);
    let begin = text.find(BEGIN).unwrap_or_else(|| {
        panic!(
            "{} has no line `{BEGIN}`: the conductor flag table must sit between `{BEGIN}` and \
             `{END}`",
            path.display()
        )
    });
    let end = text[begin..]
        .find(END)
        .map(|e| begin + e)
        .unwrap_or_else(|| {
            panic!(
                "{} has `{BEGIN}` but no `{END}` after it: close the conductor flag table with it",
                path.display()
            )
        });
    let mut flags = BTreeSet::new();
    for line in text[begin + BEGIN.len()..end].lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            continue;
        }
        let first_cell = line.trim_start_matches('|').split('|').next().unwrap_or("");
        flags.extend(long_flags_in(first_cell));
    }
    flags
}

#[test]
fn every_conductor_flag_is_documented_and_every_documented_flag_exists() {
    let help = help_flags();
    let docs = documented_flags();
    let undocumented: Vec<&String> = help.difference(&docs).collect();
    let stale: Vec<&String> = docs.difference(&help).collect();
    assert!(
        undocumented.is_empty(),
        "`ferrite conductor --help` lists {undocumented:?}, but docs/configuration.md has no \
         row for them between `{BEGIN}` and `{END}`: add one row per flag \
         (| `--flag` | default | meaning |), taking the default and meaning from \
         conductor/src/server.rs"
    );
    assert!(
        stale.is_empty(),
        "docs/configuration.md documents {stale:?} between `{BEGIN}` and `{END}`, but \
         `ferrite conductor --help` has no such flag: remove the rows or fix the flag names"
    );
}

#[test]
fn the_readme_stays_short() {
    let path = root().join("README.md");
    let n = read(&path).lines().count();
    assert!(
        n <= README_MAX_LINES,
        "README.md has {n} lines, more than {README_MAX_LINES}: move detail into docs/ \
         (status.md, operations.md, …) and link to it"
    );
}

/// Markdown link targets `[text](target)` outside fenced code blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(close) = after.find(')') else {
                break;
            };
            let target = after[..close].trim();
            let target = target.split_whitespace().next().unwrap_or("");
            out.push(
                target
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string(),
            );
            rest = &after[close..];
        }
    }
    out
}

#[test]
fn relative_links_point_at_files_that_exist() {
    let root = root();
    let mut files = vec![root.join("README.md"), root.join("SECURITY.md")];
    let docs = root.join("docs");
    let entries = std::fs::read_dir(&docs).unwrap_or_else(|e| {
        panic!(
            "cannot list {}: {e}; the project's documentation lives in docs/",
            docs.display()
        )
    });
    let mut md: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    md.sort();
    files.extend(md);
    let mut broken = vec![];
    for file in &files {
        if !file.exists() {
            broken.push(format!("{} does not exist", file.display()));
            continue;
        }
        let dir = file.parent().expect("a file has a directory");
        for target in link_targets(&read(file)) {
            let external = target.is_empty()
                || target.starts_with('#')
                || target.contains("://")
                || target.starts_with("mailto:");
            if external {
                continue;
            }
            let path = target.split('#').next().unwrap_or("");
            if path.contains("../shared") {
                broken.push(format!(
                    "{} links to {target:?}, outside the repository (a clone has no ../shared): \
                     link to the project's own docs/ instead",
                    file.display()
                ));
                continue;
            }
            if !dir.join(path).exists() {
                broken.push(format!(
                    "{} links to {target:?}, which does not exist (resolved against {}): fix \
                     the link or add the file",
                    file.display(),
                    dir.display()
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken relative links:\n{}",
        broken.join("\n")
    );
}

#[test]
fn flag_extraction_reads_clap_lines() {
    assert_eq!(
        long_flags_in("      --state-dir <STATE_DIR>"),
        ["--state-dir"]
    );
    assert_eq!(long_flags_in("  -f, --format <FORMAT>"), ["--format"]);
    assert_eq!(
        long_flags_in("`--power-off-after-clean-failure`"),
        ["--power-off-after-clean-failure"]
    );
    assert!(long_flags_in("a-b --- c").is_empty());
}
