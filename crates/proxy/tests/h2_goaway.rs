//! An app that closes its HTTP/2 connection gracefully (GOAWAY) has the proxy pass
//! the GOAWAY on to the inbound client (Istio #57357), and only on the inbound side.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// An h2c app that answers and, once told, closes its connections gracefully.
async fn app_that_goes_away() -> (std::net::SocketAddr, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let go_away = Arc::new(Notify::new());
    let signal = go_away.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let signal = signal.clone();
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    () = signal.notified() => conn.as_mut().graceful_shutdown(),
                }
                let _ = conn.await;
            });
        }
    });
    (addr, go_away)
}

/// Opens an h2c client through `listener`, makes one request, then reports whether
/// the client connection ends within `wait` after the app goes away.
async fn client_sees_goaway(listener: std::net::SocketAddr, go_away: &Notify) -> bool {
    let stream = TcpStream::connect(listener).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get("http://app.test/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    go_away.notify_waiters();
    let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
    ended.is_ok()
}

#[tokio::test]
async fn app_goaway_reaches_the_inbound_http2_client() {
    let (app, go_away) = app_that_goes_away().await;
    let p = TestProxy::start(config()).await;
    p.inbound_to(app);
    assert!(
        client_sees_goaway(p.addrs.inbound, &go_away).await,
        "the inbound client connection stayed open after the app's GOAWAY"
    );
}

#[tokio::test]
async fn app_goaway_does_not_close_outbound_http2_clients() {
    let (app, go_away) = app_that_goes_away().await;
    let p = TestProxy::start(config()).await;
    p.outbound_to(app);
    // Outbound clients are never sent GOAWAY by the proxy before it exits: the next
    // request simply goes over a new upstream connection.
    let stream = TcpStream::connect(p.addrs.outbound).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    for _ in 0..2 {
        let req = Request::get("http://app.test/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
        go_away.notify_waiters();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!conn.is_finished(), "outbound client connection was closed");
}
