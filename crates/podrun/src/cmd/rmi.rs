//! `podrun rmi IMAGE|ID… | --all | --prune`: removes images (every name of each) and then the
//! blobs and unpacked layers nothing refers to any more, as `crictl rmi` does.

use std::collections::HashSet;

use podrun_images::digest::Digest;
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
    /// Remove every image no container of a running pod uses.
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
    // Containers of pods that live podrun instances run (their pod directories).
    let in_use = podrun_node::runtime::images::images_in_use(&global.state_dir());
    let user = |id: &str| in_use.iter().find(|u| u.image.image_id == id);
    let mut ids: Vec<String> = Vec::new();
    let mut failed = false;
    let add = |id: String, ids: &mut Vec<String>| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };
    if args.all || args.prune {
        for r in &records {
            if args.prune && user(r.image_id.as_str()).is_some() {
                continue;
            }
            add(r.image_id.to_string(), &mut ids);
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
            add(r.image_id.to_string(), &mut ids);
        }
    }
    for id in &ids {
        let names: Vec<&ImageRecord> = records
            .iter()
            .filter(|r| r.image_id.as_str() == id)
            .collect();
        if let Some(u) = user(id) {
            let shown = names.first().map_or(id.as_str(), |r| r.name.as_str());
            eprintln!(
                "error: image {shown:?} is in use by container {}/{}/{}",
                u.namespace, u.pod, u.container
            );
            failed = true;
            continue;
        }
        for r in names {
            store.remove_record(&r.name)?;
            println!("Deleted: {}", r.name);
        }
    }
    let live: HashSet<Digest> = in_use
        .iter()
        .flat_map(|u| u.image.layers.iter())
        .filter_map(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
        .collect();
    store.gc(&live)?;
    if failed {
        eprintln!("error: unable to remove the image(s)");
        return Ok(1);
    }
    Ok(0)
}
