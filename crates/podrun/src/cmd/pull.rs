//! `podrun pull [--creds U[:P]] [--platform linux/ARCH] IMAGE`: pulls an image into
//! `<state>/images`, as `crictl pull` does, with a progress line when stdout is a terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use podrun_images::manifest::Platform;
use podrun_images::{Credentials, HostsConfig, ImageService, Keyring, PullEvent, Reference};

use crate::Global;

/// Where registries are reached, shared by the image subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// A directory of containerd `hosts.toml` files (`<host>/hosts.toml`, `_default/hosts.toml`);
    /// default `/etc/podrun/certs.d` (root) or `$XDG_CONFIG_HOME/podrun/certs.d`.
    #[arg(long = "registry-config", env = "PODRUN_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,
    /// A registry reached over plain HTTP, or HTTPS without certificate checks.
    #[arg(long = "insecure-registry")]
    pub insecure: Vec<String>,
}

impl RegistryArgs {
    fn hosts(&self) -> HostsConfig {
        HostsConfig {
            dir: self
                .registry_config
                .clone()
                .or_else(default_registry_config),
            insecure: self.insecure.clone(),
        }
    }
}

/// `/etc/podrun/certs.d` as root, `$XDG_CONFIG_HOME/podrun/certs.d` otherwise, if it exists.
fn default_registry_config() -> Option<PathBuf> {
    let dir = if nix::unistd::geteuid().is_root() {
        PathBuf::from("/etc/podrun/certs.d")
    } else {
        std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?
            .join("podrun/certs.d")
    };
    dir.is_dir().then_some(dir)
}

/// Opens the image store of the state directory.
pub fn service(global: &Global, registry: Option<&RegistryArgs>) -> anyhow::Result<ImageService> {
    let hosts = registry.map(RegistryArgs::hosts).unwrap_or_default();
    Ok(ImageService::open(
        global.state_dir().join("images"),
        hosts,
    )?)
}

/// Arguments of `podrun pull`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image, e.g. `busybox:1.36` or `127.0.0.1:5000/app@sha256:…`.
    pub image: String,
    /// Registry credentials, `USERNAME[:PASSWORD]`.
    #[arg(long)]
    pub creds: Option<String>,
    /// A docker config JSON (`{"auths": …}`) to take credentials from.
    #[arg(long = "auth-file")]
    pub auth_file: Option<PathBuf>,
    /// The platform to pull from an index, `os/arch[/variant]` (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    let reference = match Reference::parse_normalized(&args.image) {
        Ok(r) => r.to_pull_ref(),
        Err(e) => {
            eprintln!("error: invalid image name {:?}: {e}", args.image);
            return Ok(1);
        }
    };
    let mut service = service(global, Some(&args.registry))?;
    if let Some(p) = &args.platform {
        service = service.with_platform(Platform::parse(p).map_err(anyhow::Error::msg)?);
    }
    let mut creds: Vec<Credentials> = Vec::new();
    if let Some(c) = &args.creds {
        let (u, p) = c.split_once(':').unwrap_or((c, ""));
        creds.push(Credentials {
            username: u.to_owned(),
            password: p.to_owned(),
        });
    }
    if let Some(f) = &args.auth_file {
        let mut k = Keyring::default();
        k.add_docker_config(&std::fs::read(f)?)
            .map_err(anyhow::Error::msg)?;
        creds.extend(k.lookup(reference.domain(), reference.path()));
    }
    let progress = std::io::stdout().is_terminal().then(progress_line);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut result = Err(None);
    for c in creds
        .iter()
        .cloned()
        .map(Some)
        .chain(creds.is_empty().then_some(None))
    {
        match rt.block_on(service.pull(&reference, c, progress.clone())) {
            Ok(r) => {
                result = Ok(r);
                break;
            }
            Err(e) => result = Err(Some(e)),
        }
    }
    if progress.is_some() {
        print!("\r\x1b[K");
    }
    match result {
        Ok(record) => {
            println!("Image is up to date for {}", record.image_id);
            Ok(0)
        }
        Err(e) => {
            eprintln!(
                "error: pulling image: {}",
                e.map(|e| e.to_string()).unwrap_or_default()
            );
            Ok(1)
        }
    }
}

/// One line, rewritten in place: the layer being fetched or unpacked and its bytes.
fn progress_line() -> podrun_images::service::Progress {
    let sizes = Arc::new(Mutex::new(std::collections::HashMap::new()));
    Arc::new(move |e: PullEvent| {
        let line = match &e {
            PullEvent::Resolved { digest } => format!("Resolved {}", short(digest.hex())),
            PullEvent::LayerStarted { digest, size } => {
                sizes
                    .lock()
                    .expect("progress lock")
                    .insert(digest.clone(), *size);
                format!("{}: downloading", short(digest.hex()))
            }
            PullEvent::LayerProgress { digest, done } => {
                let total = sizes
                    .lock()
                    .expect("progress lock")
                    .get(digest)
                    .copied()
                    .unwrap_or(0);
                format!(
                    "{}: downloading {}/{}",
                    short(digest.hex()),
                    crate::cmd::images::human_size(*done),
                    crate::cmd::images::human_size(total)
                )
            }
            PullEvent::LayerExists { digest } => format!("{}: already exists", short(digest.hex())),
            PullEvent::Unpacking { digest } => format!("{}: unpacking", short(digest.hex())),
        };
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[K{line}");
        let _ = out.flush();
    })
}

fn short(hex: &str) -> &str {
    &hex[..12.min(hex.len())]
}
