//! Upstream sockets and the HTTP connection pool.
//!
//! Every upstream socket gets the configured `SO_MARK` (so capture rules can skip
//! it) and, for inbound deliveries, the source address `127.0.0.6` / `::6` (so the
//! first `ISTIO_OUTPUT` rule lets it through instead of looping it back to 15006).
//! The pool keeps idle HTTP/1 sockets per destination and one multiplexed HTTP/2
//! connection per destination.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http2;
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
    stream: TcpStream,
    local: SocketAddr,
    since: Instant,
}

/// An HTTP/1 upstream connection, exclusively the user's until given back with
/// [`Pool::release_http1`].
#[derive(Debug)]
pub struct H1Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Its local address (`%UPSTREAM_LOCAL_ADDRESS%`).
    pub local: SocketAddr,
    /// Whether it carried a request before (a stale one may fail at once).
    pub reused: bool,
}

/// Whether an idle upstream socket is still open and quiet: the server neither closed
/// it nor sent anything unasked.
pub(crate) fn idle_and_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

#[derive(Clone)]
struct SharedH2 {
    sender: http2::SendRequest<ReqBody>,
    local: SocketAddr,
    closed: watch::Receiver<bool>,
}

/// A checked-out HTTP/2 upstream connection.
pub struct Checkout {
    /// A clone of the shared connection's sender.
    pub sender: http2::SendRequest<ReqBody>,
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

    /// An HTTP/1 connection to `dst`: an idle pooled one, else a new one (`fresh`:
    /// always a new one, to retry after a pooled one turned out to be stale).
    pub async fn checkout_http1(
        &self,
        dst: SocketAddr,
        source: Option<IpAddr>,
        fresh: bool,
        now: Instant,
    ) -> Result<H1Conn, UpstreamFailure> {
        let key = Key {
            dst,
            source,
            protocol: UpstreamProtocol::Http1,
        };
        if !fresh && let Some(c) = self.take_idle_http1(key, now) {
            return Ok(c);
        }
        let (stream, local) = self.connect(dst, source).await?;
        Ok(H1Conn {
            stream,
            local,
            reused: false,
        })
    }

    /// A new connection to `dst` and its local address.
    async fn connect(
        &self,
        dst: SocketAddr,
        source: Option<IpAddr>,
    ) -> Result<(TcpStream, SocketAddr), UpstreamFailure> {
        let stream = self.connector.connect(dst, source).await?;
        let local = stream
            .local_addr()
            .map_err(|e| UpstreamFailure::ConnectFailed {
                message: os_error_text(&e),
            })?;
        Ok((stream, local))
    }

    fn take_idle_http1(&self, key: Key, now: Instant) -> Option<H1Conn> {
        let mut state = self.lock();
        let idle = state.h1.get_mut(&key)?;
        while let Some(entry) = idle.pop() {
            let fresh = now.saturating_duration_since(entry.since) < self.idle_timeout;
            if fresh && idle_and_open(&entry.stream) {
                return Some(H1Conn {
                    stream: entry.stream,
                    local: entry.local,
                    reused: true,
                });
            }
        }
        None
    }

    /// Keeps an HTTP/1 connection whose last exchange ended cleanly for the next
    /// request to `dst` from `source`.
    pub fn release_http1(&self, dst: SocketAddr, source: Option<IpAddr>, conn: H1Conn) {
        let key = Key {
            dst,
            source,
            protocol: UpstreamProtocol::Http1,
        };
        let mut state = self.lock();
        let idle = state.h1.entry(key).or_default();
        if idle.len() < self.max_idle {
            idle.push(IdleH1 {
                stream: conn.stream,
                local: conn.local,
                since: Instant::now(),
            });
        }
    }

    /// The shared HTTP/2 connection to `dst`, opened if there is none (`fresh`: always
    /// a new one).
    pub async fn checkout_http2(
        &self,
        dst: SocketAddr,
        source: Option<IpAddr>,
        fresh: bool,
    ) -> Result<Checkout, UpstreamFailure> {
        let key = Key {
            dst,
            source,
            protocol: UpstreamProtocol::Http2,
        };
        if !fresh && let Some(c) = self.take_http2(key) {
            return Ok(c);
        }
        let (stream, local) = self.connect(dst, source).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake::<_, ReqBody>(TokioIo::new(stream))
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
            sender,
            local,
            reused: false,
            closed: Some(closed),
        })
    }

    fn take_http2(&self, key: Key) -> Option<Checkout> {
        let mut state = self.lock();
        let shared = state.h2.get(&key)?;
        if shared.sender.is_closed() {
            state.h2.remove(&key);
            return None;
        }
        Some(Checkout {
            sender: shared.sender.clone(),
            local: shared.local,
            reused: true,
            closed: Some(shared.closed.clone()),
        })
    }

    /// Closes idle connections older than the idle timeout; returns how many remain.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut state = self.lock();
        let timeout = self.idle_timeout;
        state.h1.retain(|_, idle| {
            idle.retain(|e| {
                now.saturating_duration_since(e.since) < timeout && idle_and_open(&e.stream)
            });
            !idle.is_empty()
        });
        state.h2.retain(|_, s| !s.sender.is_closed());
        state.h1.values().map(Vec::len).sum::<usize>() + state.h2.len()
    }
}
