//! Hostile manifests through the real `podrun run` (parsing, defaulting, validation and
//! injection): missing and mistyped fields, 1 MB strings, deep nesting, a YAML alias
//! bomb, bytes that are not UTF-8, integers that overflow, and names with `/`, `..`,
//! capitals or 300 characters. Each must end quickly with exit 2 and a kubectl-style
//! message, never a panic or a hang, and write nothing outside the state directory.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Podrun;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: NAME\nspec:\n  restartPolicy: Never\n  containers:\n  - name: a\n    image: busybox\n    command: [\"true\"]\n";

fn pod_named(name: &str) -> Vec<u8> {
    POD.replace("NAME", name).into_bytes()
}

/// Every hostile input, with a label for failure messages.
fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |label: &str, bytes: Vec<u8>| out.push((label.to_string(), bytes));
    add(
        "missing containers",
        b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n".to_vec(),
    );
    add(
        "missing kind",
        b"apiVersion: v1\nmetadata: {name: p}\n".to_vec(),
    );
    add(
        "missing metadata",
        b"apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a, image: b, command: [x]}]}\n"
            .to_vec(),
    );
    add(
        "containers is a string",
        POD.replace(
            "  containers:\n  - name: a\n    image: busybox\n    command: [\"true\"]\n",
            "  containers: lots\n",
        )
        .replace("NAME", "p")
        .into_bytes(),
    );
    add(
        "command is a number",
        POD.replace("[\"true\"]", "7")
            .replace("NAME", "p")
            .into_bytes(),
    );
    add(
        "1 MB container name",
        POD.replace("name: a", &format!("name: {}", "a".repeat(1 << 20)))
            .replace("NAME", "p")
            .into_bytes(),
    );
    add(
        "1 MB label value",
        POD.replace(
            "  name: NAME\n",
            &format!("  name: p\n  labels: {{app: {}}}\n", "v".repeat(1 << 20)),
        )
        .into_bytes(),
    );
    add(
        "deep YAML",
        format!(
            "{}    args: {}{}\n",
            POD.replace("NAME", "p"),
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
        .into_bytes(),
    );
    add(
        "deep JSON",
        format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"p\",\"x\":{}{}}}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
        .into_bytes(),
    );
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..9 {
        let p = i - 1;
        bomb.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    add("alias bomb", bomb.into_bytes());
    let mut bad = pod_named("p");
    bad.splice(30..30, [0xff, 0xfe, 0x80]);
    add("invalid UTF-8", bad);
    add(
        "truncated UTF-8",
        [pod_named("p"), vec![0xe2, 0x82]].concat(),
    );
    add(
        "overflowing grace period",
        POD.replace(
            "  restartPolicy: Never\n",
            "  restartPolicy: Never\n  terminationGracePeriodSeconds: 99999999999999999999999\n",
        )
        .replace("NAME", "p")
        .into_bytes(),
    );
    add(
        "overflowing port",
        POD.replace(
            "command: [\"true\"]",
            "command: [\"true\"]\n    ports: [{containerPort: 4294967296}]",
        )
        .replace("NAME", "p")
        .into_bytes(),
    );
    add("negative replicas overflow", b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: -2147483649}\n".to_vec());
    add("name with a slash", pod_named("a/b"));
    add(
        "name climbing out",
        pod_named("../../../../tmp/podrun-escape"),
    );
    add("name ..", pod_named("'..'"));
    add("capital name", pod_named("Web"));
    add("300-character name", pod_named(&"a".repeat(300)));
    add(
        "hostPath volume name climbing out",
        POD.replace(
            "  containers:",
            "  volumes: [{name: ../x, emptyDir: {}}]\n  containers:",
        )
        .replace("NAME", "p")
        .into_bytes(),
    );
    add(
        "unknown kind",
        b"apiVersion: v1\nkind: Pood\nmetadata: {name: p}\n".to_vec(),
    );
    add("a list", b"- a\n- b\n".to_vec());
    add("garbage", b"\x00\x01{{{:::".to_vec());
    out
}

#[test]
fn hostile_manifests_end_at_once_with_a_message_and_write_nothing() {
    let podrun = Podrun::new();
    let escape = std::path::Path::new("/tmp/podrun-escape");
    let _ = std::fs::remove_dir_all(escape);
    for (label, bytes) in inputs() {
        for inject in [false, true] {
            let start = Instant::now();
            let mut cmd = podrun.command();
            cmd.args(["run", common::HOST_ROOTFS, "-f", "-", "--timeout", "60s"]);
            if inject {
                cmd.arg("--inject");
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let bytes = bytes.clone();
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
            let out = child.wait_with_output().unwrap();
            writer.join().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            let took = start.elapsed();
            assert_eq!(
                out.status.code(),
                Some(2),
                "{label} (inject {inject}): stderr {}",
                &err[..err.len().min(2000)]
            );
            assert!(took < Duration::from_secs(20), "{label}: took {took:?}");
            let first = err.lines().next().unwrap_or_default();
            assert!(
                first.starts_with("error: ")
                    || first.starts_with("The ")
                    || first.starts_with("Error from server"),
                "{label}: not a kubectl-style message: {}",
                &first[..first.len().min(500)]
            );
            assert!(!err.contains("panicked"), "{label}: {err}");
        }
        // Nothing was created: no pod directory, no object, nothing outside.
        assert!(!podrun.state_dir().join("pods").exists(), "{label}");
        assert!(!escape.exists(), "{label}: wrote {}", escape.display());
    }
}
