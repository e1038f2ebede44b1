//! Running a pod's container from its image: the host-filesystem opt-in, the image pull
//! before each start (decided by [`podrun_images::policy::ImagePuller`], carried out here),
//! and the process and root derived from the image.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use k8s_openapi::api::core::v1::{Container, Pod};
use podrun_images::policy::{ImageEvent, ImageFailure, ImagePuller, StartStep, back_off_key};
use podrun_images::process::{self, ProcessUser};
use podrun_images::{
    EnsureError, EnsuredImage, HostsConfig, ImageService, Keyring, Lookup, PullPolicy, PullRequest,
};

use super::image_root::{ImageRoot, ImageView, LayerStack};
use super::rootfs::EntryKind;

/// Pod annotation listing the containers that run on the host's file system (`"*"` for all,
/// or comma-separated names) instead of from their image.
pub use podrun_model::HOST_ROOTFS_ANNOTATION;

/// Largest `/etc/passwd` or `/etc/group` read from an image.
const MAX_ID_FILE: u64 = 1 << 20;

/// Whether container `name` of `pod` runs on the host's file system.
pub fn host_rootfs(pod: &Pod, name: &str) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOST_ROOTFS_ANNOTATION))
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|entry| entry == "*" || entry == name)
        })
}

/// Everything a finished pod leaves here: its image back-off entries, its started images, and
/// the writable layers under `<pod dir>/<container>/rootfs/` (the logs stay).
pub fn pod_finished(pod_dir: &Path, uid: &str) {
    forget_started(uid);
    if let Some(all) = ALL_IMAGES.get() {
        for images in all.lock().unwrap_or_else(|e| e.into_inner()).values() {
            images.forget_pod(uid);
        }
    }
    for entry in std::fs::read_dir(pod_dir).into_iter().flatten().flatten() {
        let rootfs = entry.path().join("rootfs");
        if rootfs.is_dir()
            && let Err(e) = std::fs::remove_dir_all(&rootfs)
        {
            tracing::warn!(path = %rootfs.display(), %e, "cannot remove writable layers");
        }
    }
}

/// The image services opened, per state directory.
static ALL_IMAGES: OnceLock<Mutex<HashMap<PathBuf, Arc<NodeImages>>>> = OnceLock::new();

/// The node's image store and pull decisions, one per state directory.
pub struct NodeImages {
    service: ImageService,
    puller: Mutex<ImagePuller>,
}

/// The image service of the state directory `state_dir` (opened once per process).
pub fn node_images(state_dir: &Path) -> Result<Arc<NodeImages>, String> {
    let mut all = ALL_IMAGES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(i) = all.get(state_dir) {
        return Ok(i.clone());
    }
    let certs = Path::new("/etc/podrun/certs.d");
    let hosts = HostsConfig {
        dir: certs.is_dir().then(|| certs.to_path_buf()),
        ..Default::default()
    };
    let service = ImageService::open(state_dir.join("images"), hosts)
        .map_err(|e| format!("open image store: {e}"))?;
    let images = Arc::new(NodeImages {
        service,
        puller: Mutex::new(ImagePuller::new()),
    });
    all.insert(state_dir.to_path_buf(), images.clone());
    Ok(images)
}

/// The container's `imagePullPolicy`, defaulted by tag as the API server does.
pub fn pull_policy(c: &Container) -> PullPolicy {
    match c.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        _ => {
            let image = c.image.as_deref().unwrap_or_default();
            let name = image.split('@').next().unwrap_or_default();
            let last = name.rsplit('/').next().unwrap_or_default();
            let tag = last.split_once(':').map(|(_, t)| t);
            if image.contains('@') || tag.is_some_and(|t| t != "latest") {
                PullPolicy::IfNotPresent
            } else {
                PullPolicy::Always
            }
        }
    }
}

/// What [`NodeImages::ensure`] did: the image, or the waiting state; and the Events to record.
#[derive(Debug)]
pub struct Ensured {
    /// The image, or why the container waits.
    pub image: Result<EnsuredImage, ImageFailure>,
    /// Events, in order.
    pub events: Vec<ImageEvent>,
}

