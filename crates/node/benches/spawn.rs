//! Spawn and exit-notification latency of containers, against `std::process::Command`.
//!
//! Run as root for the isolated path: `cargo bench -p podrun-node --bench spawn`.
//! Prints p50/p99 over `RUNS` runs of:
//! * spawn→exec: `ContainerProcess::spawn` returns once the command has been exec'd;
//! * exit→notification: SIGKILL sent → `wait()` resolved (`finished_at` − send time);
//! * baseline: `std::process::Command::spawn` of the same program, and its kill→`wait`.

use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use podrun_node::runtime::{ContainerLaunch, ContainerProcess, PodIdentity, isolation_available};

const RUNS: usize = 200;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn show(name: &str, v: &mut [Duration]) -> Duration {
    let p50 = pct(v, 0.5);
    println!("{name:<42} p50 {:>9.1?}  p99 {:>9.1?}", p50, pct(v, 0.99));
    p50
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "isolation (root): {}; {RUNS} runs each",
        isolation_available()
    );
    rt.block_on(async {
        let mut spawn = Vec::with_capacity(RUNS);
        let mut exit = Vec::with_capacity(RUNS);
        for i in 0..RUNS {
            let launch = ContainerLaunch {
                pod: PodIdentity {
                    namespace: "bench".into(),
                    name: "b".into(),
                    uid: "u".into(),
                },
                container_name: "c".into(),
                restart_count: i as i32,
                argv: vec!["sleep".into(), "100".into()],
                env: vec![("PATH".into(), "/usr/bin:/bin".into())],
                working_dir: None,
                mounts: Vec::new(),
                log_path: dir.path().join(format!("c/{i}.log")),
                termination_message: None,
                hostname: None,
                ..Default::default()
            };
            let t = Instant::now();
            let c = ContainerProcess::spawn(&launch).expect("spawn");
            spawn.push(t.elapsed());
            let sent = SystemTime::now();
            c.signal(Signal::SIGKILL).expect("kill");
            let info = tokio::time::timeout(Duration::from_secs(5), c.wait())
                .await
                .expect("exit");
            exit.push(info.finished_at.duration_since(sent).unwrap_or_default());
        }
        let mut base_spawn = Vec::with_capacity(RUNS);
        let mut base_exit = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            let mut child = std::process::Command::new("sleep")
                .arg("100")
                .spawn()
                .expect("spawn");
            base_spawn.push(t.elapsed());
            let t = Instant::now();
            child.kill().expect("kill");
            child.wait().expect("wait");
            base_exit.push(t.elapsed());
        }
        let s = show("ContainerProcess::spawn (call → exec)", &mut spawn);
        let bs = show("std::process::Command::spawn", &mut base_spawn);
        let e = show("exit → notification (SIGKILL → wait)", &mut exit);
        let be = show("std Child kill → wait (blocking)", &mut base_exit);
        println!(
            "ratio spawn p50: {:.2}x   exit p50: {:.2}x",
            s.as_secs_f64() / bs.as_secs_f64(),
            e.as_secs_f64() / be.as_secs_f64()
        );
    });
}
