//! `podrun inject`: print manifests with the mesh sidecar injected (`istioctl kube-inject`).
//!
//! Reads one or more multi-document YAML files (`-` is stdin), injects every Pod and pod
//! template (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, List items), passes
//! every other document through unchanged and in order, and writes `---`-separated YAML.
//! Bad input exits with status 2 and a message naming the file and document.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use podrun_inject::{MeshConfig, NativeSidecars, Runtime, inject_manifests};

use crate::Global;

/// Arguments of `podrun inject`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest file(s) to inject; `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<String>,
    /// Write the result here instead of standard output.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Injector configuration (YAML `MeshConfig`; unknown keys are errors).
    #[arg(long = "config")]
    config: Option<PathBuf>,
    /// Override `nativeSidecars` (`true`, `false` or `auto`; without a cluster `auto` means classic).
    #[arg(long, value_parser = ["true", "false", "auto"])]
    native_sidecars: Option<String>,
    /// Override the runtime: `podrun` (containers run the podrun binary) or `istio` (proxyv2 image).
    #[arg(long, value_parser = ["podrun", "istio"])]
    runtime: Option<String>,
    /// Path of the podrun binary inside pods (runtime `podrun`).
    #[arg(long)]
    podrun_path: Option<String>,
}

/// Exit status for unusable input, distinct from 1 (internal failure).
const EXIT_BAD_INPUT: u8 = 2;

fn load_config(args: &Args) -> anyhow::Result<MeshConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            MeshConfig::from_yaml(&text).with_context(|| format!("config {}", path.display()))?
        }
        None => MeshConfig::default(),
    };
    if let Some(n) = &args.native_sidecars {
        config.native_sidecars = match n.as_str() {
            "true" => NativeSidecars::True,
            "false" => NativeSidecars::False,
            _ => NativeSidecars::Auto,
        };
    }
    if let Some(r) = &args.runtime {
        config.runtime = if r == "istio" {
            Runtime::Istio
        } else {
            Runtime::Podrun
        };
    }
    if let Some(p) = &args.podrun_path {
        config.podrun_path = p.clone();
    }
    Ok(config)
}

fn read_input(name: &str) -> anyhow::Result<String> {
    if name == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(name).with_context(|| format!("cannot read {name}"))
}

/// Runs `podrun inject`.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<u8> {
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_BAD_INPUT);
        }
    };
    let mut out = String::new();
    for name in &args.files {
        let text = match read_input(name) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(EXIT_BAD_INPUT);
            }
        };
        let label = if name == "-" {
            "<stdin>"
        } else {
            name.as_str()
        };
        match inject_manifests(&text, &config) {
            Ok(result) => {
                for m in &result.messages {
                    eprintln!("{m}");
                }
                if !out.is_empty() && !result.yaml.is_empty() {
                    out.push_str("---\n");
                }
                out.push_str(&result.yaml);
            }
            Err(e) => {
                eprintln!("error: {label}: {e}");
                return Ok(EXIT_BAD_INPUT);
            }
        }
    }
    match &args.output {
        Some(path) => std::fs::write(path, &out)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(out.as_bytes())
                .context("cannot write output")?;
            stdout.flush().context("cannot write output")?;
        }
    }
    Ok(0)
}
