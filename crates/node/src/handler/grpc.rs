//! gRPC health probes: `grpc.health.v1.Health/Check` over HTTP/2 with prior knowledge. The
//! two tiny protobuf messages are encoded and decoded by hand.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{HandlerOutcome, USER_AGENT, go_duration};

/// `HealthCheckResponse.ServingStatus` names.
const STATUS_NAMES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// gRPC status code names, indexed by code.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

pub(super) async fn probe(addr: SocketAddr, service: &str, timeout: Duration) -> HandlerOutcome {
    let t = go_duration(timeout);
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return HandlerOutcome::Failure(format!(
                "timeout: failed to connect service \"{addr}\" within {t}: dial tcp {addr}: connect: {}",
                super::go_errno_text(&e)
            ));
        }
        Err(_) => {
            return HandlerOutcome::Failure(format!(
                "timeout: failed to connect service \"{addr}\" within {t}: context deadline exceeded"
            ));
        }
    };
    match tokio::time::timeout(timeout, check(tcp, addr, service)).await {
        Ok(Ok(1)) => HandlerOutcome::Success,
        Ok(Ok(status)) => HandlerOutcome::Failure(format!(
            "service unhealthy (responded with \"{}\")",
            STATUS_NAMES
                .get(status as usize)
                .copied()
                .unwrap_or("UNKNOWN")
        )),
        Ok(Err(CheckError::Status { code: 12, message })) => HandlerOutcome::Failure(format!(
            "this server does not implement the grpc health protocol (grpc.health.v1.Health): {message}"
        )),
        Ok(Err(CheckError::Status { code, message })) => HandlerOutcome::Failure(format!(
            "error: health rpc probe failed: rpc error: code = {} desc = {message}",
            CODE_NAMES.get(code as usize).copied().unwrap_or("Unknown")
        )),
        Ok(Err(CheckError::Transport(e))) => {
            HandlerOutcome::Failure(format!("error: health rpc probe failed: {e}"))
        }
        Err(_) => {
            HandlerOutcome::Failure(format!("timeout: health rpc did not complete within {t}"))
        }
    }
}

enum CheckError {
    Status { code: u32, message: String },
    Transport(String),
}

async fn check(
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    service: &str,
) -> Result<u64, CheckError> {
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| CheckError::Transport(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let req = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, USER_AGENT)
        .body(Full::new(frame(&encode_request(service))))
        .map_err(|e| CheckError::Transport(e.to_string()))?;
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| CheckError::Transport(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(CheckError::Transport(format!(
                "unexpected HTTP status code {}",
                parts.status.as_u16()
            )));
        }
        let collected = body
            .collect()
            .await
            .map_err(|e| CheckError::Transport(e.to_string()))?;
        let trailers = collected.trailers().cloned();
        let data = collected.to_bytes();
        // A "trailers-only" response carries grpc-status in the headers.
        let status_from = trailers
            .as_ref()
            .filter(|t| t.contains_key("grpc-status"))
            .unwrap_or(&parts.headers);
        let code = status_from
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| CheckError::Transport("missing grpc-status".into()))?;
        if code != 0 {
            let message = status_from
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            return Err(CheckError::Status {
                code,
                message: percent_decode(&message),
            });
        }
        let msg = unframe(&data)
            .ok_or_else(|| CheckError::Transport("malformed gRPC response".into()))?;
        decode_status(msg)
            .ok_or_else(|| CheckError::Transport("malformed HealthCheckResponse".into()))
    }
    .await;
    conn.abort();
    result
}

/// `HealthCheckRequest { string service = 1; }`.
fn encode_request(service: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !service.is_empty() {
        out.push(0x0a);
        put_varint(&mut out, service.len() as u64);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

/// The 5-byte gRPC message prefix: uncompressed flag + big-endian length.
fn frame(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.extend_from_slice(&[0]);
    b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    b.extend_from_slice(msg);
    b.freeze()
}

fn unframe(data: &[u8]) -> Option<&[u8]> {
    if data.len() < 5 || data[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    data.get(5..5 + len)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// `HealthCheckResponse { ServingStatus status = 1; }`; absent means UNKNOWN (0). Unknown
/// fields are skipped, as protobuf requires.
fn decode_status(mut buf: &[u8]) -> Option<u64> {
    let mut status = 0;
    while !buf.is_empty() {
        let key = get_varint(&mut buf)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = get_varint(&mut buf)?,
            (_, 0) => {
                get_varint(&mut buf)?;
            }
            (_, 1) => buf = buf.get(8..)?,
            (_, 2) => {
                let len = get_varint(&mut buf)? as usize;
                buf = buf.get(len..)?;
            }
            (_, 5) => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response_round_trip_by_hand() {
        assert_eq!(encode_request(""), Vec::<u8>::new());
        assert_eq!(encode_request("svc"), vec![0x0a, 3, b's', b'v', b'c']);
        let framed = frame(&[0x08, 0x01]);
        assert_eq!(&framed[..], &[0, 0, 0, 0, 2, 0x08, 0x01]);
        assert_eq!(unframe(&framed).and_then(decode_status), Some(1));
        // Unknown fields are skipped; a missing status is UNKNOWN.
        assert_eq!(decode_status(&[0x12, 0x01, b'x', 0x08, 0x02]), Some(2));
        assert_eq!(decode_status(&[]), Some(0));
        assert_eq!(decode_status(&[0x08]), None);
        assert_eq!(percent_decode("not%20here"), "not here");
    }
}
