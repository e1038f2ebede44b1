//! One running podrun process on a state directory: its liveness lock, its control
//! socket (how `podrun delete` in another terminal reaches it), and recovery of what a
//! killed instance left behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::objects::{Resource, Store};
use k8s_openapi::api::core::v1::Pod;
use podrun_model::PodPhase;
use podrun_process::process_start_time;
use serde::{Deserialize, Serialize};

use crate::layout::Layout;

/// A request sent over an instance's control socket, one JSON object per line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ControlRequest {
    /// Delete a pod gracefully.
    DeletePod {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Grace period override, seconds.
        grace_period_seconds: Option<i64>,
    },
}

/// The liveness lock of this process on a state directory; released when dropped or
/// when the process dies, however it dies.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    pid: u32,
}

impl InstanceLock {
    /// Takes the lock for this process.
    pub fn acquire(layout: &Layout) -> io::Result<Self> {
        fs::create_dir_all(layout.instances_dir())?;
        let pid = std::process::id();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(layout.instance_lock(pid))?;
        if !try_flock(&file)? {
            return Err(io::Error::other("instance lock already held"));
        }
        Ok(Self { _file: file, pid })
    }

    /// This instance's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

fn try_flock(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Whether the podrun instance `pid` is alive (holds its lock).
pub fn instance_alive(layout: &Layout, pid: u32) -> bool {
    match File::open(layout.instance_lock(pid)) {
        // Read-only descriptors can take flock locks too.
        Ok(file) => matches!(try_flock(&file), Ok(false)),
        Err(_) => false,
    }
}

/// The pid of the podrun instance that runs the pod in `pod_dir`, if recorded.
pub fn pod_owner(pod_dir: &Path) -> Option<u32> {
    fs::read_to_string(pod_dir.join("owner"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Sends `request` to the live instance `pid` and waits for its one-line answer.
pub fn send_request(layout: &Layout, pid: u32, request: &ControlRequest) -> io::Result<String> {
    let mut stream = UnixStream::connect(layout.instance_socket(pid))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = serde_json::to_string(request).map_err(io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    Ok(answer.trim().to_string())
}

/// What recovery found and did.
#[derive(Debug, Default)]
pub struct Recovery {
    /// One line per pod found, for the user.
    pub reports: Vec<String>,
}

/// Cleans up after podrun instances that died without cleaning up (e.g. SIGKILL):
/// kills any container process they left (checked by start time, so a reused pid is
/// never hit), and marks their unfinished pods `Failed`.
pub fn recover(layout: &Layout, store: &Store) -> io::Result<Recovery> {
    let mut recovery = Recovery::default();
    let dead: Vec<u32> = match fs::read_dir(layout.instances_dir()) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".lock")?
                    .parse::<u32>()
                    .ok()
            })
            .filter(|pid| *pid != std::process::id() && !instance_alive(layout, *pid))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(recovery),
        Err(e) => return Err(e),
    };
    if dead.is_empty() {
        return Ok(recovery);
    }
    let pods: Vec<Pod> = store.list(Resource::PODS, None).map_err(io::Error::other)?;
    for mut pod in pods {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = layout.pod_dir(&ns, &name, &uid);
        let Some(owner) = pod_owner(&dir) else {
            continue;
        };
        if !dead.contains(&owner) {
            continue;
        }
        let killed = kill_leftovers(&dir);
        let mut report =
            format!("pod {ns}/{name} was left by podrun (pid {owner}) that was killed");
        if killed > 0 {
            report.push_str(&format!("; killed {killed} leftover process(es)"));
        }
        if !podrun_model::is_pod_terminal(&pod) {
            mark_lost(&mut pod);
            store
                .put_status(Resource::PODS, &mut pod)
                .map_err(io::Error::other)?;
            report.push_str("; marked Failed");
        }
        let _ = fs::remove_file(dir.join("owner"));
        recovery.reports.push(report);
    }
    for pid in dead {
        let _ = fs::remove_file(layout.instance_lock(pid));
        let _ = fs::remove_file(layout.instance_socket(pid));
    }
    Ok(recovery)
}

/// Marks every unfinished container of a lost pod as the kubelet does for a container
/// that vanished (`ContainerStatusUnknown`, exit 137) and the pod `Failed`.
fn mark_lost(pod: &mut Pod) {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated};
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(crate::now());
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase = Some(PodPhase::Failed.into());
    let lists = [
        status.init_container_statuses.as_mut(),
        status.container_statuses.as_mut(),
    ];
    for list in lists.into_iter().flatten() {
        for cs in list.iter_mut() {
            let finished = cs.state.as_ref().is_some_and(|s| s.terminated.is_some());
            if !finished {
                cs.ready = false;
                cs.started = Some(false);
                cs.state = Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 137,
                        reason: Some("ContainerStatusUnknown".into()),
                        message: Some(
                            "The container could not be located when the pod was terminated".into(),
                        ),
                        finished_at: Some(now.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
    }
    if let Some(conditions) = status.conditions.as_mut() {
        for c in conditions.iter_mut() {
            if c.type_ == "Ready" || c.type_ == "ContainersReady" {
                c.status = "False".into();
            }
        }
    }
}

/// Kills processes recorded in `<container>/<n>.pid` files whose start time still
/// matches; returns how many it killed.
fn kill_leftovers(pod_dir: &Path) -> usize {
    let mut killed = 0;
    let Ok(containers) = fs::read_dir(pod_dir) else {
        return 0;
    };
    for c in containers.filter_map(|e| e.ok()) {
        let Ok(files) = fs::read_dir(c.path()) else {
            continue;
        };
        for f in files.filter_map(|e| e.ok()) {
            let path = f.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pid") {
                continue;
            }
            if let Some((pid, start)) = read_pid_record(&path)
                && process_start_time(pid) == Some(start)
            {
                // SAFETY: plain kill(2) of a process group we started and verified by start time.
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                    libc::kill(pid as i32, libc::SIGKILL);
                }
                killed += 1;
            }
            let _ = fs::remove_file(&path);
        }
    }
    killed
}

/// Writes `<pid> <starttime>` for a live container instance.
pub fn write_pid_record(path: &Path, pid: u32) -> io::Result<()> {
    let start = process_start_time(pid).unwrap_or(0);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, format!("{pid} {start}\n"))
}

fn read_pid_record(path: &Path) -> Option<(u32, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_alive_while_its_lock_is_held_and_dead_after() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let lock = InstanceLock::acquire(&layout).unwrap();
        // flock locks belong to the open file description: a second open in this process
        // conflicts with it just as another process would.
        assert!(instance_alive(&layout, lock.pid()));
        drop(lock);
        assert!(!instance_alive(&layout, std::process::id()));
    }
}
