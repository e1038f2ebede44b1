//! Pulls from an in-process registry that misbehaves on purpose: Bearer tokens behind Basic
//! credentials, missing tags, corrupt and over-long blobs, a connection dropped mid-blob, wrong
//! diff IDs, indexes with and without the host's platform, and zstd and plain layers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use podrun_images::digest::Digest;
use podrun_images::manifest::Platform;
use podrun_images::{Credentials, HostsConfig, ImageService, Keyring, PullPolicy, Reference};

#[derive(Clone, Default)]
struct Fault {
    /// Serve these bytes instead of the blob's own (same length or not).
    replace: HashMap<String, Vec<u8>>,
    /// Close the connection after half of this blob.
    drop_after_half: Option<String>,
    /// Send this blob in 4 KiB pieces, 100 ms apart.
    slow: Option<String>,
    /// Redirect blob requests to this base URL.
    redirect_blobs: Option<String>,
    /// Require `Bearer good`, handed out for these Basic credentials.
    bearer_for: Option<String>,
}

#[derive(Default)]
struct State {
    manifests: HashMap<String, (String, Vec<u8>)>,
    blobs: HashMap<String, Vec<u8>>,
    fault: Fault,
    token_requests: Vec<String>,
    requests: Vec<String>,
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

async fn handle(
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let mut st = state.lock().unwrap();
    let auth = if req.headers().contains_key("authorization") {
        " with credentials"
    } else {
        ""
    };
    st.requests.push(format!("{} {path}{auth}", req.method()));
    if path == "/token" {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        st.token_requests
            .push(format!("{} {}", auth, req.uri().query().unwrap_or("")));
        if st.fault.bearer_for.as_deref() == Some(auth.as_str()) {
            return Ok(full(StatusCode::OK, br#"{"token":"good"}"#.to_vec()));
        }
        return Ok(full(StatusCode::UNAUTHORIZED, b"{}".to_vec()));
    }
    if st.fault.bearer_for.is_some()
        && req.headers().get("authorization").map(|v| v.as_bytes()) != Some(b"Bearer good")
    {
        let mut r = full(StatusCode::UNAUTHORIZED, b"{}".to_vec());
        r.headers_mut().insert(
            "www-authenticate",
            format!("Bearer realm=\"http://{addr}/token\",service=\"fake\",scope=\"repository:app:pull\"").parse().unwrap(),
        );
        return Ok(r);
    }
    let head = req.method() == http::Method::HEAD;
    if let Some(rest) = path.strip_prefix("/v2/app/manifests/") {
        let Some((mt, body)) = st.manifests.get(rest).cloned() else {
            return Ok(full(
                StatusCode::NOT_FOUND,
                b"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}".to_vec(),
            ));
        };
        let digest = Digest::of(&body);
        let len = body.len();
        let mut r = full(StatusCode::OK, if head { Vec::new() } else { body });
        r.headers_mut().insert("content-type", mt.parse().unwrap());
        r.headers_mut()
            .insert("docker-content-digest", digest.as_str().parse().unwrap());
        r.headers_mut()
            .insert("content-length", len.to_string().parse().unwrap());
        return Ok(r);
    }
    if let Some(d) = path.strip_prefix("/v2/app/blobs/") {
        if let Some(base) = &st.fault.redirect_blobs {
            let mut r = full(StatusCode::TEMPORARY_REDIRECT, Vec::new());
            r.headers_mut().insert(
                "location",
                format!("{base}/v2/app/blobs/{d}").parse().unwrap(),
            );
            return Ok(r);
        }
        let Some(mut body) = st.blobs.get(d).cloned() else {
            return Ok(full(StatusCode::NOT_FOUND, Vec::new()));
        };
        if let Some(r) = st.fault.replace.get(d) {
            body = r.clone();
        }
        if st.fault.slow.as_deref() == Some(d) {
            let len = body.len();
            let chunks: Vec<Bytes> = body.chunks(4096).map(Bytes::copy_from_slice).collect();
            let frames = futures::stream::unfold(chunks.into_iter(), |mut it| async move {
                let c = it.next()?;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                Some((Ok::<_, std::io::Error>(Frame::data(c)), it))
            });
            let mut r = Response::new(StreamBody::new(frames).boxed());
            r.headers_mut()
                .insert("content-length", len.to_string().parse().unwrap());
            return Ok(r);
        }
        if st.fault.drop_after_half.as_deref() == Some(d) {
            let half = Bytes::from(body[..body.len() / 2].to_vec());
            // Half the body goes out; a moment later the connection is cut.
            let frames = futures::stream::unfold(Some(half), |half| async move {
                match half {
                    Some(h) => Some((Ok::<_, std::io::Error>(Frame::data(h)), None)),
                    None => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Some((Err(std::io::Error::other("dropped")), None))
                    }
                }
            });
            let mut r = Response::new(StreamBody::new(frames).boxed());
            r.headers_mut()
                .insert("content-length", body.len().to_string().parse().unwrap());
            return Ok(r);
        }
        return Ok(full(StatusCode::OK, body));
    }
    Ok(full(StatusCode::NOT_FOUND, Vec::new()))
}

struct Fake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Fake {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(s.clone(), addr, req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    fn blob(&self, data: &[u8]) -> (Digest, u64) {
        let d = Digest::of(data);
        self.state
            .lock()
            .unwrap()
            .blobs
            .insert(d.to_string(), data.to_vec());
        (d, data.len() as u64)
    }

    /// Adds an image whose layers are `tars` (already compressed as wanted) with `diff_ids`.
    fn image(
        &self,
        tag: &str,
        layers: &[(Vec<u8>, &str)],
        diff_ids: &[Digest],
    ) -> (Digest, Vec<u8>) {
        let config = serde_json::json!({
            "architecture": Platform::host().architecture, "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
        });
        let config = serde_json::to_vec(&config).unwrap();
        let (cd, cs) = self.blob(&config);
        let mut descs = Vec::new();
        for (data, mt) in layers {
            let (d, s) = self.blob(data);
            descs.push(serde_json::json!({"mediaType": mt, "digest": d.as_str(), "size": s}));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.as_str(), "size": cs},
            "layers": descs,
        }))
        .unwrap();
        let md = Digest::of(&manifest);
        let mut st = self.state.lock().unwrap();
        st.manifests.insert(
            tag.into(),
            (
                "application/vnd.oci.image.manifest.v1+json".into(),
                manifest.clone(),
            ),
        );
        st.manifests.insert(
            md.to_string(),
            (
                "application/vnd.oci.image.manifest.v1+json".into(),
                manifest.clone(),
            ),
        );
        (md, manifest)
    }

