//! `podrun server`: the Kubernetes API for the real kubectl, over the state directory's
//! object store. It opens the store (`<state>/store.db`), seeds the namespaces and
//! ServiceAccounts every cluster has, serves HTTPS with a bearer token on 127.0.0.1 (other
//! addresses with `--listen`, with a warning), writes the kubeconfig into the state
//! directory and prints how to use it. Pods created in a namespace labelled
//! `istio-injection=enabled` get the mesh sidecar, as `podrun run` injects it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use podrun_apiserver::server::{ApiServer, DEFAULT_LISTEN, bind, serve};
use podrun_apiserver::store_backend::StoreBackend;
use podrun_node::layout::Layout;
use podrun_store_sqlite::SqliteStore;
use serde_json::Value;

use crate::Global;

/// Arguments of `podrun server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve the API on. Anything beyond loopback is reachable by other hosts
    /// (they still need the token) and is warned about.
    #[arg(long, default_value_t = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
}

/// Runs the subcommand until SIGINT or SIGTERM.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    let state = global.state_dir();
    std::fs::create_dir_all(&state)
        .with_context(|| format!("creating the state directory {}", state.display()))?;
    let store = SqliteStore::open(&state)
        .with_context(|| format!("opening the store in {}", state.display()))?;
    store
        .lock()
        .seed_defaults(podrun_store_sqlite::stamp)
        .map_err(|e| anyhow::anyhow!("seeding the default namespaces: {}", e.message()))?;
    let layout = Layout::new(&state);
    let log_dirs = Arc::new(move |pod: &Value| {
        let meta = &pod["metadata"];
        Some(layout.pod_dir(
            meta["namespace"].as_str()?,
            meta["name"].as_str()?,
            meta["uid"].as_str()?,
        ))
    });
    let backend = StoreBackend::new(store, crate::mesh::config()).with_log_dirs(log_dirs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let bound = bind(&state, args.listen)
            .await
            .with_context(|| format!("serving on {}", args.listen))?;
        let tls = bound
            .credentials
            .server_config()
            .context("loading the serving certificate")?;
        eprintln!(
            "podrun server: serving the Kubernetes API on https://{}",
            bound.addr
        );
        println!("export KUBECONFIG={}", bound.kubeconfig.display());
        let server = Arc::new(ApiServer::new(
            Arc::new(backend),
            bound.credentials,
            env!("CARGO_PKG_VERSION"),
        ));
        serve(bound.listener, tls, server, shutdown())
            .await
            .context("serving the API")?;
        eprintln!("podrun server: stopped");
        Ok(0)
    })
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
