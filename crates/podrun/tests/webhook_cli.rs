//! `podrun webhook` as a process: deploy manifests, and the server writing its generated CA
//! bundle and listening on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_podrun");

#[test]
fn manifests_are_complete_and_parse() {
    let out = Command::new(BIN)
        .args(["webhook", "manifests", "--reinvocation-policy", "IfNeeded"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Split on marker lines only: PEM blocks contain "-----\n" too.
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "Secret",
            "Deployment",
            "Service",
            "MutatingWebhookConfiguration"
        ]
    );
    let hook = &docs[5]["webhooks"][0];
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
    assert_eq!(hook["sideEffects"], "None");
    assert!(hook["clientConfig"]["caBundle"].as_str().unwrap().len() > 100);
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        // Only the process this test started, by its handle.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn server_writes_ca_bundle_and_listens() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let mut child = Child(
        Command::new(BIN)
            .args(["webhook", "--listen", "127.0.0.1:0", "--ca-bundle-out"])
            .arg(&ca)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut reader = BufReader::new(stderr);
    while !line.contains("listening on") {
        assert!(Instant::now() < deadline, "webhook did not start");
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "webhook exited early"
        );
    }
    let addr = line
        .trim()
        .rsplit("https://")
        .next()
        .unwrap()
        .trim_end_matches("/inject");
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    let pem = std::fs::read_to_string(&ca).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
}
