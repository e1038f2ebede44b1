//! `podrun rmi IMAGE|ID… | --all | --prune`: removes images (every name of each) and then the
//! blobs and unpacked layers nothing refers to any more, as `crictl rmi` does.

use std::collections::HashSet;

use podrun_images::{ImageRecord, Reference};

use crate::Global;

/// Arguments of `podrun rmi`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image names or IDs (a unique prefix of at least 3 hex digits).
    pub images: Vec<String>,
    /// Remove every image.
    #[arg(short, long)]
    pub all: bool,
    /// Remove every image no container uses.
    #[arg(short, long)]
    pub prune: bool,
}

fn matches(arg: &str, r: &ImageRecord) -> bool {
    let hex = arg.strip_prefix("sha256:").unwrap_or(arg);
    if hex.len() >= 3
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && r.image_id.hex().starts_with(hex)
    {
        return true;
    }
    match Reference::parse_normalized(arg) {
        Ok(reference) => {
            let want = reference.clone().with_default_tag().to_string();
            r.name == want || format!("{}@{}", reference.name(), r.target) == arg
        }
        Err(_) => false,
    }
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    if args.images.is_empty() && !args.all && !args.prune {
        eprintln!("error: image ID or name required (or --all, --prune)");
        return Ok(1);
    }
    let service = crate::cmd::pull::service(global, None)?;
    let store = service.store();
    let _lock = store.lock()?;
    let records = store.records()?;
    let mut ids: Vec<String> = Vec::new();
    let mut failed = false;
    if args.all || args.prune {
        // No container runs from a stored image yet, so --prune and --all agree.
        for r in &records {
            if !ids.contains(&r.image_id.to_string()) {
                ids.push(r.image_id.to_string());
            }
        }
    }
    for a in &args.images {
        let found: Vec<&ImageRecord> = records.iter().filter(|r| matches(a, r)).collect();
        if found.is_empty() {
            eprintln!("error: no such image {a:?} present");
            failed = true;
            continue;
        }
        for r in found {
            if !ids.contains(&r.image_id.to_string()) {
                ids.push(r.image_id.to_string());
            }
        }
    }
    for id in &ids {
        let names: Vec<&ImageRecord> = records
            .iter()
            .filter(|r| r.image_id.as_str() == id)
            .collect();
        for r in names {
            store.remove_record(&r.name)?;
            println!("Deleted: {}", r.name);
        }
    }
    store.gc(&HashSet::new())?;
    if failed {
        eprintln!("error: unable to remove the image(s)");
        return Ok(1);
    }
    Ok(0)
}