/// What [`NodeImages::begin`] decided before any network traffic.
pub enum Begin {
    /// Settled without a pull: the image was present, is in back-off, or cannot be pulled.
    Done(Box<Ensured>),
    /// A pull must run: record `events` (`Pulling`) now, then await `pull`.
    Pull {
        /// The `Pulling` Event.
        events: Vec<ImageEvent>,
        /// The pull; dropping it cancels the pull.
        pull: Box<PendingPull>,
    },
}

/// A pull [`NodeImages::begin`] decided on, run by [`PendingPull::run`].
pub struct PendingPull {
    images: Arc<NodeImages>,
    key: String,
    spec: String,
    request: PullRequest,
}

impl PendingPull {
    /// Pulls, then steps the back-off or not: the image or the waiting state, with the
    /// `Pulled` or `Failed` Events. Dropping the future cancels the pull and leaves no
    /// download behind.
    pub async fn run(self) -> Ensured {
        let result = self.images.service.pull_request(self.request).await;
        self.images.settle(&self.key, &self.spec, result)
    }
}

impl NodeImages {
    /// The kubelet's `EnsureImageExists` for container `c` of `pod`, up to the network:
    /// nothing while the image is in back-off, else the local lookup under the pull policy,
    /// and the pull to make if the image must be fetched.
    pub fn begin(self: &Arc<Self>, pod: &Pod, c: &Container, keyring: &Keyring) -> Begin {
        let spec = c.image.clone().unwrap_or_default();
        let key = back_off_key(pod.metadata.uid.as_deref().unwrap_or_default(), &spec);
        let step = self
            .puller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .handle_start(&key, &spec, Instant::now());
        if let StartStep::BackOff { failure, events } = step {
            return Begin::Done(Box::new(Ensured {
                image: Err(failure),
                events,
            }));
        }
        match self.service.lookup(&spec, pull_policy(c), keyring) {
            Ok(Lookup::Pull(request)) => Begin::Pull {
                events: vec![ImagePuller::pulling(&spec)],
                pull: Box::new(PendingPull {
                    images: self.clone(),
                    key,
                    spec,
                    request,
                }),
            },
            Ok(Lookup::Present(image)) => {
                Begin::Done(Box::new(self.settle(&key, &spec, Ok(*image))))
            }
            Err(e) => Begin::Done(Box::new(self.settle(&key, &spec, Err(e)))),
        }
    }

    /// [`Self::begin`] and the pull, awaited in place.
    pub async fn ensure(self: &Arc<Self>, pod: &Pod, c: &Container, keyring: &Keyring) -> Ensured {
        match self.begin(pod, c, keyring) {
            Begin::Done(done) => *done,
            Begin::Pull { mut events, pull } => {
                let mut done = pull.run().await;
                events.append(&mut done.events);
                done.events = events;
                done
            }
        }
    }

    /// The outcome of an `ensure_image` result: Events, waiting state, back-off.
    fn settle(&self, key: &str, spec: &str, result: Result<EnsuredImage, EnsureError>) -> Ensured {
        let size = result.as_ref().map(|i| i.record.size).unwrap_or(0);
        let outcome = self
            .puller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .handle_result(key, spec, result.as_ref(), size, Instant::now());
        Ensured {
            image: match (result, outcome.failure) {
                (Ok(i), None) => Ok(i),
                (_, Some(f)) => Err(f),
                (Err(e), None) => Err(ImageFailure {
                    reason: e.reason(),
                    message: e.to_string(),
                }),
            },
            events: outcome.events,
        }
    }

    /// Forgets the back-off entries of a deleted pod.
    pub fn forget_pod(&self, uid: &str) {
        self.puller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget_pod(uid);
    }
}

/// Container name → (`image`, `imageID`).
type StartedImages = HashMap<String, (String, String)>;

