//! `pods/exec` over WebSocket, as kubectl 1.37 speaks it: the `v5.channel.k8s.io`
//! subprotocol (and `v4.channel.k8s.io`). Every binary message starts with a channel byte:
//! 0 stdin, 1 stdout, 2 stderr, 3 the error channel (one `Status` when the command has
//! ended), 4 resize (`{"Width":…,"Height":…}`); v5 adds 255, a client's close of one of
//! its channels (`[255, 0]` closes stdin).
//!
//! Before the upgrade every error is an API `Status` (the pod is looked up, the container
//! chosen and checked, the node asked to start the command); after it, the end of the
//! command is the `Status` on channel 3 — `Success`, or `Failure` with reason
//! `NonZeroExitCode` and a cause `ExitCode` with the code, which kubectl turns into
//! `command terminated with exit code N` and its own exit code. A client that goes away
//! kills the command.
//!
//! [`options`], [`select`], [`negotiate`], [`decode`], [`encode`] and [`exit_status`]
//! are pure; [`serve`] does the upgrade and relays.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::backend::{Backend, ExecOptions, ExecProcess, ExecRequest, GetOptions, ObjectRef};
use crate::router::{Query, ResourceRequest, parse_bool};
use crate::status::ApiError;

/// The subprotocols served, most preferred first.
pub const PROTOCOLS: [&str; 2] = [V5, V4];
/// `v5.channel.k8s.io`: v4 plus the close channel.
pub const V5: &str = "v5.channel.k8s.io";
/// `v4.channel.k8s.io`: stdin, stdout, stderr, the error channel with a `Status`, resize.
pub const V4: &str = "v4.channel.k8s.io";

/// Channel numbers.
pub const STDIN: u8 = 0;
/// stdout.
pub const STDOUT: u8 = 1;
/// stderr.
pub const STDERR: u8 = 2;
/// The error channel: the command's end as a `Status`.
pub const ERROR: u8 = 3;
/// Terminal resize events.
pub const RESIZE: u8 = 4;
/// v5: the client closes one of its channels.
pub const CLOSE: u8 = 255;

/// How long a terminal client's first size is waited for before the command starts.
const FIRST_RESIZE: Duration = Duration::from_secs(1);

/// How long output is still read once the command has exited while something it started
/// keeps its stdout or stderr open; each read starts the wait again.
const DRAIN_IDLE: Duration = Duration::from_millis(500);

/// The `PodExecOptions` of the query, with the kubelet's checks: at least one stream, a
/// command; `stderr` is dropped with `tty` (the terminal carries both).
pub fn options(query: &Query) -> Result<ExecOptions, ApiError> {
    let mut o = ExecOptions::default();
    for (k, v) in &query.other {
        match k.as_str() {
            "command" => o.command.push(v.clone()),
            "container" => o.container = Some(v.clone()),
            "stdin" => o.stdin = parse_bool(k, v)?,
            "stdout" => o.stdout = parse_bool(k, v)?,
            "stderr" => o.stderr = parse_bool(k, v)?,
            "tty" => o.tty = parse_bool(k, v)?,
            _ => {}
        }
    }
    if !o.stdin && !o.stdout && !o.stderr {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    if o.command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    if o.tty {
        o.stderr = false;
    }
    Ok(o)
}

/// The container to run in, or the API server's error for this pod (see
/// [`crate::logs::container`]).
pub fn select(pod: &Value, options: &ExecOptions) -> Result<String, ApiError> {
    crate::logs::container(pod, options.container.as_deref())
}

/// The subprotocol to answer with, from the client's `Sec-WebSocket-Protocol` offers.
pub fn negotiate(headers: &HeaderMap) -> Option<&'static str> {
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    PROTOCOLS.into_iter().find(|p| offered.contains(p))
}

/// A message from the client, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Bytes for the command's stdin.
    Stdin(Bytes),
    /// A new terminal size.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// The client closed one of its channels (v5).
    Close(u8),
    /// An empty message, or one for a channel the client does not write.
    Ignored,
}

