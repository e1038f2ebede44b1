//! `podrun run -f FILE…`: run Pods and Jobs in the foreground, printing rows exactly as
//! `kubectl get pods -w` would, and exit with the result.
//!
//! Exit codes: 0 every awaited pod and Job succeeded, 1 one failed, 2 invalid input,
//! 124 `--timeout` expired, 130/143 interrupted by SIGINT/SIGTERM (after every pod was
//! deleted gracefully).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use podrun_lifecycle::print::pod_row;
use podrun_model::{Object, PodPhase, job_has_condition};
use podrun_node::{Node, NodeEvent};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast::error::RecvError;

use crate::Global;

/// Arguments of `podrun run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest files (YAML or JSON; `-` reads standard input). Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Give up after this long (e.g. `30s`, `2m`): delete everything gracefully, exit 124.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Inject the mesh sidecar (istio-init + istio-proxy, run by this binary) into every
    /// pod and pod template. Without it, pods are injected where Istio's webhook would
    /// be called: namespace labelled istio-injection=enabled, or pod labelled
    /// sidecar.istio.io/inject=true.
    #[arg(long)]
    pub inject: bool,
    /// Pod addresses come from this CIDR; the host bridge podrun0 gets its first address.
    #[arg(long, default_value = podrun_net::sandbox::DEFAULT_POD_CIDR)]
    pub pod_cidr: podrun_net::sandbox::ipam::Ipv4Cidr,
    /// Let pods reach beyond this machine: masquerade their traffic (an iptables
    /// MASQUERADE rule and IP forwarding, removed when the last podrun using them exits).
    #[arg(long)]
    pub masquerade: bool,
    /// Write every pod's lifecycle records and Kubernetes Events to FILE as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub events: Option<std::path::PathBuf>,
    /// When the run ends, draw every pod's lifecycle as a Gantt chart into FILE (SVG).
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<std::path::PathBuf>,
    /// Run the containers of pods and templates without a podrun.io/host-rootfs annotation
    /// on the host's file system, as processes of the host's binaries, instead of from their
    /// images: the annotation is set to "*" on them.
    #[arg(long)]
    pub host_rootfs: bool,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    let objects = match crate::manifest::read_all(&args.files) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(2);
        }
    };
    if objects.is_empty() {
        eprintln!("{}", podrun_model::no_objects_message("run"));
        return Ok(2);
    }
    let mut notes = Vec::new();
    let objects = match crate::mesh::inject_all(objects, args.inject, &mut notes) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    for note in notes {
        eprintln!("{note}");
    }
    let objects = match host_rootfs::stamp_all(objects, args.host_rootfs) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    let admitted = match admit(objects) {
        Ok(a) => a,
        Err(messages) => {
            for m in messages {
                eprintln!("{m}");
            }
            return Ok(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let network = podrun_net::sandbox::NetworkConfig {
        pod_cidr: args.pod_cidr,
        masquerade: args.masquerade,
        ..Default::default()
    };
    if let Some(path) = &args.events {
        podrun_node::events::write_all_pods_to(path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    let mut pods = Vec::new();
    let code = runtime.block_on(run_objects(
        admitted,
        args.timeout,
        global,
        network,
        &mut pods,
    ))?;
    if let Some(path) = &args.timeline {
        crate::cmd::timeline::write_svg(&global.state_dir(), &pods, path)?;
    }
    Ok(code)
}

/// Validated objects, ready to create.
struct Admitted {
    objects: Vec<Object>,
}

/// Whether the host's time-zone database has `zone` (what the API server's
/// `time.LoadLocation` asks of its own copy): a TZif file under /usr/share/zoneinfo.
fn zone_known(zone: &str) -> bool {
    use std::io::Read;
    // Validation has already refused `..`, empty parts and anything but [A-Za-z0-9._+-].
    let path = std::path::Path::new("/usr/share/zoneinfo").join(zone);
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"TZif")
}

/// Defaults and validates every object; all errors are reported, none is created.
fn admit(objects: Vec<Object>) -> Result<Admitted, Vec<String>> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for object in objects {
        let admitted = match object {
            Object::Pod(pod) => podrun_model::admit_pod(*pod).map(|p| Object::Pod(Box::new(p))),
            Object::Job(job) => podrun_model::admit_job(*job).map(|j| Object::Job(Box::new(j))),
            Object::Service(svc) => {
                podrun_model::admit_service(*svc).map(|s| Object::Service(Box::new(s)))
            }
            Object::Deployment(d) => {
                podrun_model::admit_deployment(*d).map(|d| Object::Deployment(Box::new(d)))
            }
            Object::ReplicaSet(rs) => {
                podrun_model::admit_replica_set(*rs).map(|r| Object::ReplicaSet(Box::new(r)))
            }
            Object::ConfigMap(cm) => {
                podrun_model::admit_config_map(*cm).map(|c| Object::ConfigMap(Box::new(c)))
            }
            Object::Secret(s) => {
                podrun_model::admit_secret(*s).map(|s| Object::Secret(Box::new(s)))
            }
            Object::CronJob(cj) => {
                podrun_model::admit_cron_job(*cj, &zone_known).map(|c| Object::CronJob(Box::new(c)))
            }
            other => Ok(other),
        };
        match admitted {
            Ok(o) => ok.push(o),
            // kubectl prefixes the API server's message with "The".
            Err(e) => errors.push(format!("The {e}")),
        }
    }
    if errors.is_empty() {
        Ok(Admitted { objects: ok })
    } else {
        Err(errors)
    }
}

async fn run_objects(
    admitted: Admitted,
    timeout: Option<Duration>,
    global: &Global,
    network: podrun_net::sandbox::NetworkConfig,
    pods: &mut Vec<(String, String, String)>,
) -> anyhow::Result<u8> {
    let (node, recovery) = Node::open(&global.state_dir())?;
    for line in &recovery.reports {
        eprintln!("podrun: {line}");
    }
    if !podrun_node::runtime::isolation_available() {
        eprintln!("{}", podrun_net::sandbox::NO_ROOT_WARNING);
    }
    let mut services = RunServices::start(&node, &global.state_dir(), &network)?;
    node.set_network(network)?;
    tokio::spawn(node.clone().serve_control());
    let slow = std::env::var_os(EVENT_BUFFER_ENV).is_some();
    let mut events = relay(node.subscribe());

    // Pods and Jobs whose end `run` waits for; pods with restartPolicy Always run
    // until everything else is done (or until interrupted when alone).
    let mut awaited_pods: BTreeSet<String> = BTreeSet::new();
    let mut awaited_jobs: BTreeSet<String> = BTreeSet::new();
    let mut failed = false;
    let mut errors = Vec::new();
    // Deployments and ReplicaSets keep their pods (created by the controllers) running
    // until the run is interrupted or everything awaited is done.
    let mut controlled = false;
    let mut cron_jobs: Vec<(String, String)> = Vec::new();
    for object in admitted.objects {
        match object {
            Object::Pod(pod) => {
                let policy = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.restart_policy.clone())
                    .unwrap_or_default();
                match node.create_pod(*pod) {
                    Ok(pod) => {
                        if policy != "Always" {
                            awaited_pods.insert(key(&pod.metadata));
                        }
                    }
                    Err(e) => errors.push(e.kubectl()),
                }
            }
            Object::Job(job) => match node.create_job(*job) {
                Ok(job) => {
                    awaited_jobs.insert(key(&job.metadata));
                }
                Err(e) => errors.push(e.kubectl()),
            },
            Object::ConfigMap(cm) => {
                if let Err(e) = node.add_config_map(&cm) {
                    errors.push(e.kubectl());
                }
            }
            Object::Secret(s) => {
                if let Err(e) = node.add_secret(&s) {
                    errors.push(e.kubectl());
                }
            }
            Object::Service(svc) => {
                if let Err(e) = services.create(*svc) {
                    errors.push(e);
                }
            }
            Object::Deployment(d) => match node.create_deployment(*d) {
                Ok(()) => controlled = true,
                Err(e) => errors.push(e.kubectl()),
            },
            Object::ReplicaSet(rs) => match node.create_replica_set(*rs) {
                Ok(()) => controlled = true,
                Err(e) => errors.push(e.kubectl()),
            },
            // The CronJob controller creates its Jobs at their times; the run goes on
            // until it is interrupted (or `--timeout`), as with a Deployment.
            Object::CronJob(cj) => match create_cron_job(&node, &cj) {
                Ok(key) => {
                    cron_jobs.push(key);
                    controlled = true;
                }
                Err(e) => errors.push(e),
            },
            // Accepted so that manifests written for a cluster run unchanged.
            Object::ServiceAccount(_) | Object::Namespace(_) => {}
        }
    }
    for e in &errors {
        eprintln!("{e}");
    }
    if !errors.is_empty() {
        failed = true;
    }

    let mut printer = Printer::default();
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut exit: Option<u8> = None;
    let mut stopping = false;
    let start_done = awaited_pods.is_empty() && awaited_jobs.is_empty();
    if node.running_pods() == 0 && awaited_jobs.is_empty() && !controlled {
        return Ok(u8::from(failed));
    }
    loop {
        if slow {
            // The test knob's slow consumer (see `EVENT_BUFFER_ENV`).
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sleep = async {
            match deadline {
                Some(d) if exit.is_none() => tokio::time::sleep_until(d).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            event = events.recv() => match event {
                Ok(NodeEvent::Pod(pod)) => {
                    printer.pod(&pod);
                    remember(pods, &pod);
                }
                Ok(NodeEvent::PodFinished(pod)) => {
                    printer.pod(&pod);
                    let k = key(&pod.metadata);
                    if awaited_pods.remove(&k) {
                        failed |= PodPhase::of(&pod) != Some(PodPhase::Succeeded);
                    }
                }
                Ok(NodeEvent::Job(job)) => {
                    if job_has_condition(&job, "Failed") {
                        failed = true;
                        awaited_jobs.remove(&key(&job.metadata));
                    } else if job_has_condition(&job, "Complete") {
                        awaited_jobs.remove(&key(&job.metadata));
                    }
                }
                // Deleted before it completed (from another terminal): nothing to wait for.
                Ok(NodeEvent::JobDeleted(job)) => {
                    if awaited_jobs.remove(&key(&job.metadata)) {
                        failed = true;
                    }
                }
                // Events were dropped: what they said is in the store. List again, so
                // no pod's or Job's end is missed.
                Err(RecvError::Lagged(missed)) => {
                    eprintln!("podrun: fell {missed} events behind; listing pods and Jobs again");
                    resync(&node, &mut awaited_pods, &mut awaited_jobs, &mut failed, &mut printer, pods);
                }
                Err(RecvError::Closed) => break,
            },
            _ = sigint.recv() => { exit.get_or_insert(130); }
            _ = sigterm.recv() => { exit.get_or_insert(143); }
            () = sleep => {
                eprintln!("error: timed out waiting for the pods to finish");
                exit = Some(124);
            }
        }
        let all_done = !start_done && awaited_pods.is_empty() && awaited_jobs.is_empty();
        if (all_done || exit.is_some()) && !stopping {
            stopping = true;
            // The controllers stop first: a CronJob controller still running could
            // create a Job after its CronJob's Jobs were listed, and it would outlive
            // the run.
            node.delete_all_pods();
            delete_cron_jobs(&node, &cron_jobs);
        }
        // Done when nothing is left running: after our own graceful stop, or because
        // every pod was deleted from another terminal.
        let nothing_awaited = awaited_pods.is_empty() && awaited_jobs.is_empty();
        if (stopping || (nothing_awaited && !controlled)) && node.running_pods() == 0 {
            // What the pods' workers said before they went may still be queued: print it.
            while let Ok(event) = events.try_recv() {
                match event {
                    NodeEvent::Pod(pod) => printer.pod(&pod),
                    NodeEvent::PodFinished(pod) => printer.pod(&pod),
                    _ => {}
                }
            }
            break;
        }
    }
    let _ = std::io::stdout().flush();
    Ok(exit.unwrap_or(u8::from(failed)))
}

/// The environment variable that relays the node's events to the run through a
/// buffer of this many events, consumed slowly (10 ms an event): a test knob that
/// makes the run fall behind, to check that it recovers by listing again. Without
/// it the run reads the node's own buffer (4,096 events).
pub const EVENT_BUFFER_ENV: &str = "PODRUN_RUN_EVENT_BUFFER";

/// The run's event receiver: the node's own, or (with [`EVENT_BUFFER_ENV`]) a small relay.
fn relay(
    mut from: tokio::sync::broadcast::Receiver<NodeEvent>,
) -> tokio::sync::broadcast::Receiver<NodeEvent> {
    let Some(capacity) = std::env::var(EVENT_BUFFER_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|c| *c > 0)
    else {
        return from;
    };
    let (tx, rx) = tokio::sync::broadcast::channel(capacity);
    tokio::spawn(async move {
        loop {
            match from.recv().await {
                Ok(event) => {
                    if tx.send(event).is_err() {
                        return;
                    }
                }
                // The relay only forwards: it does not fall 4,096 events behind.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
    rx
}

/// Brings the run's view up to date from the store after lost events: every pod's
/// row, the end of every awaited pod (gone counts as failed) and Job.
fn resync(
    node: &Node,
    awaited_pods: &mut BTreeSet<String>,
    awaited_jobs: &mut BTreeSet<String>,
    failed: &mut bool,
    printer: &mut Printer,
    pods: &mut Vec<(String, String, String)>,
) {
    use podrun_store::{ListOptions, ResourceType};
    let store = node.store().sqlite();
    let list = |rt: &ResourceType| {
        store
            .list(rt, None, &ListOptions::default())
            .map(|l| l.items)
    };
    let Ok(listed) = list(&ResourceType::PODS) else {
        return;
    };
    let mut present = BTreeSet::new();
    for value in listed {
        let Ok(pod) = serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(value) else {
            continue;
        };
        printer.pod(&pod);
        remember(pods, &pod);
        let k = key(&pod.metadata);
        match PodPhase::of(&pod) {
            Some(PodPhase::Succeeded) => {
                awaited_pods.remove(&k);
            }
            Some(PodPhase::Failed) if awaited_pods.remove(&k) => *failed = true,
            _ => {}
        }
        present.insert(k);
    }
    awaited_pods.retain(|k| {
        let keep = present.contains(k);
        *failed |= !keep;
        keep
    });
    let Ok(listed) = list(&ResourceType::JOBS) else {
        return;
    };
    let mut present = BTreeSet::new();
    for value in listed {
        let Ok(job) = serde_json::from_value::<k8s_openapi::api::batch::v1::Job>(value) else {
            continue;
        };
        let k = key(&job.metadata);
        if job_has_condition(&job, "Failed") {
            if awaited_jobs.remove(&k) {
                *failed = true;
            }
        } else if job_has_condition(&job, "Complete") {
            awaited_jobs.remove(&k);
        }
        present.insert(k);
    }
    awaited_jobs.retain(|k| {
        let keep = present.contains(k);
        *failed |= !keep;
        keep
    });
}

/// Stores a CronJob for the controllers; the error is kubectl's wording.
fn create_cron_job(
    node: &Node,
    cj: &k8s_openapi::api::batch::v1::CronJob,
) -> Result<(String, String), String> {
    let namespace = cj
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut value = serde_json::to_value(cj).map_err(|e| format!("error: {e}"))?;
    if let Some(m) = value.as_object_mut() {
        m.remove("status");
    }
    let created = node
        .store()
        .sqlite()
        .create(
            &podrun_store::ResourceType::CRON_JOBS,
            Some(&namespace),
            value,
        )
        .map_err(|e| podrun_node::Error::from(e).kubectl())?;
    Ok((namespace, podrun_store::object::name(&created).to_string()))
}

/// Deletes the run's CronJobs and the Jobs they made, once the controllers have
/// stopped: nothing of them outlives the run.
fn delete_cron_jobs(node: &Node, cron_jobs: &[(String, String)]) {
    use podrun_store::{DeleteOptions, ListOptions, ResourceType};
    let store = node.store().sqlite();
    for (namespace, name) in cron_jobs {
        let Ok(cj) = store.get(&ResourceType::CRON_JOBS, Some(namespace), name) else {
            continue;
        };
        let uid = podrun_store::object::uid(&cj).to_string();
        let _ = store.delete(
            &ResourceType::CRON_JOBS,
            Some(namespace),
            name,
            &DeleteOptions::default(),
        );
        let jobs = store
            .list(
                &ResourceType::JOBS,
                Some(namespace),
                &ListOptions::default(),
            )
            .map(|l| l.items)
            .unwrap_or_default();
        let mut job_uids = BTreeSet::new();
        for job in jobs {
            if podrun_controllers::controller_of(&job).is_some_and(|c| c.2 == uid) {
                job_uids.insert(podrun_store::object::uid(&job).to_string());
                let _ = store.delete(
                    &ResourceType::JOBS,
                    Some(namespace),
                    podrun_store::object::name(&job),
                    &DeleteOptions::default(),
                );
            }
        }
        // Their pods, finished or not (the node stops the running ones), as the
        // garbage collector would once the controllers have stopped.
        let pods = store
            .list(
                &ResourceType::PODS,
                Some(namespace),
                &ListOptions::default(),
            )
            .map(|l| l.items)
            .unwrap_or_default();
        for pod in pods {
            if podrun_controllers::controller_of(&pod).is_some_and(|c| job_uids.contains(&c.2)) {
                let _ = store.delete(
                    &ResourceType::PODS,
                    Some(namespace),
                    podrun_store::object::name(&pod),
                    &DeleteOptions::default(),
                );
            }
        }
    }
}

/// Adds the pod (namespace, name, uid) to `pods` the first time it is seen.
fn remember(pods: &mut Vec<(String, String, String)>, pod: &k8s_openapi::api::core::v1::Pod) {
    let m = &pod.metadata;
    let id = (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
        m.uid.clone().unwrap_or_default(),
    );
    if !pods.contains(&id) {
        pods.push(id);
    }
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Prints `kubectl get pods -w` rows: a header before the first row, then one row each
/// time a pod's visible columns change. Like kubectl's watch output, each line is laid
/// out on its own.
#[derive(Default)]
struct Printer {
    header: bool,
    last: BTreeMap<String, (String, String, String)>,
}

impl Printer {
    fn pod(&mut self, pod: &k8s_openapi::api::core::v1::Pod) {
        let row = pod_row(pod, podrun_node::now());
        let k = key(&pod.metadata);
        let visible = (row.ready.clone(), row.status.clone(), row.restarts.clone());
        if self.last.get(&k) == Some(&visible) {
            return;
        }
        self.last.insert(k, visible);
        let mut out = std::io::stdout().lock();
        // kubectl lays each watch row out together with the header, so a column is as
        // wide as the wider of the header and that row's cell.
        let header: Vec<String> = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
            .map(String::from)
            .to_vec();
        let text = crate::table::render(&[
            header,
            vec![row.name, row.ready, row.status, row.restarts, row.age],
        ]);
        let (head, line) = text.split_once('\n').unwrap_or((&text, ""));
        if !self.header {
            self.header = true;
            let _ = writeln!(out, "{}", head.trim_end());
        }
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

/// The Services of one `podrun run`: registered with the node's Service driver (ClusterIP,
/// DNAT rules, DNS names) and stored for `podrun get services`; all removed again when
/// the run ends, however it ends.
struct RunServices {
    driver: std::sync::Arc<podrun_net::service::Services>,
    store: podrun_node::objects::Store,
    created: Vec<podrun_node::objects::ObjectKey>,
}

impl RunServices {
    /// Opens the driver and lets it follow pod events; the cluster DNS starts on the
    /// bridge IP when the first sandboxed pod appears.
    fn start(
        node: &Node,
        state_dir: &std::path::Path,
        network: &podrun_net::sandbox::NetworkConfig,
    ) -> anyhow::Result<Self> {
        use podrun_net::service::{ServiceConfig, Services};
        let mut config = ServiceConfig::defaults(state_dir)?;
        let pod_cidr = network.pod_cidr;
        config.proxy.pod_cidr =
            podrun_netplan::service::Ipv4Cidr::new(pod_cidr.network(), pod_cidr.prefix())
                .ok_or_else(|| anyhow::anyhow!("invalid pod CIDR {pod_cidr}"))?;
        let driver = std::sync::Arc::new(Services::open(config)?);
        let dns = std::net::SocketAddr::from((pod_cidr.gateway(), 53));
        let dns = podrun_node::runtime::isolation_available().then_some(dns);
        let store = node.store().sqlite().clone();
        let relist = std::sync::Arc::new(move || {
            store
                .list(
                    &podrun_store::ResourceType::PODS,
                    None,
                    &podrun_store::ListOptions::default(),
                )
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect()
        });
        let claims = driver.clone();
        node.on_pod_address(std::sync::Arc::new(move |ip| {
            if let Err(e) = claims.claim_dns_client(ip) {
                tracing::warn!(%ip, %e, "cannot publish the pod's address to the cluster DNS");
            }
        }));
        driver.clone().follow(node.subscribe(), dns, relist);
        Ok(Self {
            driver,
            store: node.store().clone(),
            created: Vec::new(),
        })
    }

    /// Registers and stores one admitted Service; the error is kubectl's wording.
    fn create(&mut self, svc: k8s_openapi::api::core::v1::Service) -> Result<(), String> {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let mut svc = self.driver.create(svc).map_err(|e| {
            format!("The Service {name:?} is invalid: spec.clusterIPs: Invalid value: {e}")
        })?;
        use podrun_node::objects::{ObjectKey, Resource};
        let key = ObjectKey::new(svc.metadata.namespace.clone().unwrap_or_default(), name);
        // One left by a podrun that was killed is replaced.
        if let Ok(Some(_)) = self
            .store
            .get::<serde_json::Value>(Resource::SERVICES, &key)
        {
            let _ = self.store.delete(Resource::SERVICES, &key, None);
        }
        self.store
            .create(Resource::SERVICES, &mut svc)
            .map_err(|e| podrun_node::Error::from(e).kubectl())?;
        self.created.push(key);
        Ok(())
    }
}

impl Drop for RunServices {
    fn drop(&mut self) {
        use podrun_node::objects::{ObjectKey, Resource};
        for key in &self.created {
            let _ = self.store.delete(Resource::SERVICES, key, None);
            // Its EndpointSlices go with it (the controllers have stopped by now).
            let slices: Vec<serde_json::Value> = self
                .store
                .list(Resource::ENDPOINT_SLICES, Some(&key.namespace))
                .unwrap_or_default();
            for slice in slices {
                let label = slice
                    .pointer("/metadata/labels/kubernetes.io~1service-name")
                    .and_then(serde_json::Value::as_str);
                let name = slice
                    .pointer("/metadata/name")
                    .and_then(serde_json::Value::as_str);
                if let (Some(svc), Some(name)) = (label, name)
                    && svc == key.name
                {
                    let slice_key = ObjectKey::new(&key.namespace, name);
                    let _ = self
                        .store
                        .delete(Resource::ENDPOINT_SLICES, &slice_key, None);
                }
            }
            if let Err(e) = self.driver.delete(&key.namespace, &key.name) {
                eprintln!("podrun: cannot remove Service {}: {e}", key.name);
            }
        }
        if let Err(e) = self.driver.shutdown() {
            eprintln!("podrun: cannot remove Service rules: {e}");
        }
    }
}

/// The `podrun.io/host-rootfs` annotation on what `podrun run` creates.
mod host_rootfs {
    use podrun_model::Object;
    use podrun_model::stamp_host_rootfs as stamp;

    /// With `all`, sets the annotation to `"*"` on every pod and pod template lacking it. The
    /// mesh containers this binary runs (`istio-init`, `istio-proxy` with the podrun binary as
    /// their command) are always listed: they run the host's podrun, not an image.
    pub fn stamp_all(objects: Vec<Object>, all: bool) -> Result<Vec<Object>, String> {
        let podrun = crate::mesh::config().podrun_path;
        objects
            .into_iter()
            .map(|object| {
                let Some(at) = object.pod_template_pointer() else {
                    return Ok(object);
                };
                let mut value = object.to_json();
                let template = value.pointer_mut(at);
                let Some(template) = template else {
                    return Ok(object);
                };
                if !stamp(template, all, &podrun) {
                    return Ok(object);
                }
                podrun_model::decode_object(value, "host-rootfs").map_err(|e| e.to_string())
            })
            .collect()
    }
}
