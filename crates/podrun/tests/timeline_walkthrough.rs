//! `docs/walkthrough.md` is run, not just read: every `$ command` in its `console`
//! blocks runs in order (one state directory for the whole document), and its output
//! must match what the document shows once times, ages and other clock readings are
//! normalised. The timeline pictures the commands draw under `docs/img/` must show the
//! same lanes and container instances as the committed ones.
//!
//! `PODRUN_UPDATE_DOCS=1` rewrites the document's outputs and pictures from the run.
//! Needs root, as every real pod does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const DOC: &str = "docs/walkthrough.md";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One `$ command` of the document and the output shown under it.
struct Step {
    command: String,
    expected: Vec<String>,
    /// Index in the document's lines of the command line.
    line: usize,
}

fn steps(doc: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    for (i, line) in doc.lines().enumerate() {
        if !in_console {
            in_console = line.trim_end() == "```console";
            continue;
        }
        if line.starts_with("```") {
            in_console = false;
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_string(),
                expected: Vec::new(),
                line: i,
            });
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(line.to_string());
        }
    }
    steps
}

/// Output with clock readings replaced: `1.045 s`/`50.6 ms` → `<t>`, kubectl ages
/// (`0s`, `12s`, `(13s ago)`, `2m3s`) → `<age>`; runs of spaces (column widths follow
/// the values) become one, and a line repeated once its clock readings are gone (a
/// watch row printed again because `RESTARTS` says `(12s ago)` instead of `(11s ago)`)
/// counts once.
fn normalise(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lines
        .iter()
        .map(|line| {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            let mut out: Vec<String> = Vec::new();
            let mut i = 0;
            while i < tokens.len() {
                let t = tokens[i];
                let number = !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.');
                if number && matches!(tokens.get(i + 1), Some(&"ms") | Some(&"s")) {
                    out.push("<t>".into());
                    i += 2;
                    continue;
                }
                out.push(if is_age(t) {
                    age_token(t)
                } else {
                    mask_uids(t)
                });
                i += 1;
            }
            out.join(" ")
        })
        .collect();
    out.dedup();
    out
}