/// `image` and `imageID` of each started container, per pod UID (containerd's
/// `ContainerStatus`: the image's name, and `<repository>@<digest pulled>`).
fn started_images() -> &'static Mutex<HashMap<String, StartedImages>> {
    static STARTED: OnceLock<Mutex<HashMap<String, StartedImages>>> = OnceLock::new();
    STARTED.get_or_init(Default::default)
}

/// Remembers that container `name` of pod `uid` was created from `image`.
pub fn record_started(uid: &str, name: &str, image: &EnsuredImage) {
    started_images()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(uid.to_owned())
        .or_default()
        .insert(
            name.to_owned(),
            (image.record.name.clone(), image.image_ref()),
        );
}

/// Sets `image` and `imageID` of the statuses of containers started from an image.
pub fn apply_image_ids(uid: &str, status: &mut k8s_openapi::api::core::v1::PodStatus) {
    let started = started_images().lock().unwrap_or_else(|e| e.into_inner());
    let Some(pod) = started.get(uid) else {
        return;
    };
    for s in [
        &mut status.init_container_statuses,
        &mut status.container_statuses,
    ]
    .into_iter()
    .flatten()
    .flatten()
    {
        if let Some((image, id)) = pod.get(&s.name) {
            s.image = image.clone();
            s.image_id = id.clone();
        }
    }
}

/// Forgets the images of pod `uid` (it is gone).
pub fn forget_started(uid: &str) {
    started_images()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(uid);
}

/// The pod's `imagePullSecrets` as a keyring, through `secret(name)` (the Secret's data, `None`
/// when it does not exist); and the names of the Secrets that do not exist (the kubelet's
/// `FailedToRetrieveImagePullSecret`).
pub fn keyring(
    pod: &Pod,
    secret: &dyn Fn(&str) -> Option<HashMap<String, String>>,
) -> (Keyring, Vec<String>) {
    let mut k = Keyring::default();
    let mut missing = Vec::new();
    for s in pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .into_iter()
        .flatten()
    {
        let Some(data) = secret(&s.name) else {
            missing.push(s.name.clone());
            continue;
        };
        for key in [".dockerconfigjson", ".dockercfg"] {
            if let Some(v) = data.get(key)
                && let Err(e) = k.add_docker_config(v.as_bytes())
            {
                tracing::warn!(secret = %s.name, %e, "unusable image pull secret");
            }
        }
    }
    (k, missing)
}

