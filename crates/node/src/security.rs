//! A container's `securityContext`, decided as data.
//!
//! [`plan`] merges the pod-level and container-level `securityContext` the way the kubelet
//! and containerd's CRI plugin do and returns a [`SecurityPlan`]: the credentials the
//! process takes (uid, gid, supplementary groups), its five capability sets, whether
//! `no_new_privs` is set, and whether the root file system is read-only. It is pure — no
//! system call, no clock — so every rule is covered by table tests; the container's child
//! process only carries the plan out (see `runtime::child`).
//!
//! `runAsNonRoot` is checked against the image's `User` as the kubelet checks it
//! ([`plan_with_image_user`]); a container on the host file system has no image metadata and
//! counts as an image without a `USER` line (root).

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};
pub use podrun_images::process::ImageUser;

/// The highest capability number this plan knows (`CAP_CHECKPOINT_RESTORE`). Bits above the
/// running kernel's `cap_last_cap` are ignored when the plan is applied.
pub const CAP_LAST_CAP: u32 = 40;

/// Capability names (without the `CAP_` prefix) by number.
const CAP_NAMES: [&str; (CAP_LAST_CAP + 1) as usize] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// containerd's default capability set for a non-privileged container.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// A set of capabilities as a bit mask (bit `n` = capability number `n`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CapSet(pub u64);

/// The user and groups the container process runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Real, effective and saved user id.
    pub uid: u32,
    /// Real, effective and saved group id.
    pub gid: u32,
    /// Supplementary groups (`setgroups`), without duplicates.
    pub groups: Vec<u32>,
}

/// The five capability sets of the process, applied as runc applies an OCI spec's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    /// Bounding set: every capability outside it is dropped for good.
    pub bounding: CapSet,
    /// Permitted set.
    pub permitted: CapSet,
    /// Effective set.
    pub effective: CapSet,
    /// Inheritable set.
    pub inheritable: CapSet,
    /// Ambient set.
    pub ambient: CapSet,
}

/// What the container's process must look like when it execs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityPlan {
    /// uid, gid and supplementary groups.
    pub credentials: Credentials,
    /// Capability sets.
    pub capabilities: CapabilitySets,
    /// Set `PR_SET_NO_NEW_PRIVS` (`allowPrivilegeEscalation: false`).
    pub no_new_privs: bool,
    /// Make the container's root view read-only (`readOnlyRootFilesystem`).
    pub read_only_rootfs: bool,
    /// `privileged: true`.
    pub privileged: bool,
    /// `fsGroup` of the pod: emptyDir volumes are handed to this group.
    pub fs_group: Option<u32>,
}

// === impl SecurityPlan ===

impl SecurityPlan {
    /// Fits a privileged plan to this host: "every capability" is every capability podrun
    /// itself holds (containerd uses its own current set the same way), since a process
    /// can never gain one its parent lacks. Other plans are returned unchanged, so an
    /// explicitly added capability that podrun lacks fails the start instead of being
    /// dropped silently.
    pub fn for_host(mut self) -> Self {
        if self.privileged
            && let Some(own) = own_permitted()
        {
            let c = &mut self.capabilities;
            c.bounding = CapSet(c.bounding.0 & own.0);
            c.permitted = CapSet(c.permitted.0 & own.0);
            c.effective = CapSet(c.effective.0 & own.0);
        }
        self
    }
}

/// This process's permitted capabilities (`CapPrm` of `/proc/self/status`).
fn own_permitted() -> Option<CapSet> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapPrm:"))?;
    u64::from_str_radix(hex.trim(), 16).ok().map(CapSet)
}

// === impl CapSet ===

impl CapSet {
    /// The empty set.
    pub const EMPTY: CapSet = CapSet(0);

    /// Every capability this plan knows.
    pub fn all() -> CapSet {
        CapSet((1u64 << (CAP_LAST_CAP + 1)) - 1)
    }

