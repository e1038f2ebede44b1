//! `podrun webhook`: the mutating admission webhook over HTTPS, and
//! `podrun webhook manifests`: the objects that deploy it on a cluster.
//!
//! Certificates come from `--tls-cert`/`--tls-key`, or are generated at start (a CA plus a
//! serving certificate for the Service's DNS names); the CA bundle then goes to
//! `--ca-bundle-out` or standard output so it can be pasted into `caBundle`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use podrun_inject::{MeshConfig, NativeSidecars};
use podrun_webhook::{
    DeployOptions, FailurePolicy, ServingCert, Webhook, deploy_objects, serve, service_dns_names,
};

use crate::Global;

/// Arguments of `podrun webhook`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    // Boxed: these flag sets are large and `Args` lives in the binary's top-level enum.
    #[command(subcommand)]
    command: Option<Box<WebhookCommand>>,
    #[command(flatten)]
    serve: Box<ServeArgs>,
}

#[derive(Debug, clap::Subcommand)]
enum WebhookCommand {
    /// Print Namespace, ServiceAccount, Secret, Deployment, Service and
    /// MutatingWebhookConfiguration to deploy the webhook on a cluster.
    Manifests(ManifestArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct CertArgs {
    /// Serving certificate (PEM chain). Without it a CA and certificate are generated.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Serving key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that signed `--tls-cert`, for `caBundle`.
    #[arg(long, requires = "tls_cert")]
    ca_cert: Option<PathBuf>,
    /// Service name (certificate DNS names).
    #[arg(long, default_value = "podrun-webhook")]
    service: String,
    /// Namespace of the Service.
    #[arg(long, default_value = "podrun-system")]
    namespace: String,
    /// Extra DNS names or IP addresses for a generated certificate (repeatable).
    #[arg(long = "dns-name")]
    dns_names: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on (Istio's webhook port is 15017).
    #[arg(long, default_value = "0.0.0.0:15017")]
    listen: SocketAddr,
    #[command(flatten)]
    certs: CertArgs,
    /// Write the CA bundle of a generated certificate here instead of standard output.
    #[arg(long)]
    ca_bundle_out: Option<PathBuf>,
    /// Injector configuration (YAML `MeshConfig`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override `nativeSidecars` (`true`, `false`, `auto`).
    #[arg(long, value_parser = ["true", "false", "auto"])]
    native_sidecars: Option<String>,
    /// On injection errors: `fail` denies the pod, `ignore` admits it unchanged with a warning.
    #[arg(long, default_value = "fail", value_parser = ["fail", "ignore"])]
    failure_policy: String,
    /// Largest accepted request body in bytes (larger → 413).
    #[arg(long, default_value_t = podrun_webhook::DEFAULT_MAX_BODY)]
    max_body_bytes: usize,
}

#[derive(Debug, clap::Args)]
struct ManifestArgs {
    #[command(flatten)]
    certs: CertArgs,
    /// Image that contains the podrun binary.
    #[arg(long, default_value = "podrun/podrun:0.1.0")]
    image: String,
    /// `reinvocationPolicy` of the webhook entries.
    #[arg(long, default_value = "Never", value_parser = ["Never", "IfNeeded"])]
    reinvocation_policy: String,
    /// `failurePolicy` of the webhook entries (what the API server does if we are unreachable).
    #[arg(long, default_value = "Fail", value_parser = ["Fail", "Ignore"])]
    failure_policy: String,
}

fn certificate(args: &CertArgs) -> anyhow::Result<ServingCert> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
        };
        return Ok(ServingCert {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            ca_pem: args
                .ca_cert
                .as_ref()
                .map(read)
                .transpose()?
                .unwrap_or_default(),
        });
    }
    let mut names = service_dns_names(&args.service, &args.namespace, "cluster.local");
    names.extend(args.dns_names.iter().cloned());
    names.extend(["localhost".to_owned(), "127.0.0.1".to_owned()]);
    ServingCert::generate(&names).context("cannot generate the serving certificate")
}

/// Runs `podrun webhook` or `podrun webhook manifests`.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<u8> {
    match args.command.map(|c| *c) {
        Some(WebhookCommand::Manifests(m)) => manifests(m),
        None => serve_webhook(*args.serve),
    }
}

fn manifests(args: ManifestArgs) -> anyhow::Result<u8> {
    let cert = certificate(&args.certs)?;
    let opts = DeployOptions {
        namespace: args.certs.namespace.clone(),
        service: args.certs.service.clone(),
        image: args.image,
        reinvocation_policy: args.reinvocation_policy,
        failure_policy: args.failure_policy,
        extra_args: Vec::new(),
    };
    let mut out = String::new();
    for (i, obj) in deploy_objects(&opts, &cert).iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(obj).context("cannot render YAML")?);
    }
    print!("{out}");
    Ok(0)
}

fn serve_webhook(args: ServeArgs) -> anyhow::Result<u8> {
    let mut config = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config {}", p.display()))?;
            MeshConfig::from_yaml(&text)?
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
    let policy = if args.failure_policy == "ignore" {
        FailurePolicy::Ignore
    } else {
        FailurePolicy::Fail
    };
    let generated = args.certs.tls_cert.is_none();
    let cert = certificate(&args.certs)?;
    let tls = cert.server_config()?;
    if generated {
        match &args.ca_bundle_out {
            Some(path) => std::fs::write(path, &cert.ca_pem)
                .with_context(|| format!("cannot write {}", path.display()))?,
            None => print!("{}", cert.ca_pem),
        }
    }
    let webhook = Arc::new(Webhook::new(config, policy).with_max_body(args.max_body_bytes));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        eprintln!("podrun webhook listening on https://{addr}/inject");
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        serve(listener, tls, webhook, shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(0)
}
