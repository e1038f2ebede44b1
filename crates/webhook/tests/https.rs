//! End to end over real TLS on 127.0.0.1: a hyper + rustls client that trusts only the
//! generated CA sends AdmissionReviews and checks the decoded patch by applying it.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use podrun_inject::{MeshConfig, NativeSidecars};
use podrun_webhook::{FailurePolicy, ServingCert, Webhook, serve};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

struct Server {
    addr: std::net::SocketAddr,
    ca_pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(max_body: usize) -> Server {
    let cert = ServingCert::generate(&["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let tls = cert.server_config().unwrap();
    let config = MeshConfig {
        native_sidecars: NativeSidecars::True,
        ..MeshConfig::default()
    };
    let webhook = Arc::new(Webhook::new(config, FailurePolicy::Fail).with_max_body(max_body));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(serve(listener, tls, webhook, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        ca_pem: cert.ca_pem,
        stop: Some(tx),
        task,
    }
}

async fn request(
    server: &Server,
    method: &str,
    path: &str,
    ctype: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(server.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the generated CA succeeds");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, bytes)
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(val(c)) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-6d8f7c9b54-", "labels": {"app": "web", "pod-template-hash": "6d8f7c9b54"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-6d8f7c9b54", "controller": true, "uid": "1"}],
            "managedFields": [{"manager": "kube-controller-manager"}]},
        "spec": {
            "initContainers": [{"name": "agent", "image": "example/agent:1", "restartPolicy": "Always", "futureField": {"x": 1}}],
            "containers": [{"name": "web", "image": "example/web:1", "ports": [{"containerPort": 8080}]}],
        },
    })
}

fn review(object: Value) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "3c1d2a9e-7f41-4a5e-9b9c-2f6d1d8e0a11",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "object": object},
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_over_tls_returns_a_patch_that_injects_the_pod() {
    let mut server = start(64 * 1024).await;

    let (status, body) = request(&server, "GET", "/healthz", "text/plain", vec![]).await;
    assert_eq!((status, body.as_slice()), (200, b"ok\n".as_slice()));

    let (status, body) = request(
        &server,
        "POST",
        "/inject/cluster/east/net/net1",
        "application/json",
        review(pod()),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let resp: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(resp["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(resp["kind"], "AdmissionReview");
    let r = &resp["response"];
    assert_eq!(r["uid"], "3c1d2a9e-7f41-4a5e-9b9c-2f6d1d8e0a11");
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    let patch_bytes = decode_base64(r["patch"].as_str().unwrap());
    let patch: json_patch::Patch = serde_json::from_slice(&patch_bytes).unwrap();

    // Apply as the API server would, to the object including managedFields.
    let mut patched = pod();
    json_patch::patch(&mut patched, &patch).unwrap();
    let inits = patched["spec"]["initContainers"].as_array().unwrap();
    let names: Vec<&str> = inits.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["istio-init", "istio-proxy", "agent"]);
    assert_eq!(inits[1]["restartPolicy"], "Always");
    // Unknown fields of other init containers survive.
    assert_eq!(inits[2]["futureField"], json!({"x": 1}));
    assert_eq!(inits[2]["restartPolicy"], "Always");
    assert_eq!(
        patched["metadata"]["managedFields"],
        pod()["metadata"]["managedFields"]
    );
    assert_eq!(
        patched["metadata"]["labels"]["service.istio.io/canonical-name"],
        "web"
    );
    assert_eq!(
        patched["metadata"]["labels"]["topology.istio.io/network"],
        "net1"
    );
    let env = inits[1]["env"].as_array().unwrap();
    let find = |n: &str| {
        env.iter()
            .find(|e| e["name"] == n)
            .map(|e| e["value"].clone())
    };
    assert_eq!(find("ISTIO_META_CLUSTER_ID"), Some(json!("east")));
    assert_eq!(
        find("ISTIO_META_OWNER"),
        Some(json!(
            "kubernetes://apis/apps/v1/namespaces/shop/deployments/web"
        ))
    );

    // Malformed and foreign requests: 400 with a message, and the server keeps serving.
    let (status, body) = request(
        &server,
        "POST",
        "/inject",
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("could not decode body as JSON"));
    let foreign = json!({"apiVersion": "v1", "kind": "Pod"})
        .to_string()
        .into_bytes();
    let (status, body) = request(&server, "POST", "/inject", "application/json", foreign).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("AdmissionReview"));
    let (status, _) = request(&server, "POST", "/inject", "application/json", vec![]).await;
    assert_eq!(status, 400);
    let (status, _) = request(&server, "POST", "/inject", "text/yaml", review(pod())).await;
    assert_eq!(status, 415);
    let (status, _) = request(
        &server,
        "POST",
        "/elsewhere",
        "application/json",
        review(pod()),
    )
    .await;
    assert_eq!(status, 404);

    // Oversized body: 413.
    let (status, body) = request(
        &server,
        "POST",
        "/inject",
        "application/json",
        vec![b' '; 80 * 1024],
    )
    .await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));

    let (status, body) = request(&server, "GET", "/metrics", "text/plain", vec![]).await;
    assert_eq!(status, 200);
    let metrics = String::from_utf8(body).unwrap();
    assert!(
        metrics.contains("sidecar_injection_success_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sidecar_injection_requests_total 6"),
        "{metrics}"
    );

    server.stop.take().unwrap().send(()).unwrap();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn client_without_the_ca_is_refused() {
    let server = start(1024).await;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let res = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    assert!(
        res.is_err(),
        "handshake must fail without trusting the generated CA"
    );
}