    fn reference(&self, tag: &str) -> Reference {
        Reference::parse_normalized(&format!("{}/app:{tag}", self.addr)).unwrap()
    }
}

fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn service() -> (tempfile::TempDir, ImageService) {
    let dir = tempfile::tempdir().unwrap();
    let s = ImageService::open(dir.path().join("images"), HostsConfig::default()).unwrap();
    (dir, s)
}

fn ingest_empty(s: &ImageService) -> bool {
    std::fs::read_dir(s.store().root().join("ingest"))
        .unwrap()
        .count()
        == 0
}

const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[tokio::test]
async fn gzip_zstd_and_plain_layers_unpack() {
    let fake = Fake::start().await;
    let (a, b, c) = (
        layer_tar(&[("a", b"1")]),
        layer_tar(&[("b", b"2")]),
        layer_tar(&[("c", b"3")]),
    );
    let diff_ids = [Digest::of(&a), Digest::of(&b), Digest::of(&c)];
    fake.image(
        "1",
        &[
            (gzip(&a), GZ),
            (
                zstd::encode_all(&b[..], 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
            (c.clone(), "application/vnd.docker.image.rootfs.diff.tar"),
        ],
        &diff_ids,
    );
    let (_d, s) = service();
    let rec = s.pull(&fake.reference("1"), None, None).await.unwrap();
    let img = s.open_image(rec, None).unwrap();
    assert_eq!(img.layers.len(), 3);
    for (dir, (name, want)) in img.layers.iter().zip([("a", "1"), ("b", "2"), ("c", "3")]) {
        assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), want);
    }
    assert_eq!(
        img.config
            .config()
            .as_ref()
            .unwrap()
            .cmd()
            .as_ref()
            .unwrap(),
        &["/bin/sh".to_owned()]
    );
}

