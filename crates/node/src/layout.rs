//! Where things live in the state directory, laid out like the kubelet's.
//!
//! ```text
//! <state>/store.db                                    the object store (podrun-store-sqlite)
//! <state>/pods/<ns>_<name>_<uid>/<container>/<n>.log   CRI-format log of restart n
//! <state>/pods/<ns>_<name>_<uid>/<container>/<n>.termination-log
//! <state>/pods/<ns>_<name>_<uid>/<container>/<n>.pid   "<pid> <starttime>" of a live instance
//! <state>/pods/<ns>_<name>_<uid>/volumes/<name>/      emptyDir volumes
//! <state>/pods/<ns>_<name>_<uid>/owner                 pid of the podrun that runs the pod
//! <state>/instances/<pid>.lock                         held (flock) while that podrun lives
//! <state>/instances/<pid>.sock                         its control socket
//! ```

use std::path::{Path, PathBuf};

/// Paths inside one state directory.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout of `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            root: state_dir.into(),
        }
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<state>/pods/<ns>_<name>_<uid>`.
    pub fn pod_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.root
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"))
    }

    /// All pod directories (`<state>/pods`).
    pub fn pods_dir(&self) -> PathBuf {
        self.root.join("pods")
    }

    /// The CRI log file of one container instance.
    pub fn log_file(&self, pod_dir: &Path, container: &str, restart_count: i32) -> PathBuf {
        pod_dir.join(container).join(format!("{restart_count}.log"))
    }

    /// The host side of one instance's termination-message file.
    pub fn termination_log(&self, pod_dir: &Path, container: &str, restart_count: i32) -> PathBuf {
        pod_dir
            .join(container)
            .join(format!("{restart_count}.termination-log"))
    }

    /// The record of a live instance's pid.
    pub fn pid_file(&self, pod_dir: &Path, container: &str, restart_count: i32) -> PathBuf {
        pod_dir.join(container).join(format!("{restart_count}.pid"))
    }

    /// An emptyDir volume's directory.
    pub fn empty_dir(&self, pod_dir: &Path, volume: &str) -> PathBuf {
        pod_dir.join("volumes").join(volume)
    }

    /// `<state>/instances`.
    pub fn instances_dir(&self) -> PathBuf {
        self.root.join("instances")
    }

    /// The lock a live podrun instance holds.
    pub fn instance_lock(&self, pid: u32) -> PathBuf {
        self.instances_dir().join(format!("{pid}.lock"))
    }

    /// The control socket of a podrun instance.
    pub fn instance_socket(&self, pid: u32) -> PathBuf {
        self.instances_dir().join(format!("{pid}.sock"))
    }
}
