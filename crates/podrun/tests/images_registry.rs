//! `podrun pull | images | rmi | load` against a real registry: Debian's `docker-registry` on
//! 127.0.0.1 (a free port, a temporary storage directory, killed by PID), with test images built
//! offline from the static busybox by `scripts/test-images.sh` (umoci) and pushed with skopeo.
//! Needs root and the packages `scripts/setup.sh` installs; fails loudly without them.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

mod registry;

use registry::{Env, Registry, stderr, stdout};

#[test]
fn pull_list_and_repull_without_blob_fetches() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    let image = format!("{}/busybox:1", reg.host());
    let out = env.ok(&["pull", &image]);
    let id = env.fixture_image_id("1");
    assert_eq!(out, format!("Image is up to date for {id}\n"));
    let gets = reg.blob_gets();
    assert_eq!(gets, 3, "config and two layers");
    // Unchanged: the manifest is resolved again, no blob is fetched.
    assert_eq!(
        env.ok(&["pull", &image]),
        format!("Image is up to date for {id}\n")
    );
    assert_eq!(reg.blob_gets(), gets);
    let table = env.ok(&["images"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..3],
        [format!("{}/busybox", reg.host()).as_str(), "1", &id[7..20]]
    );
    assert!(row[3].ends_with("MB"), "{table}");
    assert_eq!(env.ok(&["images", "-q"]), format!("{id}\n"));
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["images", "-o", "json"])).unwrap();
    assert_eq!(json["images"][0]["repoTags"][0], image);
    // The layers are unpacked once each: busybox under bin/, the passwd file under etc/.
    let layers = env.state().join("images/layers");
    let found: Vec<PathBuf> = std::fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(found.len(), 2);
    assert!(found.iter().any(|l| l.join("bin/busybox").is_file()));
    assert!(found.iter().any(|l| {
        std::fs::read_to_string(l.join("etc/passwd")).is_ok_and(|p| p.contains("app:x:1000"))
    }));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(env.state().join("images"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn pull_by_digest_docker_media_types_and_failures() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    env.skopeo(
        &format!("oci:{}/oci:2", env.dir().display()),
        &format!("docker://{}/busybox:v2s2", reg.host()),
        &["--format", "v2s2"],
    );
    env.ok(&["pull", &format!("{}/busybox:1", reg.host())]);
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["images", "-o", "json"])).unwrap();
    let repo_digest = json["images"][0]["repoDigests"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        repo_digest.starts_with(&format!("{}/busybox@sha256:", reg.host())),
        "{repo_digest}"
    );
    let out = env.ok(&["pull", &repo_digest]);
    assert_eq!(
        out,
        format!("Image is up to date for {}\n", env.fixture_image_id("1"))
    );
    // Docker schema 2 media types.
    env.ok(&["pull", &format!("{}/busybox:v2s2", reg.host())]);
    // Unknown tag, unknown digest, closed port: containerd's words.
    let missing = env.podrun(&["pull", &format!("{}/busybox:nope", reg.host())]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains(&format!(
            "failed to pull and unpack image \"{0}/busybox:nope\": failed to resolve image: {0}/busybox:nope: not found",
            reg.host()
        )),
        "{}",
        stderr(&missing)
    );
    let unknown = format!("{}/busybox@sha256:{}", reg.host(), "0".repeat(64));
    assert!(stderr(&env.podrun(&["pull", &unknown])).contains(&format!("{unknown}: not found")));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = env.podrun(&["pull", &format!("127.0.0.1:{port}/x:1")]);
    assert!(
        stderr(&refused).contains(&format!(
            "failed to resolve image: failed to do request: Head \"https://127.0.0.1:{port}/v2/x/manifests/1\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        )),
        "{}",
        stderr(&refused)
    );
    let bad = env.podrun(&["pull", "Busybox:1"]);
    assert!(
        stderr(&bad).contains("repository name (library/Busybox) must be lowercase"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn load_docker_and_oci_archives_and_layouts() {
    let env = Env::new();
    let d = env.dir().display().to_string();
    env.skopeo(
        &format!("oci:{d}/oci:1"),
        &format!("docker-archive:{d}/bb.tar:busybox:1.36"),
        &[],
    );
    env.skopeo(
        &format!("oci:{d}/oci:1"),
        &format!("oci-archive:{d}/bb-oci.tar:busybox:1.37"),
        &[],
    );
    assert_eq!(
        env.ok(&["load", "-i", &format!("{d}/bb.tar")]),
        "Loaded image: docker.io/library/busybox:1.36\n"
    );
    assert_eq!(
        env.ok(&["load", "-i", &format!("{d}/bb-oci.tar")]),
        "Loaded image: docker.io/library/busybox:1.37\n"
    );
    // Whole-file gzip, read from standard input.
    let gz = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {d}/bb.tar > {d}/bb.tar.gz"))
        .status()
        .unwrap();
    assert!(gz.success());
    let out = Command::new(env!("CARGO_BIN_EXE_podrun"))
        .arg("--state-dir")
        .arg(env.state())
        .args(["load", "-i", "-", "--tag", "gz:1"])
        .stdin(std::fs::File::open(format!("{d}/bb.tar.gz")).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        "Loaded image: docker.io/library/gz:1\n",
        "{}",
        stderr(&out)
    );
    // An OCI layout directory names its images by bare tags: a name must be given.
    let nameless = env.podrun(&["load", "-i", &format!("{d}/oci")]);
    assert!(!nameless.status.success());
    assert!(stderr(&nameless).contains("--tag"), "{}", stderr(&nameless));
    let single = env.dir().join("single");
    env.skopeo(
        &format!("oci:{d}/oci:2"),
        &format!("oci:{}:2", single.display()),
        &[],
    );
    assert_eq!(
        env.ok(&[
            "load",
            "-i",
            single.to_str().unwrap(),
            "--tag",
            "localhost/two:2"
        ]),
        "Loaded image: localhost/two:2\n"
    );
    let table = env.ok(&["images"]);
    for want in [
        "docker.io/library/busybox",
        "1.36",
        "1.37",
        "docker.io/library/gz",
        "localhost/two",
    ] {
        assert!(table.contains(want), "{table}");
    }
    // The docker archive's layers are the same content as the OCI ones: the same image ID.
    let id = env.fixture_image_id("1");
    let ids = env.ok(&["images", "-q"]);
    assert!(ids.lines().any(|l| l == id), "{ids}");
}

#[test]
fn rmi_and_garbage_collection_keep_shared_layers() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    env.push(&reg, "2", "busybox:2");
    let (one, two) = (
        format!("{}/busybox:1", reg.host()),
        format!("{}/busybox:2", reg.host()),
    );
    env.ok(&["pull", &one]);
    env.ok(&["pull", &two]);
    // Two images share their /bin and /etc layers: three layers in all, unpacked once each.
    assert_eq!(env.count("layers"), 3);
    assert_eq!(env.count("blobs/sha256"), 2 + 2 + 3);
    assert_eq!(env.ok(&["rmi", &one]), format!("Deleted: {one}\n"));
    assert_eq!(env.count("layers"), 3, "image 2 still uses every layer");
    assert_eq!(env.count("blobs/sha256"), 2 + 3);
    let missing = env.podrun(&["rmi", &one]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("unable to remove the image(s)"));
    assert_eq!(env.ok(&["rmi", &two]), format!("Deleted: {two}\n"));
    assert_eq!(env.count("layers"), 0);
    assert_eq!(env.count("blobs/sha256"), 0);
    assert_eq!(env.ok(&["images", "-q"]), "");
}

#[test]
fn kill_mid_pull_leaves_a_consistent_store() {
    let env = Env::new();
    // A big layer so the pull is still running when it is killed.
    let big = env.dir().join("big");
    std::fs::create_dir_all(&big).unwrap();
    let mut random = std::io::Read::take(std::fs::File::open("/dev/urandom").unwrap(), 32 << 20);
    std::io::copy(
        &mut random,
        &mut std::fs::File::create(big.join("data")).unwrap(),
    )
    .unwrap();
    let layout = format!("{}/oci", env.dir().display());
    for args in [
        vec![
            "tag".to_owned(),
            "--image".into(),
            format!("{layout}:1"),
            "big".into(),
        ],
        vec![
            "insert".into(),
            "--image".into(),
            format!("{layout}:big"),
            big.display().to_string(),
            "/big".into(),
        ],
    ] {
        assert!(
            Command::new("umoci")
                .args(&args)
                .status()
                .unwrap()
                .success()
        );
    }
    let reg = Registry::start(env.dir());
    env.push(&reg, "big", "busybox:big");
    let image = format!("{}/busybox:big", reg.host());
    let mut killed_mid_way = false;
    for delay_ms in [150u64, 300, 600, 1200] {
        let _ = std::fs::remove_dir_all(env.state());
        let mut child = Command::new(env!("CARGO_BIN_EXE_podrun"))
            .arg("--state-dir")
            .arg(env.state())
            .args(["pull", &image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        if !finished {
            killed_mid_way = true;
            // Nothing half-made is visible: no name, and opening the store clears the debris.
            assert_eq!(env.ok(&["images", "-q"]), "");
            assert_eq!(env.count("ingest"), 0);
            let layers: Vec<String> = std::fs::read_dir(env.state().join("images/layers"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(layers.iter().all(|l| !l.contains(".tmp-")), "{layers:?}");
            // Every stored blob is whole: it hashes to its name.
            for e in std::fs::read_dir(env.state().join("images/blobs/sha256")).unwrap() {
                let e = e.unwrap();
                let digest = podrun_images::digest::Digest::of(&std::fs::read(e.path()).unwrap());
                assert_eq!(digest.hex(), e.file_name().to_string_lossy());
            }
            // And the next pull completes.
            env.ok(&["pull", &image]);
            assert_eq!(env.ok(&["images", "-q"]).lines().count(), 1);
            break;
        }
    }
    assert!(
        killed_mid_way,
        "every pull finished before it could be killed"
    );
}

#[test]
fn hosts_toml_sends_docker_io_to_a_local_registry() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "library/busybox:1");
    let hosts = env.dir().join("certs.d");
    std::fs::create_dir_all(hosts.join("docker.io")).unwrap();
    std::fs::write(
        hosts.join("docker.io/hosts.toml"),
        format!("server = \"http://{}\"\n", reg.host()),
    )
    .unwrap();
    let out = env.ok(&[
        "pull",
        "--registry-config",
        hosts.to_str().unwrap(),
        "busybox:1",
    ]);
    assert_eq!(
        out,
        format!("Image is up to date for {}\n", env.fixture_image_id("1"))
    );
    assert!(env.ok(&["images"]).contains("docker.io/library/busybox"));
    // `_default` serves every other registry name.
    std::fs::create_dir_all(hosts.join("_default")).unwrap();
    std::fs::write(
        hosts.join("_default/hosts.toml"),
        format!("server = \"http://{}\"\n", reg.host()),
    )
    .unwrap();
    env.ok(&[
        "pull",
        "--registry-config",
        hosts.to_str().unwrap(),
        "registry.invalid/library/busybox:1",
    ]);
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_unpack_and_keeps_the_store_consistent() {
    let env = Env::new();
    let state = env.state();
    std::fs::create_dir_all(&state).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs");
    let _guard = Tmpfs(state.clone());
    // One image that fits, then one whose layer inflates to 256 MiB of zeros.
    env.skopeo(
        &format!("oci:{}/oci:1", env.dir().display()),
        &format!("docker-archive:{}/bb.tar:busybox:1.36", env.dir().display()),
        &[],
    );
    env.ok(&["load", "-i", &format!("{}/bb.tar", env.dir().display())]);
    let zeros = env.dir().join("zeros");
    std::fs::create_dir_all(&zeros).unwrap();
    let f = std::fs::File::create(zeros.join("z")).unwrap();
    f.set_len(256 << 20).unwrap();
    let layout = format!("{}/oci", env.dir().display());
    assert!(
        Command::new("umoci")
            .args(["tag", "--image", &format!("{layout}:1"), "zeros"])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("umoci")
            .args(["insert", "--image", &format!("{layout}:zeros")])
            .arg(&zeros)
            .arg("/zeros")
            .status()
            .unwrap()
            .success()
    );
    let single = env.dir().join("zeros-layout");
    env.skopeo(
        &format!("oci:{layout}:zeros"),
        &format!("oci:{}:zeros", single.display()),
        &[],
    );
    let out = env.podrun(&["load", "-i", single.to_str().unwrap(), "--tag", "zeros:1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no space left on device"),
        "{}",
        stderr(&out)
    );
    let images = env.ok(&["images"]);
    assert!(
        images.contains("1.36") && !images.contains("zeros"),
        "{images}"
    );
    let layers: Vec<String> = std::fs::read_dir(state.join("images/layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(layers.iter().all(|l| !l.contains(".tmp-")), "{layers:?}");
    assert_eq!(env.count("ingest"), 0);
}

#[test]
fn an_unprivileged_user_pulls_and_loads() {
    let env = Env::new();
    let reg = Registry::start(env.dir());
    env.push(&reg, "1", "busybox:1");
    let d = env.dir().display().to_string();
    env.skopeo(
        &format!("oci:{d}/oci:1"),
        &format!("docker-archive:{d}/bb.tar:busybox:1.36"),
        &[],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        env.dir().join("bb.tar"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let state = env.dir().join("nobody");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_podrun"))
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .output()
            .unwrap()
    };
    let out = as_nobody(&["pull", &format!("{}/busybox:1", reg.host())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("Image is up to date for {}\n", env.fixture_image_id("1"))
    );
    let out = as_nobody(&["load", "-i", &format!("{d}/bb.tar")]);
    assert_eq!(
        stdout(&out),
        "Loaded image: docker.io/library/busybox:1.36\n",
        "{}",
        stderr(&out)
    );
    // Owners are not kept: everything unpacked belongs to the user.
    let layers = state.join("images/layers");
    for e in std::fs::read_dir(&layers).unwrap() {
        let bin = e.unwrap().path().join("bin/busybox");
        if bin.exists() {
            assert_eq!(
                std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&bin).unwrap()),
                65534
            );
        }
    }
}