#[tokio::test]
async fn not_found_and_pinned_digest_mismatch() {
    let fake = Fake::start().await;
    let (_d, s) = service();
    let err = s
        .pull(&fake.reference("missing"), None, None)
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        format!(
            "failed to pull and unpack image \"{0}/app:missing\": failed to resolve image: {0}/app:missing: not found",
            fake.addr
        )
    );
    // A manifest served under a digest it does not hash to is refused.
    let t = layer_tar(&[("a", b"1")]);
    let (_, manifest) = fake.image("1", &[(gzip(&t), GZ)], &[Digest::of(&t)]);
    let wrong = Digest::of(b"something else");
    fake.state.lock().unwrap().manifests.insert(
        wrong.to_string(),
        (
            "application/vnd.oci.image.manifest.v1+json".into(),
            manifest,
        ),
    );
    let pinned = Reference::parse_normalized(&format!("{}/app@{wrong}", fake.addr)).unwrap();
    let err = s.pull(&pinned, None, None).await.unwrap_err().to_string();
    assert!(err.contains("instead of the digest asked for"), "{err}");
}

#[tokio::test]
async fn corrupt_long_and_dropped_blobs_leave_nothing() {
    let fake = Fake::start().await;
    let t = layer_tar(&[("big", &vec![7u8; 1 << 20])]);
    let layer = gzip(&t);
    fake.image("1", &[(layer.clone(), GZ)], &[Digest::of(&t)]);
    let ld = Digest::of(&layer).to_string();
    let (_d, s) = service();
    // Same size, one byte flipped.
    let mut flipped = layer.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    fake.state
        .lock()
        .unwrap()
        .fault
        .replace
        .insert(ld.clone(), flipped.clone());
    let err = s
        .pull(&fake.reference("1"), None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "unexpected commit digest {}, expected {ld}: failed precondition",
            Digest::of(&flipped)
        )),
        "{err}"
    );
    assert!(ingest_empty(&s) && !s.store().blob_path(&Digest::parse(&ld).unwrap()).exists());
    // Longer than its descriptor.
    let mut longer = layer.clone();
    longer.extend_from_slice(b"trailing");
    fake.state
        .lock()
        .unwrap()
        .fault
        .replace
        .insert(ld.clone(), longer);
    let err = s
        .pull(&fake.reference("1"), None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unexpected commit size"), "{err}");
    assert!(ingest_empty(&s));
    // The connection drops half-way.
    {
        let mut st = fake.state.lock().unwrap();
        st.fault.replace.clear();
        st.fault.drop_after_half = Some(ld.clone());
    }
    let err = s
        .pull(&fake.reference("1"), None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("failed to copy"), "{err}");
    assert!(ingest_empty(&s));
    assert!(s.store().records().unwrap().is_empty());
    // Healthy again: the pull completes.
    fake.state.lock().unwrap().fault.drop_after_half = None;
    s.pull(&fake.reference("1"), None, None).await.unwrap();
}

#[tokio::test]
async fn wrong_diff_id_is_refused() {
    let fake = Fake::start().await;
    let t = layer_tar(&[("a", b"1")]);
    fake.image("1", &[(gzip(&t), GZ)], &[Digest::of(b"not the layer")]);
    let (_d, s) = service();
    let err = s
        .pull(&fake.reference("1"), None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "wrong diff id {} calculated on extraction",
            Digest::of(&t)
        )),
        "{err}"
    );
    let layers = std::fs::read_dir(s.store().root().join("layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 0, "no unpacked layer or staging directory stays");
}

#[tokio::test]
async fn index_selects_the_host_platform() {
    let fake = Fake::start().await;
    let host = Platform::host();
    let other = if host.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let mut entries = Vec::new();
    for (arch, content) in [
        (other, b"other".as_slice()),
        (host.architecture.as_str(), b"host"),
        ("unknown", b"unknown"),
    ] {
        let t = layer_tar(&[("arch", content)]);
        let (md, m) = fake.image(&format!("m-{arch}"), &[(gzip(&t), GZ)], &[Digest::of(&t)]);
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md.as_str(), "size": m.len(),
            "platform": {"architecture": arch, "os": if arch == "unknown" { "unknown" } else { "linux" }},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries})).unwrap();
    let only_other = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entries[0].clone()]})).unwrap();
    {
        let mut st = fake.state.lock().unwrap();
        st.manifests.insert(
            "multi".into(),
            (
                "application/vnd.oci.image.index.v1+json".into(),
                index.clone(),
            ),
        );
        st.manifests.insert(
            Digest::of(&index).to_string(),
            (
                "application/vnd.oci.image.index.v1+json".into(),
                index.clone(),
            ),
        );
        st.manifests.insert(
            Digest::of(&only_other).to_string(),
            (
                "application/vnd.oci.image.index.v1+json".into(),
                only_other.clone(),
            ),
        );
        st.manifests.insert(
            "foreign".into(),
            ("application/vnd.oci.image.index.v1+json".into(), only_other),
        );
    }
    let (_d, s) = service();
    let rec = s.pull(&fake.reference("multi"), None, None).await.unwrap();
    // The record points at the index (the repo digest), the layers are the host's.
    assert_eq!(rec.target, Digest::of(&index));
    let img = s.open_image(rec, None).unwrap();
    assert_eq!(std::fs::read(img.layers[0].join("arch")).unwrap(), b"host");
    assert_eq!(
        img.image_ref(),
        format!("{}/app@{}", fake.addr, Digest::of(&index))
    );
    let err = s
        .pull(&fake.reference("foreign"), None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("no match for platform in manifest: not found"),
        "{err}"
    );
}