    /// containerd's default set.
    pub fn runtime_default() -> CapSet {
        let mut s = CapSet::EMPTY;
        for name in DEFAULT_CAPABILITIES {
            // Invariant: every default name is in CAP_NAMES (checked by a test).
            if let Some(n) = cap_number(name) {
                s.insert(n);
            }
        }
        s
    }

    /// Adds capability number `n`.
    pub fn insert(&mut self, n: u32) {
        self.0 |= 1u64 << n;
    }

    /// Removes capability number `n`.
    pub fn remove(&mut self, n: u32) {
        self.0 &= !(1u64 << n);
    }

    /// Whether capability number `n` is in the set.
    pub fn contains(self, n: u32) -> bool {
        n < 64 && self.0 & (1u64 << n) != 0
    }

    /// The names of the capabilities in the set (`CAP_` prefixed), lowest number first.
    pub fn names(self) -> Vec<String> {
        (0..=CAP_LAST_CAP)
            .filter(|&n| self.contains(n))
            .map(|n| format!("CAP_{}", CAP_NAMES[n as usize]))
            .collect()
    }
}

/// The number of a capability named `NET_ADMIN` or `CAP_NET_ADMIN` (any case).
pub fn cap_number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAP_NAMES.iter().position(|n| *n == bare).map(|n| n as u32)
}

/// `format.Pod` of the kubelet: `name_namespace(uid)`.
fn pod_label(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// [`plan_with_image_user`] for a container without image metadata (host file system): its
/// user counts as root.
pub fn plan(pod: &Pod, container: &Container) -> Result<SecurityPlan, String> {
    plan_with_image_user(pod, container, &ImageUser::None)
}

/// The image's `User` as the kubelet sees it through the runtime's image status (containerd
/// reports the part before `:`, as a uid when numeric, else as a name).
pub fn image_user_of(image: Option<&podrun_images::EnsuredImage>) -> ImageUser {
    let user = image
        .and_then(|i| i.config.config().as_ref())
        .and_then(|c| c.user().clone());
    podrun_images::process::image_user(user.as_deref())
}

/// The kubelet's `verifyRunAsNonRoot`: an explicit `runAsUser` is checked as given; without
/// one the image's user decides: a name cannot be verified, no user or uid 0 is root, and a
/// uid above 2147483647 is not a valid user ID.
fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    run_as_user: Option<i64>,
    image_user: &ImageUser,
) -> Result<(), String> {
    let label = pod_label(pod);
    let name = &container.name;
    if let Some(uid) = run_as_user {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {label:?}, container: {name})"
            ));
        }
        return Ok(());
    }
    match image_user {
        ImageUser::Name(user) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify \
             user is non-root (pod: {label:?}, container: {name})"
        )),
        ImageUser::None | ImageUser::Uid(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {label:?}, container: {name})"
        )),
        ImageUser::Uid(uid) if i64::from(*uid) > i64::from(i32::MAX) => Err(format!(
            "container has runAsNonRoot and image has an invalid user id ({uid}). (Must be \
             1-({max})): must be between 0 and {max}, inclusive (pod: {label:?}, container: {name})",
            max = i32::MAX
        )),
        ImageUser::Uid(_) => Ok(()),
    }
}

