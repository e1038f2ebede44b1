//! `podrun images [-q] [--digests] [--no-trunc] [-o json|yaml] [REPO[:TAG]]`: the stored
//! images in crictl's columns (`IMAGE  TAG  IMAGE ID  SIZE`), a row per tag.

use std::collections::BTreeMap;

use podrun_images::{ImageRecord, Reference};

use crate::Global;

/// Arguments of `podrun images`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this repository (and tag).
    pub filter: Option<String>,
    /// Only image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Full IDs and digests.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Output format: json or yaml.
    #[arg(short, long)]
    pub output: Option<String>,
}

/// One image as the CRI lists it: an ID with its tags and digests.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Image {
    id: String,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    size: String,
    uid: Option<()>,
    username: String,
    spec: Option<()>,
    pinned: bool,
}

fn repo_of(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

fn group(records: &[ImageRecord]) -> Vec<Image> {
    let mut by_id: BTreeMap<String, Image> = BTreeMap::new();
    for r in records {
        let img = by_id
            .entry(r.image_id.to_string())
            .or_insert_with(|| Image {
                id: r.image_id.to_string(),
                repo_tags: vec![],
                repo_digests: vec![],
                size: r.size.to_string(),
                uid: None,
                username: String::new(),
                spec: None,
                pinned: false,
            });
        if !r.name.contains('@') {
            img.repo_tags.push(r.name.clone());
        }
        let d = format!("{}@{}", repo_of(&r.name), r.target);
        if !img.repo_digests.contains(&d) {
            img.repo_digests.push(d);
        }
    }
    let mut out: Vec<Image> = by_id.into_values().collect();
    for i in &mut out {
        i.repo_tags.sort();
        i.repo_digests.sort();
    }
    out.sort_by(|a, b| {
        a.repo_tags
            .first()
            .cmp(&b.repo_tags.first())
            .then(a.id.cmp(&b.id))
    });
    out
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    let service = crate::cmd::pull::service(global, None)?;
    let mut images = group(&service.store().records()?);
    if let Some(f) = &args.filter {
        let want = Reference::parse_normalized(f)
            .map_err(|e| anyhow::anyhow!("invalid filter {f:?}: {e}"))?;
        let name = want.name();
        images.retain(|i| match want.tag() {
            Some(_) => i.repo_tags.contains(&want.to_string()),
            None => i
                .repo_tags
                .iter()
                .chain(&i.repo_digests)
                .any(|t| repo_of(t) == name),
        });
    }
    match args.output.as_deref() {
        Some("json") => {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "images": images }))?
            );
            return Ok(0);
        }
        Some("yaml") => {
            print!(
                "{}",
                serde_saphyr::to_string(&serde_json::json!({ "images": images }))?
            );
            return Ok(0);
        }
        Some("table") | None => {}
        Some(other) => {
            anyhow::bail!("unsupported output format {other:?}: use json, yaml or table")
        }
    }
    if args.quiet {
        for i in &images {
            println!("{}", i.id);
        }
        return Ok(0);
    }
    // crictl's `getTruncatedID`: 13 hex digits without `sha256:`, or all of it with
    // `--no-trunc`.
    let trunc = |s: &str| -> String {
        if args.no_trunc {
            s.to_owned()
        } else {
            let s = s.strip_prefix("sha256:").unwrap_or(s);
            s.chars().take(13).collect()
        }
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["IMAGE", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "SIZE"]);
    rows.push(header.into_iter().map(str::to_owned).collect());
    for i in &images {
        let digest = i
            .repo_digests
            .first()
            .and_then(|d| d.split_once('@'))
            .map(|(_, d)| trunc(d))
            .unwrap_or_default();
        let size = human_size(i.size.parse().unwrap_or(0));
        let mut pairs: Vec<(String, String)> = i
            .repo_tags
            .iter()
            .map(|t| (repo_of(t).to_owned(), t[repo_of(t).len() + 1..].to_owned()))
            .collect();
        if pairs.is_empty() {
            let repo = i
                .repo_digests
                .first()
                .map(|d| repo_of(d).to_owned())
                .unwrap_or_else(|| "<none>".into());
            pairs.push((repo, "<none>".into()));
        }
        for (repo, tag) in pairs {
            let mut row = vec![repo, tag];
            if args.digests {
                row.push(digest.clone());
            }
            row.extend([trunc(&i.id), size.clone()]);
            rows.push(row);
        }
    }
    print!("{}", tabwrite(&rows));
    Ok(0)
}

/// Columns as Go's tabwriter with crictl's settings (min width 20, padding 3); the last
/// column is not padded.
fn tabwrite(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
                .saturating_add(3)
                .max(20)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(widths[c] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// A size with 3 significant digits in decimal units, as go-units' `HumanSizeWithPrecision`:
/// `512B`, `1kB`, `2.22MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g3(size), UNITS[i])
}

/// Go's `%.3g`.
fn go_g3(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let s = format!("{v:.2e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..3).contains(&exp) {
        let mant = mant.trim_end_matches('0').trim_end_matches('.');
        return format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let decimals = (2 - exp).max(0) as usize;
    let f = format!("{v:.decimals$}");
    if f.contains('.') {
        f.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_go_units() {
        for (n, want) in [
            (0, "0B"),
            (512, "512B"),
            (1000, "1kB"),
            (2_220_000, "2.22MB"),
            (1_982_256, "1.98MB"),
            (999_500, "1e+03kB"),
            (12_345, "12.3kB"),
        ] {
            assert_eq!(human_size(n), want, "{n}");
        }
    }

    #[test]
    fn columns_as_crictl() {
        let rows = vec![
            vec![
                "IMAGE".to_owned(),
                "TAG".into(),
                "IMAGE ID".into(),
                "SIZE".into(),
            ],
            vec![
                "docker.io/library/busybox".to_owned(),
                "1.36".into(),
                "0123456789abc".into(),
                "1.98MB".into(),
            ],
        ];
        assert_eq!(
            tabwrite(&rows),
            "IMAGE                       TAG                 IMAGE ID            SIZE\n\
             docker.io/library/busybox   1.36                0123456789abc       1.98MB\n"
        );
    }
}