#[tokio::test]
async fn bearer_tokens_from_basic_credentials() {
    let fake = Fake::start().await;
    let t = layer_tar(&[("a", b"1")]);
    fake.image("1", &[(gzip(&t), GZ)], &[Digest::of(&t)]);
    let creds = Credentials {
        username: "u".into(),
        password: "p".into(),
    };
    fake.state.lock().unwrap().fault.bearer_for = Some(creds.basic_header());
    let (_d, s) = service();
    // Anonymous: the token endpoint refuses.
    let err = s
        .pull(&fake.reference("1"), None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("failed to authorize: failed to fetch anonymous token: unexpected status from GET request to")
            && err.ends_with("401 Unauthorized"),
        "{err}"
    );
    // With a dockerconfigjson keyed by host:port, through ensure_image.
    let mut keyring = Keyring::default();
    keyring
        .add_docker_config(
            format!(
                r#"{{"auths":{{"{}":{{"username":"u","password":"p"}}}}}}"#,
                fake.addr
            )
            .as_bytes(),
        )
        .unwrap();
    let img = s
        .ensure_image(
            &format!("{}/app:1", fake.addr),
            PullPolicy::IfNotPresent,
            &keyring,
        )
        .await
        .unwrap();
    assert!(img.pulled_in.is_some());
    let req = fake
        .state
        .lock()
        .unwrap()
        .token_requests
        .last()
        .cloned()
        .unwrap();
    assert!(
        req.starts_with(&creds.basic_header()) && req.contains("scope=repository%3Aapp%3Apull"),
        "{req}"
    );
    // Present, pulled with credentials this pod also presents: no new pull.
    let again = s
        .ensure_image(
            &format!("{}/app:1", fake.addr),
            PullPolicy::IfNotPresent,
            &keyring,
        )
        .await
        .unwrap();
    assert!(again.pulled_in.is_none());
    // A pod without the credentials must pull again, and is refused.
    let err = s
        .ensure_image(
            &format!("{}/app:1", fake.addr),
            PullPolicy::IfNotPresent,
            &Keyring::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ErrImagePull");
}

#[tokio::test]
async fn kubelet_reasons_for_bad_names_and_never() {
    let (_d, s) = service();
    let err = s
        .ensure_image("Busybox:1", PullPolicy::IfNotPresent, &Keyring::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "InvalidImageName");
    assert_eq!(
        err.to_string(),
        "Failed to apply default image tag \"Busybox:1\": couldn't parse image name \"Busybox:1\": \
         invalid reference format: repository name (library/Busybox) must be lowercase"
    );
    let err = s
        .ensure_image("127.0.0.1:1/app:1", PullPolicy::Never, &Keyring::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ErrImageNeverPull");
    assert_eq!(
        err.to_string(),
        "Container image \"127.0.0.1:1/app:1\" is not present with pull policy of Never"
    );
}

#[tokio::test]
async fn concurrent_requests_for_one_image_pull_it_once() {
    let fake = Fake::start().await;
    let t = layer_tar(&[("a", &vec![1u8; 256 << 10])]);
    fake.image("1", &[(gzip(&t), GZ)], &[Digest::of(&t)]);
    let (_d, s) = service();
    let spec = format!("{}/app:1", fake.addr);
    let keyring = Keyring::default();
    let (a, b) = tokio::join!(
        s.ensure_image(&spec, PullPolicy::IfNotPresent, &keyring),
        s.ensure_image(&spec, PullPolicy::IfNotPresent, &keyring)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.pulled_in.is_some() as u8 + b.pulled_in.is_some() as u8,
        1,
        "exactly one caller pulls"
    );
    let times = a.pulled_in.or(b.pulled_in).unwrap();
    assert!(times.total >= times.pull);
    let gets = fake
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.starts_with("GET /v2/app/blobs/"))
        .count();
    assert_eq!(gets, 2, "config and layer fetched once");
    // Always pulls again, but fetches no blob it has.
    let again = s
        .ensure_image(&spec, PullPolicy::Always, &keyring)
        .await
        .unwrap();
    assert!(again.pulled_in.is_some());
    let gets = fake
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.starts_with("GET /v2/app/blobs/"))
        .count();
    assert_eq!(gets, 2);
    assert_eq!(again.layers, a.layers);
}