/// Decodes a binary message from the client under `protocol`.
pub fn decode(protocol: &str, message: &Bytes) -> Result<Inbound, String> {
    let Some(&channel) = message.first() else {
        return Ok(Inbound::Ignored);
    };
    let data = message.slice(1..);
    match channel {
        STDIN => Ok(Inbound::Stdin(data)),
        RESIZE => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Size {
                width: u16,
                height: u16,
            }
            let size: Size = serde_json::from_slice(&data)
                .map_err(|e| format!("error decoding resize event: {e}"))?;
            Ok(Inbound::Resize {
                width: size.width,
                height: size.height,
            })
        }
        CLOSE if protocol == V5 => match data.first() {
            Some(&c) if data.len() == 1 => Ok(Inbound::Close(c)),
            _ => Err(format!(
                "close stream message must have exactly one stream id, got {} bytes",
                data.len()
            )),
        },
        _ => Ok(Inbound::Ignored),
    }
}

/// A message to the client on `channel`.
pub fn encode(channel: u8, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    out.into()
}

/// The `Status` the error channel carries when the command has exited with `code`, as the
/// kubelet writes it.
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The `Status` the error channel carries when the command could not be run, as the
/// kubelet writes an `InternalError` (kubectl prints `Internal error occurred: …`).
pub fn start_failure(why: &str) -> Value {
    let message = format!("error executing command in container: {why}");
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

/// Whether the request asks for a WebSocket upgrade.
fn is_websocket(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

/// Answers a `pods/exec` request: checks, starts the command, upgrades to WebSocket and
/// relays until the command has ended (or the client has gone).
pub async fn serve<B: Backend>(
    backend: std::sync::Arc<B>,
    rr: &ResourceRequest,
    mut req: Request<Incoming>,
) -> Result<Response<crate::server::Body>, ApiError> {
    let options = options(&rr.query)?;
    let pod = backend
        .get(
            ObjectRef {
                resource: rr.resource,
                namespace: rr.namespace.clone(),
                name: rr.name.clone().unwrap_or_default(),
                subresource: None,
            },
            GetOptions::default(),
        )
        .await?;
    let container = select(&pod, &options)?;
    let headers = req.headers();
    if !is_websocket(headers) {
        // kubectl falls back to SPDY when WebSocket fails; only WebSocket is served, but
        // the fallback gets the error the WebSocket request got.
        backend.exec(pod, container, ExecRequest::Check).await?;
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let Some(protocol) = negotiate(headers) else {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade: unable to negotiate protocol: client supports {:?}, server supports {:?}",
            headers
                .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>(),
            PROTOCOLS
        )));
    };
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(ApiError::bad_request(
            "unable to upgrade: missing Sec-WebSocket-Key",
        ));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    // Errors the node answers at once (the container has ended) come before the upgrade;
    // the command starts after it, once a terminal client has sent its size.
    backend
        .exec(pod.clone(), container.clone(), ExecRequest::Check)
        .await?;
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
                start_and_relay(ws, protocol, &*backend, pod, container, options).await;
            }
            Err(e) => tracing::debug!(error = %e, "exec upgrade failed"),
        }
    });
    let mut r = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(ApiError::internal)?,
    );
    Ok(r)
}

/// Starts the command — in TTY mode with the client's terminal size, which a terminal
/// client sends first (waited for up to [`FIRST_RESIZE`]) — and relays.
async fn start_and_relay<S, B: Backend>(
    ws: WebSocketStream<S>,
    protocol: &str,
    backend: &B,
    pod: Value,
    container: String,
    mut options: ExecOptions,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (sink, mut incoming) = ws.split();
    let mut early = Vec::new();
    if options.tty {
        let first_size = async {
            while let Some(Ok(msg)) = incoming.next().await {
                if let Message::Binary(data) = &msg
                    && let Ok(Inbound::Resize { width, height }) = decode(protocol, data)
                {
                    return Some((width, height));
                }
                if msg.is_close() {
                    return None;
                }
                early.push(msg);
            }
            None
        };
        options.size = tokio::time::timeout(FIRST_RESIZE, first_size)
            .await
            .ok()
            .flatten();
    }
    let command = options.command.clone();
    let process = match backend
        .exec(pod, container, ExecRequest::Start(options))
        .await
    {
        Ok(Some(p)) => p,
        Ok(None) => ExecProcess::failed("the node started no command".into()),
        Err(e) => ExecProcess::failed(e.message),
    };
    let incoming = futures::stream::iter(early.into_iter().map(Ok)).chain(incoming);
    relay(sink, incoming, protocol, &command, process).await;
}