/// A regular file of the image at container path `path` (no symlink followed), at most
/// [`MAX_ID_FILE`] bytes; empty when absent.
fn read_image_file(layers: &[PathBuf], path: &str) -> String {
    let view = LayerStack::new(layers);
    if view.kind(Path::new(path)) != Some(EntryKind::File) {
        return String::new();
    }
    let rel = path.trim_start_matches('/');
    for layer in layers.iter().rev() {
        // Resolved beneath the layer and through no symlink at all, so that no layer's
        // link can lead the read onto the host, whatever the view above decided.
        use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
        let Ok(root) = rustix::fs::open(
            layer,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let Ok(fd) = openat2(
            &root,
            rel,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) else {
            continue;
        };
        let mut out = String::new();
        let _ = std::fs::File::from(fd)
            .take(MAX_ID_FILE)
            .read_to_string(&mut out);
        return out;
    }
    String::new()
}

/// The process of a container run from `image`.
pub struct ImageProcess {
    /// argv.
    pub argv: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub working_dir: PathBuf,
    /// The user.
    pub user: ProcessUser,
}

/// The user settings of the effective securityContext.
#[derive(Debug, Clone, Default)]
pub struct RunAs {
    /// `runAsUser`.
    pub user: Option<u32>,
    /// `runAsGroup`.
    pub group: Option<u32>,
    /// The pod's `supplementalGroups` and `fsGroup`.
    pub extra_groups: Vec<u32>,
}

/// argv, env, working directory and user of container `c` from `image`: `command` and `args`
/// are the container's after `$(VAR)` expansion, `env` its own variables, and `run_as` its
/// effective securityContext. Errors are `CreateContainerError` messages.
pub fn image_process(
    image: &EnsuredImage,
    c: &Container,
    command: &[String],
    args: &[String],
    hostname: &str,
    env: &[(String, String)],
    run_as: &RunAs,
) -> Result<ImageProcess, String> {
    let cfg = image.config.config().clone().unwrap_or_default();
    let argv = process::argv(
        cfg.entrypoint().as_deref().unwrap_or_default(),
        cfg.cmd().as_deref().unwrap_or_default(),
        command,
        args,
    )
    .map_err(|e| {
        format!(
            "failed to generate container {:?} spec: failed to generate spec: {e}",
            c.name
        )
    })?;
    let env = process::env(hostname, cfg.env().as_deref().unwrap_or_default(), env);
    let working_dir = PathBuf::from(process::working_dir(
        c.working_dir.as_deref(),
        cfg.working_dir().as_deref(),
    ));
    let passwd = read_image_file(&image.layers, "/etc/passwd");
    let group = read_image_file(&image.layers, "/etc/group");
    let mut user = process::resolve_user(
        &process::image_user(cfg.user().as_deref()),
        run_as.user,
        run_as.group,
        &passwd,
        &group,
    )
    .map_err(|e| {
        format!(
            "failed to generate container {:?} spec: failed to generate spec: {e}",
            c.name
        )
    })?;
    for g in &run_as.extra_groups {
        if !user.groups.contains(g) {
            user.groups.push(*g);
        }
    }
    Ok(ImageProcess {
        argv,
        env,
        working_dir,
        user,
    })
}

/// The root of instance `restart_count` of container `name`: the image's layers and a new
/// writable layer under `<pod dir>/<name>/<restart>/`; the previous instance's is deleted.
pub fn instance_root(
    pod_dir: &Path,
    name: &str,
    restart_count: i32,
    image: &EnsuredImage,
) -> ImageRoot {
    let dir = pod_dir.join(name).join("rootfs");
    if restart_count > 0 {
        let _ = std::fs::remove_dir_all(dir.join((restart_count - 1).to_string()));
    }
    let instance = dir.join(restart_count.to_string());
    let used = ImageUse {
        name: image.record.name.clone(),
        image_id: image.record.image_id.to_string(),
        layers: image
            .layers
            .iter()
            .filter_map(|l| Some(l.file_name()?.to_str()?.to_owned()))
            .collect(),
    };
    if let Ok(json) = serde_json::to_vec(&used)
        && let Err(e) = std::fs::write(pod_dir.join(name).join(IMAGE_USE_FILE), json)
    {
        tracing::warn!(container = name, %e, "cannot record the container's image");
    }
    ImageRoot {
        layers: image.layers.clone(),
        upper: instance.join("upper"),
        work: instance.join("work"),
    }
}

/// `<pod dir>/<container>/image.json`: the image a container of the pod was created from.
const IMAGE_USE_FILE: &str = "image.json";

/// The image a container was created from, as recorded in its pod's directory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageUse {
    /// The image's name in the store.
    pub name: String,
    /// The image ID (`sha256:<config>`).
    pub image_id: String,
    /// The chain IDs (hex) of its unpacked layers, lowest first.
    pub layers: Vec<String>,
}

/// A container of a live pod and the image it was created from.
#[derive(Debug, Clone)]
pub struct ContainerImage {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// Its image.
    pub image: ImageUse,
}

