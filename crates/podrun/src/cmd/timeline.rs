//! `podrun timeline POD [-o FILE.svg] [--format svg|text]`: a pod's lifecycle as a
//! Gantt chart, drawn from the records the node kept in the pod's directory.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use podrun_node::events::LIFECYCLE_FILE;
use podrun_node::layout::Layout;
use podrun_node::objects::{ObjectKey, Resource, Store};
use podrun_timeline::Record;

use crate::Global;

/// What to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A self-contained SVG picture.
    Svg,
    /// Text for a terminal: one row per container, then every transition.
    Text,
}

/// Arguments of `podrun timeline`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pod.
    pub pod: String,
    /// Namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    /// Write the chart to this file instead of standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// `svg` or `text` (default: svg when writing a file, text otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Read the records from this file (`podrun run --events FILE`) instead of the
    /// state directory.
    #[arg(long = "from")]
    pub from: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    let wanted = format!("{}/{}", args.namespace, args.pod);
    let text = match &args.from {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        None => match records_file(&global.state_dir(), &args.namespace, &args.pod)? {
            Some(path) => std::fs::read_to_string(&path).unwrap_or_default(),
            None => String::new(),
        },
    };
    let records: Vec<Record> = podrun_timeline::parse_lines(&text)
        .into_iter()
        .filter(|r| r.pod == wanted)
        .collect();
    if records.is_empty() {
        eprintln!(
            "error: error from server (NotFound): pods \"{}\" not found",
            args.pod
        );
        return Ok(1);
    }
    let format = args.format.unwrap_or(if args.output.is_some() {
        Format::Svg
    } else {
        Format::Text
    });
    let chart = match format {
        Format::Svg => podrun_timeline::render_svg(&records),
        Format::Text => podrun_timeline::render_text(&records),
    };
    match &args.output {
        Some(path) => std::fs::write(path, chart)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => print!("{chart}"),
    }
    Ok(0)
}

/// The pod's record file: the stored pod's directory, or — for a pod no longer in the
/// store — the most recently written directory of a pod of that name.
fn records_file(state: &Path, namespace: &str, name: &str) -> anyhow::Result<Option<PathBuf>> {
    let layout = Layout::new(state);
    if let Ok(store) = Store::open(state)
        && let Some(pod) = store.get::<Pod>(Resource::PODS, &ObjectKey::new(namespace, name))?
    {
        let dir = layout.pod_dir(
            namespace,
            name,
            pod.metadata.uid.as_deref().unwrap_or_default(),
        );
        return Ok(Some(dir.join(LIFECYCLE_FILE)));
    }
    let prefix = format!("{namespace}_{name}_");
    let newest = std::fs::read_dir(layout.pods_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path().join(LIFECYCLE_FILE))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max();
    Ok(newest.map(|(_, p)| p))
}

/// Draws the pods in `pods` (namespace, name, uid) into one SVG file, one chart below
/// the other (`podrun run --timeline FILE.svg`).
pub fn write_svg(
    state: &Path,
    pods: &[(String, String, String)],
    path: &Path,
) -> anyhow::Result<()> {
    let layout = Layout::new(state);
    let mut records = Vec::new();
    for (namespace, name, uid) in pods {
        let file = layout.pod_dir(namespace, name, uid).join(LIFECYCLE_FILE);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        records.extend(podrun_timeline::parse_lines(&text));
    }
    std::fs::write(path, podrun_timeline::render_svg(&records))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}