/// Relays between the client and the command until the command has ended and its output
/// is read, then sends the `Status` and closes. Returns early, killing the command, when
/// the client goes.
async fn relay<S>(
    mut sink: futures::stream::SplitSink<WebSocketStream<S>, Message>,
    incoming: impl futures::Stream<Item = Result<Message, WsError>>,
    protocol: &str,
    command: &[String],
    process: ExecProcess,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut incoming = std::pin::pin!(incoming);
    let ExecProcess {
        stdin,
        mut stdout,
        mut stderr,
        resize,
        mut exit,
    } = process;
    // An empty message on the first channel the client reads tells it the streams are
    // open, as the kubelet does.
    let first = if stdout.is_some() {
        STDOUT
    } else if stderr.is_some() {
        STDERR
    } else {
        ERROR
    };
    if sink
        .send(Message::Binary(encode(first, &[])))
        .await
        .is_err()
    {
        return;
    }
    // stdin is written by its own task, so a command that does not read its stdin never
    // stops its output from being relayed.
    let (stdin_tx, mut stdin_rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let mut stdin_tx = Some(stdin_tx);
    if let Some(mut w) = stdin {
        tokio::spawn(async move {
            while let Some(data) = stdin_rx.recv().await {
                if w.write_all(&data).await.is_err() {
                    return;
                }
            }
            let _ = w.shutdown().await;
        });
    } else {
        stdin_tx = None;
    }
    let mut out_buf = vec![0u8; 32 * 1024];
    let mut err_buf = vec![0u8; 32 * 1024];
    let mut code: Option<Result<i32, String>> = None;
    let mut drain = Box::pin(tokio::time::sleep(Duration::MAX));
    loop {
        if code.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        tokio::select! {
            msg = incoming.next() => match msg {
                Some(Ok(Message::Binary(data))) => match decode(protocol, &data) {
                    Ok(Inbound::Stdin(data)) => {
                        if let Some(tx) = &stdin_tx {
                            let _ = tx.send(data);
                        }
                    }
                    Ok(Inbound::Resize { width, height }) => resize(width, height),
                    Ok(Inbound::Close(STDIN)) => stdin_tx = None,
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "exec: bad message from the client"),
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            n = read_some(&mut stdout, &mut out_buf) => {
                if !forward(&mut sink, &mut stdout, STDOUT, &out_buf, n).await {
                    return;
                }
                if code.is_some() {
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_IDLE);
                }
            }
            n = read_some(&mut stderr, &mut err_buf) => {
                if !forward(&mut sink, &mut stderr, STDERR, &err_buf, n).await {
                    return;
                }
                if code.is_some() {
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_IDLE);
                }
            }
            c = &mut exit, if code.is_none() => {
                code = Some(c);
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_IDLE);
            }
            () = &mut drain, if code.is_some() => break,
        }
    }
    let status = match code {
        Some(Ok(code)) => exit_status(command, code),
        Some(Err(why)) => start_failure(&why),
        None => start_failure("the command's end was not learnt"),
    };
    let body = serde_json::to_vec(&status).unwrap_or_default();
    let _ = sink.send(Message::Binary(encode(ERROR, &body))).await;
    // A normal closure: the client's readers see the end of their streams, not an error.
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    // Wait (briefly) for the client's close so the connection ends cleanly.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(m)) = incoming.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}