/// Replaces every UID (`8-4-4-4-12` hex digits) in `token` with `<uid>`.
fn mask_uids(token: &str) -> String {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let is_uid = |s: &[u8]| {
        let mut at = 0;
        for (n, len) in GROUPS.iter().enumerate() {
            if !s[at..at + len].iter().all(u8::is_ascii_hexdigit) {
                return false;
            }
            at += len;
            if n < 4 {
                if s[at] != b'-' {
                    return false;
                }
                at += 1;
            }
        }
        true
    };
    let bytes = token.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if i + 36 <= bytes.len() && is_uid(&bytes[i..i + 36]) {
            out.push_str("<uid>");
            i += 36;
        } else {
            // Copy whole characters: tokens are UTF-8.
            let c = token[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `12s`, `2m3s`, `(13s`, `4m)`: a kubectl age, possibly inside parentheses.
fn is_age(token: &str) -> bool {
    let core = token.trim_start_matches('(').trim_end_matches(')');
    let mut digits = false;
    let mut unit = false;
    for c in core.chars() {
        if c.is_ascii_digit() {
            digits = true;
        } else if matches!(c, 's' | 'm' | 'h' | 'd') && digits {
            unit = true;
            digits = false;
        } else {
            return false;
        }
    }
    unit && !digits
}

fn age_token(token: &str) -> String {
    let open = if token.starts_with('(') { "(" } else { "" };
    let close = if token.ends_with(')') { ")" } else { "" };
    format!("{open}<age>{close}")
}

/// What a picture shows, independent of timing: lane names, container instances,
/// back-off gaps, preStop intervals.
fn picture_signature(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in svg.match_indices("<text class=\"lane\"") {
        let rest = &svg[i..];
        let start = rest.find('>').unwrap() + 1;
        let end = rest.find("</text>").unwrap();
        out.push(format!("lane {}", &rest[start..end]));
    }
    for (i, _) in svg.match_indices("<rect class=\"run\"") {
        let rest = &svg[i..];
        let attr = |name: &str| {
            let key = format!("{name}=\"");
            let s = rest.find(&key).unwrap() + key.len();
            rest[s..s + rest[s..].find('"').unwrap()].to_string()
        };
        out.push(format!(
            "run {} #{}",
            attr("data-container"),
            attr("data-restart")
        ));
    }
    for class in ["backoff", "prestop", "stopping"] {
        let n = svg.matches(&format!("class=\"{class}\"")).count();
        out.push(format!("{class} {n}"));
    }
    out
}

#[test]
fn walkthrough_commands_print_what_the_document_shows() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the walkthrough runs pods in their own namespaces and needs root"
    );
    let repo = repo();
    let doc_path = repo.join(DOC);
    let doc = std::fs::read_to_string(&doc_path).expect("docs/walkthrough.md");
    let steps = steps(&doc);
    assert!(steps.len() >= 10, "only {} commands found", steps.len());

    // The commands run in a scratch copy of the layout they name: examples and the
    // walkthrough's manifests from the checkout, pictures into a fresh docs/img.
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("docs/img")).unwrap();
    std::os::unix::fs::symlink(repo.join("examples"), work.path().join("examples")).unwrap();
    std::os::unix::fs::symlink(
        repo.join("docs/walkthrough"),
        work.path().join("docs/walkthrough"),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    // A podrun the injected proxy (UID 1337) can execute, first on PATH.
    let sidecar_bin = common::sidecar_bin();
    let bin_dir = sidecar_bin.path.parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let update = std::env::var_os("PODRUN_UPDATE_DOCS").is_some();
    let mut actual_outputs = Vec::new();
    let mut mismatches = Vec::new();
    for step in &steps {
        // Every command is bounded: the document's runs end by themselves or by
        // --timeout, and coreutils' timeout guards against a hang.
        let out = Command::new("timeout")
            .args(["120", "sh", "-c"])
            .arg(format!("{{ {}\n}} 2>&1", step.command))
            .current_dir(work.path())
            .env("PATH", &path)
            .env("PODRUN_STATE_DIR", state.path())
            // Another podrun's tests may hold the cluster DNS port meanwhile: its
            // retry warnings are not part of the story.
            .env("PODRUN_LOG", "off")
            .output()
            .expect("sh runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let actual: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        if normalise(&actual) != normalise(&step.expected) {
            mismatches.push(format!(
                "line {}: $ {}\n--- document\n{}\n--- run\n{}",
                step.line + 1,
                step.command,
                step.expected.join("\n"),
                actual.join("\n")
            ));
        }
        actual_outputs.push(actual);
    }

    let mut pictures = Vec::new();
    for entry in std::fs::read_dir(work.path().join("docs/img")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let made = std::fs::read_to_string(&path).unwrap();
        let committed =
            std::fs::read_to_string(repo.join("docs/img").join(&name)).unwrap_or_default();
        if picture_signature(&made) != picture_signature(&committed) {
            mismatches.push(format!(
                "docs/img/{}: the run draws {:?}, the committed picture {:?}",
                name.to_string_lossy(),
                picture_signature(&made),
                picture_signature(&committed)
            ));
        }
        pictures.push((name, made));
    }
    assert!(!pictures.is_empty(), "the walkthrough draws no picture");

    if update {
        let mut lines: Vec<String> = doc.lines().map(String::from).collect();
        // Replace outputs from the last step up, so earlier line numbers stay valid.
        for (step, actual) in steps.iter().zip(&actual_outputs).rev() {
            let from = step.line + 1;
            lines.splice(from..from + step.expected.len(), actual.iter().cloned());
        }
        std::fs::write(&doc_path, lines.join("\n") + "\n").unwrap();
        for (name, svg) in &pictures {
            std::fs::write(repo.join("docs/img").join(name), svg).unwrap();
        }
        return;
    }
    assert!(
        mismatches.is_empty(),
        "{} of the walkthrough differ from a run (PODRUN_UPDATE_DOCS=1 rewrites them):\n\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}

#[test]
fn normalising_keeps_words_and_drops_clock_readings() {
    let lines = |s: &[&str]| s.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert_eq!(
        normalise(&lines(&[
            "crashy   0/2     Completed   2 (13s ago)   1m2s",
            "crashy   0/2     Completed   2 (14s ago)   1m2s",
            "   1.045 s  proxy             SIGTERM sent",
            "   50.6 ms  proxy   exited 3 (Error)",
            "pod=p_default(5f74b2f5-ca3b-4380-8d87-8ec38e81b3bd)",
        ])),
        lines(&[
            "crashy 0/2 Completed 2 (<age> ago) <age>",
            "<t> proxy SIGTERM sent",
            "<t> proxy exited 3 (Error)",
            "pod=p_default(<uid>)",
        ])
    );
    assert!(!is_age("3"));
    assert!(!is_age("Init:0/1"));
    assert!(!is_age("s"));
}
