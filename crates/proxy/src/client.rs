//! Tiny HTTP/1.1 client for `podrun proxy wait` and `podrun proxy request`: the
//! injected container has no curl, so the proxy binary talks to itself.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Failure of a local admin request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connect, write or read failed.
    #[error("request to {addr} failed: {message}")]
    Io {
        /// Target.
        addr: SocketAddr,
        /// What failed.
        message: String,
    },
    /// No answer within the timeout.
    #[error("request to {0} timed out")]
    Timeout(SocketAddr),
    /// The path or method is not valid.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Sends one request with an empty body and returns status and body text.
pub async fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(StatusCode, String), ClientError> {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let req = Request::builder()
        .method(method)
        .uri(&path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
    let io_err = |e: &dyn std::fmt::Display| ClientError::Io {
        addr,
        message: e.to_string(),
    };
    let exchange = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| io_err(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| io_err(&e))?;
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.map_err(|e| io_err(&e))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| io_err(&e))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout(addr))?
}

/// Polls `GET /healthz/ready` on `addr` every `period` (each try bounded by `period`)
/// until it answers 200 or `timeout` passes. Returns the last failure on timeout.
pub async fn wait_ready(
    addr: SocketAddr,
    timeout: Duration,
    period: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let started = Instant::now();
        let last = match request("GET", addr, "/healthz/ready", period).await {
            Ok((s, _)) if s == StatusCode::OK => return Ok(()),
            Ok((s, body)) => format!("not ready: {s} {}", body.trim()),
            Err(e) => e.to_string(),
        };
        let next = started + period;
        if next >= deadline {
            return Err(last);
        }
        tokio::time::sleep_until(next).await;
    }
}