/// Merges the pod's and the container's `securityContext` into what the process must be;
/// `image_user` is the image's `User` (for `runAsNonRoot`).
///
/// Errors are `CreateContainerConfigError` messages worded as the kubelet words them.
pub fn plan_with_image_user(
    pod: &Pod,
    container: &Container,
    image_user: &ImageUser,
) -> Result<SecurityPlan, String> {
    let default_psc = PodSecurityContext::default();
    let default_sc = SecurityContext::default();
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .unwrap_or(&default_psc);
    let sc = container.security_context.as_ref().unwrap_or(&default_sc);

    let run_as_user = sc.run_as_user.or(psc.run_as_user);
    let run_as_group = sc.run_as_group.or(psc.run_as_group);
    let run_as_non_root = sc.run_as_non_root.or(psc.run_as_non_root);
    if run_as_non_root == Some(true) {
        verify_run_as_non_root(pod, container, run_as_user, image_user)?;
    }
    let uid = id_of(run_as_user, "runAsUser")?;
    let gid = id_of(run_as_group, "runAsGroup")?;
    let fs_group = psc
        .fs_group
        .map(|g| id_of(Some(g), "fsGroup"))
        .transpose()?;

    // containerd: the image user's groups (none without metadata), then fsGroup, then
    // supplementalGroups.
    let mut groups = Vec::new();
    for g in fs_group.into_iter().map(Ok).chain(
        psc.supplemental_groups
            .iter()
            .flatten()
            .map(|&g| id_of(Some(g), "supplementalGroups")),
    ) {
        let g = g?;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }

    let privileged = sc.privileged.unwrap_or(false);
    let caps = if privileged {
        CapSet::all()
    } else {
        let mut caps = CapSet::runtime_default();
        let add = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.clone())
            .unwrap_or_default();
        let drop = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.clone())
            .unwrap_or_default();
        let is_all = |s: &String| s.eq_ignore_ascii_case("ALL");
        // containerd's order: "ALL" in add, then "ALL" in drop, then the single names, so
        // `drop: [ALL], add: [NET_ADMIN]` leaves exactly NET_ADMIN.
        if add.iter().any(is_all) {
            caps = CapSet::all();
        }
        if drop.iter().any(is_all) {
            caps = CapSet::EMPTY;
        }
        for name in add.iter().filter(|s| !is_all(s)) {
            caps.insert(cap_number(name).ok_or_else(|| unknown_cap(name))?);
        }
        for name in drop.iter().filter(|s| !is_all(s)) {
            caps.remove(cap_number(name).ok_or_else(|| unknown_cap(name))?);
        }
        caps
    };

    // kubelet: no_new_privs only when allowPrivilegeEscalation is explicitly false, and
    // never for a privileged container (the API server rejects that combination).
    let no_new_privs = !privileged && sc.allow_privilege_escalation == Some(false);

    Ok(SecurityPlan {
        credentials: Credentials { uid, gid, groups },
        // containerd gives bounding, permitted and effective; inheritable stays empty
        // (CVE-2022-24769) and ambient is never set by the CRI plugin, which is why a
        // non-root container keeps its capabilities only in its bounding set.
        capabilities: CapabilitySets {
            bounding: caps,
            permitted: caps,
            effective: caps,
            inheritable: CapSet::EMPTY,
            ambient: CapSet::EMPTY,
        },
        no_new_privs,
        read_only_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        privileged,
        fs_group,
    })
}

/// A container's security settings and cgroup, made ready for its launch.
#[derive(Debug, Default)]
pub struct PreparedContainer {
    /// The merged securityContext (`None` without root: podrun's own credentials stay).
    pub plan: Option<SecurityPlan>,
    /// The container's cgroup (`None` when cgroups are not used).
    pub cgroup: Option<crate::cgroup::ContainerCgroup>,
}

/// Fields of a securityContext that only root can honour.
fn root_only_fields(plan: &SecurityPlan, c: &Container) -> Vec<&'static str> {
    let sc = c.security_context.as_ref();
    let mut out = Vec::new();
    if plan.credentials != Credentials::default() {
        out.push("runAsUser/runAsGroup/supplementalGroups/fsGroup");
    }
    if plan.privileged {
        out.push("privileged");
    }
    if sc.is_some_and(|s| s.capabilities.is_some()) {
        out.push("capabilities");
    }
    if plan.read_only_rootfs {
        out.push("readOnlyRootFilesystem");
    }
    out
}