/// Reads from `r` if it is still open; pending forever once it is closed.
async fn read_some(
    r: &mut Option<std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Sends what was read on `channel`, or closes the stream at its end. False when the
/// client is gone.
async fn forward<S>(
    sink: &mut futures::stream::SplitSink<WebSocketStream<S>, Message>,
    stream: &mut Option<std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>>,
    channel: u8,
    buf: &[u8],
    n: std::io::Result<usize>,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match n {
        Ok(0) | Err(_) => {
            *stream = None;
            true
        }
        Ok(n) => sink
            .send(Message::Binary(encode(channel, &buf[..n])))
            .await
            .is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Query {
        Query {
            other: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Query::default()
        }
    }

    #[test]
    fn options_from_kubectls_query() {
        let o = options(&query(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo hi"),
            ("container", "sleep"),
            ("stderr", "true"),
            ("stdout", "true"),
        ]))
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert_eq!(o.container.as_deref(), Some("sleep"));
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        let t = options(&query(&[
            ("command", "sh"),
            ("stdin", "true"),
            ("stdout", "true"),
            ("stderr", "true"),
            ("tty", "true"),
        ]))
        .unwrap();
        assert!(t.tty && t.stdin && !t.stderr, "a terminal carries stderr");
        let none = options(&query(&[("command", "ls")])).unwrap_err();
        assert_eq!(
            none.message,
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert!(options(&query(&[("stdout", "true")])).is_err());
        assert!(options(&query(&[("command", "ls"), ("stdout", "yes please")])).is_err());
    }

    #[test]
    fn frames_decode_and_encode() {
        let msg = |b: &[u8]| Bytes::copy_from_slice(b);
        assert_eq!(
            decode(V5, &msg(b"\x00hello")).unwrap(),
            Inbound::Stdin(Bytes::from_static(b"hello"))
        );
        assert_eq!(
            decode(V5, &msg(b"\x04{\"Width\":132,\"Height\":43}")).unwrap(),
            Inbound::Resize {
                width: 132,
                height: 43
            }
        );
        assert_eq!(decode(V5, &msg(&[255, 0])).unwrap(), Inbound::Close(0));
        assert!(decode(V5, &msg(&[255])).is_err());
        assert!(decode(V5, &msg(&[255, 0, 1])).is_err());
        // v4 has no close channel.
        assert_eq!(decode(V4, &msg(&[255, 0])).unwrap(), Inbound::Ignored);
        assert_eq!(decode(V5, &msg(&[])).unwrap(), Inbound::Ignored);
        assert_eq!(decode(V5, &msg(b"\x01out")).unwrap(), Inbound::Ignored);
        assert!(decode(V5, &msg(b"\x04{\"Width\":-1}")).is_err());
        assert_eq!(&encode(STDERR, b"err\n")[..], b"\x02err\n");
        assert_eq!(&encode(STDOUT, b"")[..], b"\x01");
    }

    #[test]
    fn exit_statuses_are_the_kubelets() {
        let cmd = ["sh".to_string(), "-c".into(), "exit 3".into()];
        assert_eq!(
            exit_status(&cmd, 0),
            json!({"metadata": {}, "status": "Success"})
        );
        let failed = exit_status(&cmd, 3);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"],
            json!([{"reason": "ExitCode", "message": "3"}])
        );
        assert_eq!(
            failed["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }

    #[test]
    fn subprotocols_are_negotiated() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v4.channel.k8s.io, v5.channel.k8s.io"),
        );
        assert_eq!(negotiate(&h), Some(V5));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        assert_eq!(negotiate(&h), Some(V4));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("base64.channel.k8s.io"),
        );
        assert_eq!(negotiate(&h), None);
        let mut up = HeaderMap::new();
        up.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        up.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(is_websocket(&up));
        up.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(!is_websocket(&up));
    }

    #[test]
    fn containers_are_checked_as_the_api_server_does() {
        let pod = json!({
            "metadata": {"name": "sleep"},
            "spec": {"nodeName": "n", "containers": [{"name": "sleep"}, {"name": "istio-proxy"}]},
        });
        let opts = |c: Option<&str>| ExecOptions {
            container: c.map(str::to_owned),
            ..ExecOptions::default()
        };
        assert_eq!(select(&pod, &opts(Some("sleep"))).unwrap(), "sleep");
        assert_eq!(
            select(&pod, &opts(Some("nope"))).unwrap_err().message,
            "container nope is not valid for pod sleep"
        );
        assert!(select(&pod, &opts(None)).is_err());
    }
}
