//! `podrun logs POD [-c C] [--previous] [-f]`: a container's output from its CRI log
//! file, as `kubectl logs` prints it.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use podrun_node::layout::Layout;
use podrun_node::objects::{ObjectKey, Resource, Store};

use crate::Global;

/// Arguments of `podrun logs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pod.
    pub pod: String,
    /// The container (default: the pod's default container).
    #[arg(short = 'c', long = "container")]
    pub container: Option<String>,
    /// Print the logs of the previous instance of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Keep printing new output until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    let state = global.state_dir();
    let store = Store::open(&state)?;
    let key = ObjectKey::new(&args.namespace, &args.pod);
    let Some(pod) = store.get::<Pod>(Resource::PODS, &key)? else {
        eprintln!(
            "error: error from server (NotFound): pods \"{}\" not found",
            args.pod
        );
        return Ok(1);
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let init = spec.init_containers.clone().unwrap_or_default();
    let name = match &args.container {
        Some(c) => c.clone(),
        None => {
            let default = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubectl.kubernetes.io/default-container").cloned())
                .or_else(|| spec.containers.first().map(|c| c.name.clone()))
                .unwrap_or_default();
            if spec.containers.len() + init.len() > 1 {
                let all: Vec<String> = spec
                    .containers
                    .iter()
                    .map(|c| c.name.clone())
                    .chain(init.iter().map(|c| format!("{} (init)", c.name)))
                    .collect();
                eprintln!(
                    "Defaulted container \"{default}\" out of: {}",
                    all.join(", ")
                );
            }
            default
        }
    };
    let statuses = pod.status.clone().unwrap_or_default();
    let status = statuses
        .container_statuses
        .iter()
        .flatten()
        .chain(statuses.init_container_statuses.iter().flatten())
        .find(|s| s.name == name)
        .cloned();
    let known = spec
        .containers
        .iter()
        .chain(init.iter())
        .any(|c| c.name == name);
    if !known {
        eprintln!("error: container {name} is not valid for pod {}", args.pod);
        return Ok(1);
    }
    let restart_count = status.as_ref().map_or(0, |s| s.restart_count);
    let instance = if args.previous {
        if restart_count == 0 {
            eprintln!(
                "Error from server (BadRequest): previous terminated container \"{name}\" in pod \"{}\" not found",
                args.pod
            );
            return Ok(1);
        }
        restart_count - 1
    } else {
        restart_count
    };
    let layout = Layout::new(&state);
    let dir = layout.pod_dir(
        &args.namespace,
        &args.pod,
        pod.metadata.uid.as_deref().unwrap_or_default(),
    );
    let path = layout.log_file(&dir, &name, instance);
    let Ok(mut file) = std::fs::File::open(&path) else {
        let waiting = status
            .and_then(|s| s.state)
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason)
            .unwrap_or_else(|| "PodInitializing".into());
        eprintln!(
            "Error from server (BadRequest): container \"{name}\" in pod \"{}\" is waiting to start: {waiting}",
            args.pod
        );
        return Ok(1);
    };
    let mut out = std::io::stdout().lock();
    let mut pos = copy_lines(&mut file, 0, &mut out)?;
    if args.follow && !args.previous {
        // Follow until this instance has ended and its log is drained.
        loop {
            let ended = instance_ended(&store, &key, &name, instance);
            pos = copy_lines(&mut file, pos, &mut out)?;
            if ended {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(0)
}

fn instance_ended(store: &Store, key: &ObjectKey, name: &str, instance: i32) -> bool {
    let Ok(Some(pod)) = store.get::<Pod>(Resource::PODS, key) else {
        return true;
    };
    let status = pod.status.unwrap_or_default();
    let Some(cs) = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|s| s.name == name)
    else {
        return false;
    };
    cs.restart_count > instance || cs.state.as_ref().is_some_and(|s| s.terminated.is_some())
}

/// Copies complete CRI lines from `pos` on, without their prefixes; returns the
/// offset after the last complete line.
fn copy_lines(file: &mut std::fs::File, pos: u64, out: &mut impl Write) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(pos))?;
    let mut reader = BufReader::new(file);
    let mut pos = pos;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        let body = line.trim_end_matches('\n');
        if let Some((text, full)) = parse_cri(body) {
            out.write_all(text.as_bytes())?;
            if full {
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    Ok(pos)
}

/// `<time> <stream> <F|P> <text>` → (text, whether the line is complete).
fn parse_cri(line: &str) -> Option<(&str, bool)> {
    let mut parts = line.splitn(4, ' ');
    let _time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some((text, tag != "P"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_lose_their_prefix_and_partial_lines_are_joined() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:00.000000001Z stdout F hello world\n\
             2026-01-01T00:00:00.000000002Z stderr P par\n\
             2026-01-01T00:00:00.000000003Z stderr F tial\n\
             2026-01-01T00:00:00.000000004Z stdout F incompl",
        )
        .unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        let mut out = Vec::new();
        let pos = copy_lines(&mut file, 0, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "hello world\npartial\n");
        // The incomplete last line is left for the next read.
        assert!(pos < std::fs::metadata(&path).unwrap().len());
    }
}