/// Decides the container's securityContext and creates its cgroup (in the pod's
/// `podrun/<uid>`). Without root, a container that needs a setting only root can apply is
/// refused rather than run without it. Errors are `CreateContainerConfigError` messages.
pub fn prepare(
    pod: &Pod,
    c: &Container,
    image_user: &ImageUser,
) -> Result<PreparedContainer, String> {
    let plan = plan_with_image_user(pod, c, image_user)?.for_host();
    let resources = crate::cgroup::ResourcePlan::from_container(c).map_err(|e| e.to_string())?;
    if !crate::runtime::isolation_available() {
        let mut needs = root_only_fields(&plan, c);
        if resources.is_constrained() {
            needs.push("resources");
        }
        if !needs.is_empty() {
            return Err(format!(
                "container {:?} sets {} which needs root: refusing to run it without",
                c.name,
                needs.join(", ")
            ));
        }
        return Ok(PreparedContainer::default());
    }
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let pod_resources = crate::cgroup::ResourcePlan::for_pod(pod).map_err(|e| e.to_string())?;
    let cgroup = match crate::cgroup::host()
        .and_then(|h| crate::cgroup::PodCgroup::create(h, uid))
        .and_then(|pc| {
            pc.apply(&pod_resources)?;
            pc.container(&c.name, &resources)
        }) {
        Ok(cg) => Some(cg),
        Err(e) if resources.is_constrained() => return Err(e.to_string()),
        Err(e) => {
            // Nothing to enforce: the container runs, only unaccounted.
            tracing::warn!(%e, container = %c.name, "no cgroup for the container");
            None
        }
    };
    Ok(PreparedContainer {
        plan: Some(plan),
        cgroup,
    })
}

// === impl PreparedContainer ===

impl PreparedContainer {
    /// Puts the settings into `launch`. A non-root container gets a termination-message
    /// file it can write (0666, as the kubelet makes it).
    pub fn apply(&self, launch: &mut crate::runtime::ContainerLaunch) {
        if let Some(plan) = &self.plan {
            launch.credentials = Some(plan.credentials.clone());
            launch.capabilities = Some(plan.capabilities);
            launch.no_new_privs = plan.no_new_privs;
            launch.read_only_rootfs = plan.read_only_rootfs;
            launch.privileged = plan.privileged;
            if plan.credentials.uid != 0
                && let Some((host, _)) = &launch.termination_message
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(host);
                let _ = std::fs::set_permissions(host, std::fs::Permissions::from_mode(0o666));
            }
        }
        if let Some(cg) = &self.cgroup {
            launch.cgroup = cg.dirs().to_vec();
        }
    }
}

fn unknown_cap(name: &str) -> String {
    format!("unknown capability {name:?} to add or drop")
}

