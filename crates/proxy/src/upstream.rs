//! Upstream sockets and the HTTP connection pool.
//!
//! Every upstream socket gets the configured `SO_MARK` (so capture rules can skip
//! it) and, for inbound deliveries, the source address `127.0.0.6` / `::6` (so the
//! first `ISTIO_OUTPUT` rule lets it through instead of looping it back to 15006).
//! The pool keeps idle HTTP/1 connections per destination and one multiplexed
//! HTTP/2 connection per destination.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::Counted;
use crate::route::UpstreamFailure;

/// Request body type sent upstream: the downstream body, counted.
pub type ReqBody = Counted<Incoming>;

/// How to open upstream sockets.
#[derive(Debug)]
pub struct Connector {
    mark: Option<u32>,
    connect_timeout: Duration,
    mark_warned: AtomicBool,
}

/// OS error text without Rust's ` (os error N)` suffix, as strerror prints it.
pub fn os_error_text(err: &io::Error) -> String {
    let s = err.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl Connector {
    /// A connector marking sockets with `mark` and giving up after `connect_timeout`.
    pub fn new(mark: Option<u32>, connect_timeout: Duration) -> Self {
        Connector {
            mark,
            connect_timeout,
            mark_warned: AtomicBool::new(false),
        }
    }

    /// Connects to `dst`, optionally from `source` (port chosen by the kernel).
    pub async fn connect(
        &self,
        dst: SocketAddr,
        source: Option<IpAddr>,
    ) -> Result<TcpStream, UpstreamFailure> {
        let fail = |e: io::Error| UpstreamFailure::ConnectFailed {
            message: os_error_text(&e),
        };
        let socket = if dst.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(fail)?;
        let sock = socket2::SockRef::from(&socket);
        if let Some(mark) = self.mark {
            // SO_MARK needs CAP_NET_ADMIN. A proxy running as UID 1337 without it is
            // still exempt from capture by the owner match, so go on unmarked.
            if let Err(err) = sock.set_mark(mark)
                && !self.mark_warned.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(%err, mark, "cannot set SO_MARK on upstream sockets; relying on the proxy UID for capture exemption");
            }
        }
        if let Some(src) = source {
            if src.is_ipv6() {
                // ::6 is not assigned to any interface; freebind lets us use it anyway.
                sock.set_freebind_v6(true).map_err(fail)?;
            }
            socket.bind(SocketAddr::new(src, 0)).map_err(fail)?;
        }
        let stream = match tokio::time::timeout(self.connect_timeout, socket.connect(dst)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(fail(e)),
            Err(_) => return Err(UpstreamFailure::ConnectTimeout),
        };
        // Latency over throughput: requests and small replies must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Which HTTP version an upstream connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 prior knowledge (h2c).
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    dst: SocketAddr,
    source: Option<IpAddr>,
    protocol: UpstreamProtocol,
}

struct IdleH1 {
    sender: http1::SendRequest<ReqBody>,
    local: SocketAddr,
    since: Instant,
}

#[derive(Clone)]
struct SharedH2 {
    sender: http2::SendRequest<ReqBody>,
    local: SocketAddr,
    closed: watch::Receiver<bool>,
}

/// A sender checked out of the pool.
pub enum Sender {
    /// An HTTP/1 connection, exclusively ours until the response ends.
    Http1(http1::SendRequest<ReqBody>),
    /// A clone of the shared HTTP/2 connection.
    Http2(http2::SendRequest<ReqBody>),
}

/// A checked-out upstream connection.
pub struct Checkout {
    /// The sender.
    pub sender: Sender,
    /// Local address of the upstream socket (`%UPSTREAM_LOCAL_ADDRESS%`).
    pub local: SocketAddr,
    /// Whether the connection was reused from the pool (a stale one may fail at once).
    pub reused: bool,
    /// For HTTP/2: becomes `true` once the upstream connection has ended (the app sent
    /// GOAWAY and its last stream finished, or the connection failed).
    pub closed: Option<watch::Receiver<bool>>,
}

#[derive(Default)]
struct PoolState {
    h1: HashMap<Key, Vec<IdleH1>>,
    h2: HashMap<Key, SharedH2>,
}

/// Upstream HTTP connection pool.
pub struct Pool {
    connector: Connector,
    idle_timeout: Duration,
    max_idle: usize,
    state: Mutex<PoolState>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool over `connector`.
    pub fn new(connector: Connector, idle_timeout: Duration, max_idle: usize) -> Self {
        Pool {
            connector,
            idle_timeout,
            max_idle,
            state: Mutex::new(PoolState::default()),
        }
    }

    /// The connector, for non-HTTP upstream connections.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // The state is a pair of maps of handles; a panic elsewhere cannot leave them
        // half-updated in a way that matters, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns a reusable connection to `dst` or opens a new one.
    pub async fn checkout(
        self: &Arc<Self>,
        dst: SocketAddr,
        source: Option<IpAddr>,
        protocol: UpstreamProtocol,
        now: Instant,
    ) -> Result<Checkout, UpstreamFailure> {
        let key = Key {
            dst,
            source,
            protocol,
        };
        if let Some(c) = self.take_idle(key, now) {
            return Ok(c);
        }
        self.connect_new(key).await
    }

    /// Opens a new connection to `dst`, bypassing idle ones (used to retry after a
    /// pooled connection turned out to be stale).
    pub async fn checkout_fresh(
        self: &Arc<Self>,
        dst: SocketAddr,
        source: Option<IpAddr>,
        protocol: UpstreamProtocol,
    ) -> Result<Checkout, UpstreamFailure> {
        self.connect_new(Key {
            dst,
            source,
            protocol,
        })
        .await
    }

    async fn connect_new(self: &Arc<Self>, key: Key) -> Result<Checkout, UpstreamFailure> {
        let Key {
            dst,
            source,
            protocol,
        } = key;
        let stream = self.connector.connect(dst, source).await?;
        let local = stream
            .local_addr()
            .map_err(|e| UpstreamFailure::ConnectFailed {
                message: os_error_text(&e),
            })?;
        let io = TokioIo::new(stream);
        match protocol {
            UpstreamProtocol::Http1 => {
                let (sender, conn) = http1::Builder::new()
                    .handshake::<_, ReqBody>(io)
                    .await
                    .map_err(|_| UpstreamFailure::ResetBeforeHeaders)?;
                tokio::spawn(async move {
                    if let Err(err) = conn.with_upgrades().await {
                        tracing::debug!(%err, "upstream http1 connection ended");
                    }
                });
                Ok(Checkout {
                    sender: Sender::Http1(sender),
                    local,
                    reused: false,
                    closed: None,
                })
            }
            UpstreamProtocol::Http2 => {
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake::<_, ReqBody>(io)
                    .await
                    .map_err(|_| UpstreamFailure::ResetBeforeHeaders)?;
                let (ended, closed) = watch::channel(false);
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!(%err, "upstream http2 connection ended");
                    }
                    let _ = ended.send(true);
                });
                self.lock().h2.insert(
                    key,
                    SharedH2 {
                        sender: sender.clone(),
                        local,
                        closed: closed.clone(),
                    },
                );
                Ok(Checkout {
                    sender: Sender::Http2(sender),
                    local,
                    reused: false,
                    closed: Some(closed),
                })
            }
        }
    }

    fn take_idle(&self, key: Key, now: Instant) -> Option<Checkout> {
        let mut state = self.lock();
        match key.protocol {
            UpstreamProtocol::Http1 => {
                let idle = state.h1.get_mut(&key)?;
                while let Some(entry) = idle.pop() {
                    let fresh = now.saturating_duration_since(entry.since) < self.idle_timeout;
                    if fresh && entry.sender.is_ready() && !entry.sender.is_closed() {
                        return Some(Checkout {
                            sender: Sender::Http1(entry.sender),
                            local: entry.local,
                            reused: true,
                            closed: None,
                        });
                    }
                }
                None
            }
            UpstreamProtocol::Http2 => {
                let shared = state.h2.get(&key)?;
                if shared.sender.is_closed() {
                    state.h2.remove(&key);
                    return None;
                }
                Some(Checkout {
                    sender: Sender::Http2(shared.sender.clone()),
                    local: shared.local,
                    reused: true,
                    closed: Some(shared.closed.clone()),
                })
            }
        }
    }

    /// Gives an HTTP/1 sender back once its current exchange is over. Runs in the
    /// background: `ready()` resolves when the response body was read to the end, and
    /// fails when the connection closed, in which case it is simply dropped.
    pub fn release_http1(
        self: &Arc<Self>,
        dst: SocketAddr,
        source: Option<IpAddr>,
        local: SocketAddr,
        mut sender: http1::SendRequest<ReqBody>,
    ) {
        let pool = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            let key = Key {
                dst,
                source,
                protocol: UpstreamProtocol::Http1,
            };
            let mut state = pool.lock();
            let idle = state.h1.entry(key).or_default();
            if idle.len() < pool.max_idle {
                idle.push(IdleH1 {
                    sender,
                    local,
                    since: Instant::now(),
                });
            }
        });
    }

    /// Closes idle connections older than the idle timeout; returns how many remain.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut state = self.lock();
        let timeout = self.idle_timeout;
        state.h1.retain(|_, idle| {
            idle.retain(|e| {
                now.saturating_duration_since(e.since) < timeout && !e.sender.is_closed()
            });
            !idle.is_empty()
        });
        state.h2.retain(|_, s| !s.sender.is_closed());
        state.h1.values().map(Vec::len).sum::<usize>() + state.h2.len()
    }
}
