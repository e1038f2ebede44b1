//! `podrun delete pod NAME [--grace-period N] [--now] [--wait]`: graceful deletion, as
//! `kubectl delete` does it. A pod run by a live `podrun run` is marked for deletion in
//! the store, where that process's watch sees it; `--wait` watches the store until the
//! pod is gone. A pod nobody runs any more is removed from the store directly.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use podrun_node::instance;
use podrun_node::layout::Layout;
use podrun_node::objects::{ObjectKey, Resource, Store};
use podrun_store::{EventType, ResourceType, WatchOptions, object};

use crate::Global;

/// Arguments of `podrun delete`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Resource type: pod (pods, po) or job (jobs).
    pub resource: String,
    /// Object names.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Seconds given to the pod to terminate gracefully (default: the pod's own).
    #[arg(long = "grace-period")]
    pub grace_period: Option<i64>,
    /// Same as --grace-period=1.
    #[arg(long)]
    pub now: bool,
    /// Wait for the pod to be gone before returning.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub wait: bool,
    /// Namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    let state = global.state_dir();
    let store = Store::open(&state)?;
    let layout = Layout::new(&state);
    // One runtime for every wait: the store's watch hub lives on the runtime that
    // opened the first watch.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ctx = Ctx {
        store: &store,
        layout: &layout,
        runtime: &runtime,
    };
    let grace = if args.now { Some(1) } else { args.grace_period };
    let mut code = 0;
    for name in &args.names {
        let key = ObjectKey::new(&args.namespace, name);
        let result = match args.resource.as_str() {
            "pod" | "pods" | "po" => delete_pod(&ctx, &key, grace, args.wait),
            "job" | "jobs" | "job.batch" | "jobs.batch" => delete_job(&ctx, &key, grace, args.wait),
            other => {
                eprintln!("error: the server doesn't have a resource type \"{other}\"");
                return Ok(1);
            }
        };
        match result? {
            Some(kind) => println!(
                "{kind} \"{name}\" deleted from {} namespace",
                args.namespace
            ),
            None => {
                let plural = if args.resource.starts_with("job") {
                    "jobs.batch"
                } else {
                    "pods"
                };
                eprintln!("Error from server (NotFound): {plural} \"{name}\" not found");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// What a deletion works with.
struct Ctx<'a> {
    store: &'a Store,
    layout: &'a Layout,
    runtime: &'a tokio::runtime::Runtime,
}

fn delete_pod(
    ctx: &Ctx<'_>,
    key: &ObjectKey,
    grace: Option<i64>,
    wait: bool,
) -> anyhow::Result<Option<&'static str>> {
    let (store, layout) = (ctx.store, ctx.layout);
    let Some(pod) = store.get::<Pod>(Resource::PODS, key)? else {
        return Ok(None);
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = layout.pod_dir(&key.namespace, &key.name, &uid);
    let owner = instance::pod_owner(&dir).filter(|pid| instance::instance_alive(layout, *pid));
    match owner {
        Some(_) => {
            // Marked for deletion: the running instance learns of it by watch, stops
            // the containers and removes the pod.
            let gone = match store.delete(Resource::PODS, key, grace) {
                // Removed meanwhile (the garbage collector of a deleted Job, the node).
                Err(podrun_node::objects::Error::Api(e)) if e.code() == 404 => true,
                other => other?,
            };
            if wait && !gone {
                let limit = Duration::from_secs(grace.unwrap_or(30).max(0) as u64 + 60);
                wait_gone(ctx, key, &uid, limit)?;
            }
        }
        None => {
            // Nobody runs it any more: it is finished (or was recovered); remove it.
            store.remove_pod(key, &uid)?;
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(Some("pod"))
}

/// Waits, by watching the store, until the pod with `uid` is gone.
fn wait_gone(ctx: &Ctx<'_>, key: &ObjectKey, uid: &str, limit: Duration) -> anyhow::Result<()> {
    let store = ctx.store;
    let start = Instant::now();
    ctx.runtime.block_on(async {
        loop {
            // Watch from the version read: a removal after it is an event of this watch.
            let Some(pod) = store.get::<Pod>(Resource::PODS, key)? else {
                return Ok(());
            };
            if pod.metadata.uid.as_deref() != Some(uid) {
                return Ok(());
            }
            let opts = WatchOptions {
                resource_version: pod.metadata.resource_version.clone(),
                ..WatchOptions::default()
            };
            let mut watch =
                store
                    .sqlite()
                    .watch(&ResourceType::PODS, Some(&key.namespace), &opts)?;
            let left = limit.saturating_sub(start.elapsed());
            let ended = tokio::time::timeout(left, async {
                while let Some(event) = watch.next().await {
                    let ours = object::name(&event.object) == key.name
                        && object::uid(&event.object) == uid;
                    match event.kind {
                        EventType::Deleted if ours => return true,
                        // The watch fell behind the store's window: read again.
                        EventType::Error => return false,
                        _ => {}
                    }
                }
                false
            })
            .await;
            match ended {
                Ok(true) => return Ok(()),
                Ok(false) => continue,
                Err(_) => anyhow::bail!("timed out waiting for pod {:?} to be deleted", key.name),
            }
        }
    })
}

fn delete_job(
    ctx: &Ctx<'_>,
    key: &ObjectKey,
    grace: Option<i64>,
    wait: bool,
) -> anyhow::Result<Option<&'static str>> {
    let store = ctx.store;
    let Some(job) = store.get::<Job>(Resource::JOBS, key)? else {
        return Ok(None);
    };
    let uid = job.metadata.uid.clone().unwrap_or_default();
    // The Job goes first, so its controller creates nothing more; then its pods, as
    // the garbage collector of a running podrun would (background propagation) — a
    // Job left by a podrun that has exited has no collector running.
    store.delete(Resource::JOBS, key, None)?;
    let pods: Vec<Pod> = store.list(Resource::PODS, Some(&key.namespace))?;
    for pod in pods {
        let owned = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid);
        if owned {
            let pod_key = ObjectKey::new(
                &key.namespace,
                pod.metadata.name.clone().unwrap_or_default(),
            );
            delete_pod(ctx, &pod_key, grace, wait)?;
        }
    }
    Ok(Some("job.batch"))
}
