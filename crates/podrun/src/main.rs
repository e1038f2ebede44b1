//! `podrun`: Kubernetes pods with native sidecars, on one machine, as real Linux processes.

mod cmd;
mod manifest;
mod mesh;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run Kubernetes pods with native sidecars on this machine, with no cluster.
#[derive(Debug, Parser)]
#[command(name = "podrun", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// State directory (store, pod sandboxes, logs). Default: /var/lib/podrun as root,
    /// $XDG_STATE_HOME/podrun otherwise.
    #[arg(long, global = true, env = "PODRUN_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl Global {
    /// The state directory in effect.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/var/lib/podrun");
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        base.join("podrun")
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Pods and Jobs in the foreground, printing `kubectl get pods -w` rows.
    Run(cmd::run::Args),
    /// Serve the Kubernetes API for kubectl over the state directory's store.
    Server(cmd::server::Args),
    /// Show pods or jobs, as `kubectl get` would.
    Get(cmd::get::Args),
    /// Print a container's logs.
    Logs(cmd::logs::Args),
    /// Run a command in a running container.
    Exec(cmd::exec::Args),
    /// Delete a pod gracefully.
    Delete(cmd::delete::Args),
    /// Print manifests with the mesh sidecar injected.
    Inject(cmd::inject::Args),
    /// Serve the mutating admission webhook that injects the mesh sidecar.
    Webhook(cmd::webhook::Args),
    /// Install the traffic-capture rules in the current network namespace.
    ProxyInit(cmd::proxy_init::Args),
    /// Run the mesh sidecar proxy.
    Proxy(cmd::proxy::Args),
    /// Check host prerequisites and list (or --clean) what podrun left behind.
    Doctor(cmd::doctor::Args),
    /// Draw a pod's lifecycle as a Gantt chart (SVG or text).
    Timeline(cmd::timeline::Args),
    /// Pull an image into the local image store.
    Pull(cmd::pull::Args),
    /// List stored images.
    Images(cmd::images::Args),
    /// Remove stored images.
    Rmi(cmd::rmi::Args),
    /// Load images from a docker or OCI archive, or an OCI layout directory.
    Load(cmd::load::Args),
}

/// mimalloc: the proxy allocates a few small buffers per request, and glibc's
/// allocator cost more instructions than request parsing (see docs/proxy-bench.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr);
    if std::env::var_os("PODRUN_LOG").is_some() {
        logs.with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PODRUN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    } else {
        // A plain level needs no directive parser: a sidecar that never sets
        // PODRUN_LOG keeps the filter's regex engine out of its memory.
        logs.with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .init();
    }
    let result = match cli.command {
        Command::Run(args) => cmd::run::run(args, &cli.global),
        Command::Server(args) => cmd::server::run(args, &cli.global),
        Command::Get(args) => cmd::get::run(args, &cli.global),
        Command::Logs(args) => cmd::logs::run(args, &cli.global),
        Command::Exec(args) => cmd::exec::run(args, &cli.global),
        Command::Delete(args) => cmd::delete::run(args, &cli.global),
        Command::Inject(args) => cmd::inject::run(args, &cli.global),
        Command::Webhook(args) => cmd::webhook::run(args, &cli.global),
        Command::ProxyInit(args) => cmd::proxy_init::run(args, &cli.global),
        Command::Proxy(args) => cmd::proxy::run(args, &cli.global),
        Command::Doctor(args) => cmd::doctor::run(args, &cli.global),
        Command::Timeline(args) => cmd::timeline::run(args, &cli.global),
        Command::Pull(args) => cmd::pull::run(args, &cli.global),
        Command::Images(args) => cmd::images::run(args, &cli.global),
        Command::Rmi(args) => cmd::rmi::run(args, &cli.global),
        Command::Load(args) => cmd::load::run(args, &cli.global),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