fn id_of(v: Option<i64>, field: &str) -> Result<u32, String> {
    match v {
        None => Ok(0),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|&n| n != u32::MAX)
            .ok_or_else(|| format!("invalid {field} {n}: must be between 0 and 4294967294")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(pod_sc: serde_json::Value, c_sc: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "spec": {
                "securityContext": pod_sc,
                "containers": [{"name": "c", "securityContext": c_sc}],
            },
        }))
        .expect("valid pod");
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    fn plan_of(pod_sc: serde_json::Value, c_sc: serde_json::Value) -> Result<SecurityPlan, String> {
        let (p, c) = pod(pod_sc, c_sc);
        plan(&p, &c)
    }

    fn names(s: CapSet) -> Vec<String> {
        s.names()
    }

    #[test]
    fn default_names_are_known_and_fourteen() {
        for n in DEFAULT_CAPABILITIES {
            assert!(cap_number(n).is_some(), "{n}");
        }
        assert_eq!(CapSet::runtime_default().0.count_ones(), 14);
        assert_eq!(cap_number("cap_net_admin"), Some(12));
        assert_eq!(cap_number("CHECKPOINT_RESTORE"), Some(CAP_LAST_CAP));
        assert_eq!(cap_number("NOPE"), None);
    }

    #[test]
    fn no_security_context_is_root_with_runtime_defaults() {
        let p = plan_of(serde_json::json!(null), serde_json::json!(null)).unwrap();
        assert_eq!(
            p.credentials,
            Credentials {
                uid: 0,
                gid: 0,
                groups: vec![]
            }
        );
        let caps = p.capabilities;
        assert_eq!(caps.bounding, CapSet::runtime_default());
        assert_eq!(caps.permitted, caps.bounding);
        assert_eq!(caps.effective, caps.bounding);
        assert_eq!(caps.inheritable, CapSet::EMPTY);
        assert_eq!(caps.ambient, CapSet::EMPTY);
        assert!(!p.no_new_privs && !p.read_only_rootfs && !p.privileged);
        assert!(caps.bounding.contains(cap_number("KILL").unwrap()));
        assert!(!caps.bounding.contains(cap_number("SYS_ADMIN").unwrap()));
        assert!(!caps.bounding.contains(cap_number("NET_ADMIN").unwrap()));
    }

    #[test]
    fn credentials_table() {
        let cases = [
            // (pod sc, container sc, uid, gid, groups)
            (
                serde_json::json!({"runAsUser": 1000}),
                serde_json::json!(null),
                1000,
                0,
                vec![],
            ),
            (
                serde_json::json!({"runAsUser": 1000, "runAsGroup": 3000}),
                serde_json::json!({"runAsUser": 2000}),
                2000,
                3000,
                vec![],
            ),
            (
                serde_json::json!({"runAsGroup": 3000}),
                serde_json::json!({"runAsGroup": 4000}),
                0,
                4000,
                vec![],
            ),
            (
                serde_json::json!({"fsGroup": 2000, "supplementalGroups": [5, 2000, 6, 5]}),
                serde_json::json!(null),
                0,
                0,
                vec![2000, 5, 6],
            ),
            (
                serde_json::json!({"supplementalGroups": [7]}),
                serde_json::json!({"runAsUser": 1}),
                1,
                0,
                vec![7],
            ),
        ];
        for (i, (psc, csc, uid, gid, groups)) in cases.into_iter().enumerate() {
            let p = plan_of(psc, csc).unwrap();
            assert_eq!(p.credentials, Credentials { uid, gid, groups }, "case {i}");
        }
    }

    #[test]
    fn run_as_non_root_is_checked_against_the_image_user() {
        let (p, c) = pod(
            serde_json::json!({"runAsNonRoot": true}),
            serde_json::json!(null),
        );
        let with = |u: &ImageUser| plan_with_image_user(&p, &c, u);
        assert_eq!(
            with(&ImageUser::Name("app".into())).unwrap_err(),
            r#"container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (pod: "p_ns(u-1)", container: c)"#
        );
        for root in [ImageUser::None, ImageUser::Uid(0)] {
            assert_eq!(
                with(&root).unwrap_err(),
                r#"container has runAsNonRoot and image will run as root (pod: "p_ns(u-1)", container: c)"#
            );
        }
        assert!(with(&ImageUser::Uid(1000)).is_ok());
        assert_eq!(
            with(&ImageUser::Uid(3_000_000_000)).unwrap_err(),
            r#"container has runAsNonRoot and image has an invalid user id (3000000000). (Must be 1-(2147483647)): must be between 0 and 2147483647, inclusive (pod: "p_ns(u-1)", container: c)"#
        );
        // An explicit runAsUser wins over any image user.
        let (p, c) = pod(
            serde_json::json!({"runAsNonRoot": true, "runAsUser": 7}),
            serde_json::json!(null),
        );
        assert!(plan_with_image_user(&p, &c, &ImageUser::Name("root".into())).is_ok());
    }

    #[test]
    fn run_as_non_root_refusals_use_the_kubelet_messages() {
        let err = plan_of(
            serde_json::json!({"runAsNonRoot": true}),
            serde_json::json!(null),
        )
        .unwrap_err();
        assert_eq!(
            err,
            r#"container has runAsNonRoot and image will run as root (pod: "p_ns(u-1)", container: c)"#
        );
        let err = plan_of(
            serde_json::json!(null),
            serde_json::json!({"runAsNonRoot": true, "runAsUser": 0}),
        )
        .unwrap_err();
        assert_eq!(
            err,
            r#"container's runAsUser breaks non-root policy (pod: "p_ns(u-1)", container: c)"#
        );
        // A non-zero uid at either level satisfies it.
        assert!(
            plan_of(
                serde_json::json!({"runAsNonRoot": true, "runAsUser": 1000}),
                serde_json::json!(null)
            )
            .is_ok()
        );
        assert!(
            plan_of(
                serde_json::json!({"runAsNonRoot": true}),
                serde_json::json!({"runAsUser": 5})
            )
            .is_ok()
        );
        // The container can switch the policy off.
        assert!(
            plan_of(
                serde_json::json!({"runAsNonRoot": true}),
                serde_json::json!({"runAsNonRoot": false})
            )
            .is_ok()
        );
    }

    #[test]
    fn capabilities_table() {
        let def = CapSet::runtime_default();
        let with = |base: CapSet, add: &[&str], drop: &[&str]| {
            let mut s = base;
            for a in add {
                s.insert(cap_number(a).unwrap());
            }
            for d in drop {
                s.remove(cap_number(d).unwrap());
            }
            s
        };
        let cases = [
            (
                serde_json::json!({"capabilities": {"add": ["NET_ADMIN"]}}),
                with(def, &["NET_ADMIN"], &[]),
            ),
            (
                serde_json::json!({"capabilities": {"drop": ["NET_RAW", "CAP_CHOWN"]}}),
                with(def, &[], &["NET_RAW", "CHOWN"]),
            ),
            (
                serde_json::json!({"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}}),
                with(CapSet::EMPTY, &["NET_ADMIN", "NET_RAW"], &[]),
            ),
            (
                serde_json::json!({"capabilities": {"add": ["ALL"], "drop": ["SYS_ADMIN"]}}),
                with(CapSet::all(), &[], &["SYS_ADMIN"]),
            ),
            (
                serde_json::json!({"capabilities": {"drop": ["all"]}}),
                CapSet::EMPTY,
            ),
            (
                serde_json::json!({"privileged": true, "capabilities": {"drop": ["ALL"]}}),
                CapSet::all(),
            ),
        ];
        for (i, (sc, want)) in cases.into_iter().enumerate() {
            let p = plan_of(serde_json::json!(null), sc).unwrap();
            assert_eq!(names(p.capabilities.bounding), names(want), "case {i}");
            assert_eq!(p.capabilities.effective, want, "case {i}");
            assert_eq!(p.capabilities.permitted, want, "case {i}");
        }
        let err = plan_of(
            serde_json::json!(null),
            serde_json::json!({"capabilities": {"add": ["FLY"]}}),
        )
        .unwrap_err();
        assert!(err.contains("unknown capability \"FLY\""), "{err}");
    }

    #[test]
    fn escalation_read_only_and_privileged() {
        let p = plan_of(
            serde_json::json!(null),
            serde_json::json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true}),
        )
        .unwrap();
        assert!(p.no_new_privs);
        assert!(p.read_only_rootfs);
        let p = plan_of(
            serde_json::json!(null),
            serde_json::json!({"allowPrivilegeEscalation": true}),
        )
        .unwrap();
        assert!(!p.no_new_privs);
        let p = plan_of(
            serde_json::json!(null),
            serde_json::json!({"privileged": true}),
        )
        .unwrap();
        assert!(p.privileged);
        assert_eq!(p.capabilities.bounding, CapSet::all());
        assert!(!p.no_new_privs);
    }

    #[test]
    fn out_of_range_ids_are_errors() {
        let err = plan_of(
            serde_json::json!({"runAsUser": -1}),
            serde_json::json!(null),
        )
        .unwrap_err();
        assert!(err.contains("runAsUser"), "{err}");
        let err = plan_of(
            serde_json::json!({"fsGroup": 4294967296i64}),
            serde_json::json!(null),
        )
        .unwrap_err();
        assert!(err.contains("fsGroup"), "{err}");
    }
}