#[tokio::test]
async fn a_cancelled_pull_leaves_no_ingest() {
    let fake = Fake::start().await;
    // Incompressible, so the layer blob arrives in many slow pieces.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..(64 << 10))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let t = layer_tar(&[("a", &noise)]);
    let layer = gzip(&t);
    fake.image("1", &[(layer.clone(), GZ)], &[Digest::of(&t)]);
    fake.state.lock().unwrap().fault.slow = Some(Digest::of(&layer).to_string());
    let (_d, s) = service();
    let spec = format!("{}/app:1", fake.addr);
    let s2 = s.clone();
    let pull = tokio::spawn(async move {
        s2.ensure_image(&spec, PullPolicy::IfNotPresent, &Keyring::default())
            .await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ingest_empty(&s) {
        assert!(
            std::time::Instant::now() < deadline,
            "the download never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Cancelling (the pod is deleted) stops the pull and removes its partial download.
    pull.abort();
    assert!(pull.await.unwrap_err().is_cancelled());
    assert!(ingest_empty(&s));
    assert!(s.store().records().unwrap().is_empty());
}

#[tokio::test]
async fn opening_the_store_spares_a_pull_in_progress() {
    let fake = Fake::start().await;
    let t = layer_tar(&[(
        "a",
        &(0..(48u32 << 10))
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect::<Vec<_>>(),
    )]);
    let layer = gzip(&t);
    fake.image("1", &[(layer.clone(), GZ)], &[Digest::of(&t)]);
    fake.state.lock().unwrap().fault.slow = Some(Digest::of(&layer).to_string());
    let (_d, s) = service();
    let spec = format!("{}/app:1", fake.addr);
    let s2 = s.clone();
    let pull = tokio::spawn(async move {
        s2.ensure_image(&spec, PullPolicy::IfNotPresent, &Keyring::default())
            .await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ingest_empty(&s) {
        assert!(
            std::time::Instant::now() < deadline,
            "the download never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // What `podrun images` does meanwhile: open the store, which clears only abandoned debris.
    podrun_images::Store::open(s.store().root()).unwrap();
    assert!(!ingest_empty(&s), "the download in progress was removed");
    let image = pull.await.unwrap().unwrap();
    assert!(image.pulled_in.is_some());
}

#[tokio::test]
async fn redirected_blobs_get_no_credentials() {
    let fake = Fake::start().await;
    let storage = Fake::start().await;
    let t = layer_tar(&[("a", b"1")]);
    fake.image("1", &[(gzip(&t), GZ)], &[Digest::of(&t)]);
    // The storage serves the same blobs, without asking for credentials.
    storage.state.lock().unwrap().blobs = fake.state.lock().unwrap().blobs.clone();
    let creds = Credentials {
        username: "u".into(),
        password: "p".into(),
    };
    {
        let mut st = fake.state.lock().unwrap();
        st.fault.bearer_for = Some(creds.basic_header());
        st.fault.redirect_blobs = Some(format!("http://{}", storage.addr));
    }
    let (_d, s) = service();
    s.pull(&fake.reference("1"), Some(creds), None)
        .await
        .unwrap();
    let seen = storage.state.lock().unwrap().requests.clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|r| !r.ends_with("with credentials")),
        "{seen:?}"
    );
    let origin = fake.state.lock().unwrap().requests.clone();
    assert!(
        origin
            .iter()
            .any(|r| r.starts_with("GET /v2/app/blobs/") && r.ends_with("with credentials")),
        "{origin:?}"
    );
}