/// The images of the containers of every pod a live podrun instance of `state_dir` runs
/// (what `podrun rmi` must keep).
pub fn images_in_use(state_dir: &Path) -> Vec<ContainerImage> {
    let layout = crate::layout::Layout::new(state_dir);
    let mut out = Vec::new();
    for pod in std::fs::read_dir(layout.pods_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = pod.path();
        let live = crate::instance::pod_owner(&dir)
            .is_some_and(|pid| crate::instance::instance_alive(&layout, pid));
        if !live {
            continue;
        }
        // `<namespace>_<name>_<uid>`: none of the three can contain `_`.
        let dir_name = pod.file_name().to_string_lossy().into_owned();
        let mut parts = dir_name.splitn(3, '_');
        let (Some(namespace), Some(name)) = (parts.next(), parts.next()) else {
            continue;
        };
        for c in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(data) = std::fs::read(c.path().join(IMAGE_USE_FILE)) else {
                continue;
            };
            if let Ok(image) = serde_json::from_slice::<ImageUse>(&data) {
                out.push(ContainerImage {
                    namespace: namespace.to_owned(),
                    pod: name.to_owned(),
                    container: c.file_name().to_string_lossy().into_owned(),
                    image,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotation: Option<&str>) -> Pod {
        let mut p = Pod::default();
        if let Some(a) = annotation {
            p.metadata.annotations =
                Some([(HOST_ROOTFS_ANNOTATION.to_string(), a.to_string())].into());
        }
        p
    }

    #[test]
    fn the_annotation_names_host_filesystem_containers_and_nothing_else() {
        assert!(!host_rootfs(&pod(None), "app"));
        assert!(host_rootfs(&pod(Some("*")), "app"));
        assert!(host_rootfs(&pod(Some("sidecar, app")), "app"));
        assert!(!host_rootfs(&pod(Some("sidecar")), "app"));
        assert!(!host_rootfs(&pod(Some("")), "app"));
    }

    #[test]
    fn image_files_are_read_through_no_layer_symlink() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("passwd"), "host:x:0:0::/:/bin/sh\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let layer = |name: &str| {
            let l = dir.path().join(name);
            std::fs::create_dir_all(&l).unwrap();
            l
        };
        let (low, mid, top) = (layer("low"), layer("mid"), layer("top"));
        std::fs::create_dir(low.join("etc")).unwrap();
        std::fs::write(low.join("etc/passwd"), "app:x:1000:1000::/:/bin/sh\n").unwrap();
        // A link in a middle layer to a host directory, under a real directory above it.
        std::os::unix::fs::symlink(host.path(), mid.join("etc")).unwrap();
        std::fs::create_dir(top.join("etc")).unwrap();
        let text = read_image_file(&[low.clone(), mid, top], "/etc/passwd");
        assert!(!text.contains("host:"), "{text}");
        // Without the link the lowest layer's file is read.
        assert!(read_image_file(&[low], "/etc/passwd").starts_with("app:"));
    }

    #[test]
    fn pull_policy_defaults_by_tag() {
        let c = |image: &str, policy: Option<&str>| Container {
            image: Some(image.into()),
            image_pull_policy: policy.map(Into::into),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("busybox", None)), PullPolicy::Always);
        assert_eq!(pull_policy(&c("busybox:latest", None)), PullPolicy::Always);
        assert_eq!(
            pull_policy(&c("127.0.0.1:5000/busybox", None)),
            PullPolicy::Always
        );
        assert_eq!(
            pull_policy(&c("127.0.0.1:5000/busybox:1", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            pull_policy(&c("busybox@sha256:abc", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            pull_policy(&c("busybox:1", Some("Never"))),
            PullPolicy::Never
        );
    }

    #[test]
    fn pull_secrets_become_a_keyring_and_missing_ones_are_named() {
        use k8s_openapi::api::core::v1::{LocalObjectReference, PodSpec};
        let mut p = pod(None);
        p.spec = Some(PodSpec {
            image_pull_secrets: Some(
                ["regcred", "gone", "opaque"]
                    .map(|n| LocalObjectReference { name: n.into() })
                    .to_vec(),
            ),
            ..Default::default()
        });
        let secret = |name: &str| -> Option<HashMap<String, String>> {
            match name {
                "regcred" => Some(HashMap::from([(
                    ".dockerconfigjson".to_owned(),
                    r#"{"auths":{"127.0.0.1:5000":{"username":"u","password":"p"}}}"#.to_owned(),
                )])),
                "opaque" => Some(HashMap::new()),
                _ => None,
            }
        };
        let (keyring, missing) = keyring(&p, &secret);
        assert_eq!(missing, ["gone"]);
        assert_eq!(keyring.lookup("127.0.0.1:5000", "busybox").len(), 1);
        assert!(keyring.lookup("127.0.0.1:5001", "busybox").is_empty());
    }
}
