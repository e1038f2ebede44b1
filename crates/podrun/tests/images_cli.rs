//! `podrun pull` and `podrun images` against a real registry (Debian's `docker-registry` on
//! 127.0.0.1 with the fixture image of `scripts/test-images.sh`): the spec's acceptance
//! scenarios 26 (a corrupt layer in the registry's storage), 37 (`--digests`, `--no-trunc`) and
//! 41 (`localhost:<port>` and `127.0.0.1:<port>` share one `hosts.toml`) and 17 (an index
//! pushed with `skopeo copy --all`). Needs root and the
//! packages `scripts/setup.sh` installs.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

mod registry;

use registry::{Env, Registry, stderr};

/// The blob files of the registry's storage, largest first.
fn registry_blobs(dir: &Path) -> Vec<PathBuf> {
    let root = dir.join("storage/docker/registry/v2/blobs/sha256");
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .flat_map(|prefix| std::fs::read_dir(prefix.path()).unwrap().flatten())
        .map(|d| d.path().join("data"))
        .filter(|p| p.is_file())
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    out
}

/// Scenario 26: a layer whose bytes changed in the registry (same size) fails the pull with
/// containerd's `unexpected commit digest`, and nothing of it stays: no layer blob, no
/// unpacked layer, no download, no image.
#[test]
fn a_corrupt_layer_in_the_registry_fails_the_pull_and_leaves_nothing() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    let layer = registry_blobs(env.dir()).remove(0);
    let want = layer
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&layer)
        .unwrap();
    let mut byte = [0u8; 1];
    f.seek(SeekFrom::Start(1000)).unwrap();
    f.read_exact(&mut byte).unwrap();
    f.seek(SeekFrom::Start(1000)).unwrap();
    f.write_all(&[byte[0] ^ 0xff]).unwrap();
    drop(f);
    let out = env.podrun(&["pull", &format!("{}/busybox:1", reg.host())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("expected sha256:{want}: failed precondition"))
            && err.contains("unexpected commit digest sha256:"),
        "{err}"
    );
    let blobs = env.state().join("images/blobs/sha256");
    assert!(!blobs.join(&want).exists(), "the corrupt layer was kept");
    assert_eq!(env.count("layers"), 0);
    assert_eq!(env.count("ingest"), 0);
    assert_eq!(env.ok(&["images", "-q"]), "");
}

/// Scenario 37: `--digests` adds crictl's DIGEST column (13 hex digits of the repo digest),
/// `--no-trunc` shows IDs and digests whole.
#[test]
fn images_shows_digests_truncated_or_whole() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    let image = format!("{}/busybox:1", reg.host());
    env.ok(&["pull", &image]);
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["images", "-o", "json"])).unwrap();
    let repo_digest = json["images"][0]["repoDigests"][0].as_str().unwrap();
    let digest = repo_digest.split_once('@').unwrap().1;
    let id = json["images"][0]["id"].as_str().unwrap();
    let table = env.ok(&["images", "--digests"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["IMAGE", "TAG", "DIGEST", "IMAGE", "ID", "SIZE"]);
    assert_eq!(
        lines[1][..4],
        [
            format!("{}/busybox", reg.host()).as_str(),
            "1",
            &digest[7..20],
            &id[7..20]
        ]
    );
    let whole = env.ok(&["images", "--digests", "--no-trunc"]);
    let row: Vec<&str> = whole.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[2..4], [digest, id]);
}

/// Scenario 41: a `hosts.toml` written for `localhost:<port>` serves `127.0.0.1:<port>` too.
#[test]
fn localhost_and_the_loopback_address_share_one_hosts_toml() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    // Nothing listens on `port`: only the mirror in hosts.toml can serve the pull.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hosts = env.dir().join("certs.d");
    let dir = hosts.join(format!("localhost:{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hosts.toml"),
        format!("server = \"http://{}\"\n", reg.host()),
    )
    .unwrap();
    let config = hosts.to_str().unwrap();
    for name in [
        format!("127.0.0.1:{port}/busybox:1"),
        format!("localhost:{port}/busybox:1"),
    ] {
        let out = env.ok(&["pull", "--registry-config", config, &name]);
        assert!(out.starts_with("Image is up to date for sha256:"), "{out}");
    }
    let listed = env.ok(&["images"]);
    assert!(
        listed.contains(&format!("127.0.0.1:{port}/busybox")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("localhost:{port}/busybox")),
        "{listed}"
    );
}

/// Adds an OCI index named `name` to the fixture's layout, one entry per `(tag, os, arch)`.
fn add_index(env: &Env, name: &str, entries: &[(&str, &str, &str)]) {
    let layout = env.dir().join("oci");
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap().clone();
    let desc = |tag: &str| {
        manifests
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap()
            .clone()
    };
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|(tag, os, arch)| {
            let d = desc(tag);
            serde_json::json!({
                "mediaType": d["mediaType"],
                "digest": d["digest"],
                "size": d["size"],
                "platform": {"os": os, "architecture": arch},
            })
        })
        .collect();
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": list,
    }))
    .unwrap();
    let digest = podrun_images::digest::Digest::of(&bytes);
    std::fs::write(layout.join("blobs/sha256").join(digest.hex()), &bytes).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest.to_string(),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": name},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Scenario 17: from an index with amd64, arm64 and `unknown/unknown` (attestation) entries
/// the host's platform is pulled (`--platform` picks another); an index without the host's
/// platform fails with containerd's `no match for platform in manifest`.
#[test]
fn an_index_pulls_the_hosts_platform() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let other_arch = if host_arch == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    add_index(
        &env,
        "multi",
        &[
            ("2", "unknown", "unknown"),
            ("2", "linux", other_arch),
            ("1", "linux", host_arch),
        ],
    );
    add_index(&env, "foreign", &[("2", "linux", other_arch)]);
    for tag in ["multi", "foreign"] {
        env.skopeo(
            &format!("oci:{}/oci:{tag}", env.dir().display()),
            &format!("docker://{}/busybox:{tag}", reg.host()),
            &["--all"],
        );
    }
    let multi = format!("{}/busybox:multi", reg.host());
    assert_eq!(
        env.ok(&["pull", &multi]),
        format!("Image is up to date for {}\n", env.fixture_image_id("1"))
    );
    assert_eq!(
        env.ok(&["pull", "--platform", &format!("linux/{other_arch}"), &multi]),
        format!("Image is up to date for {}\n", env.fixture_image_id("2"))
    );
    let out = env.podrun(&["pull", &format!("{}/busybox:foreign", reg.host())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no match for platform in manifest: not found"),
        "{}",
        stderr(&out)
    );
}
