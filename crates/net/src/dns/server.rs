//! The embedded DNS server: UDP and TCP on one address (the bridge IP, port 53),
//! cluster names answered from a shared [`DnsView`], everything else forwarded verbatim
//! to the host's resolvers.
//!
//! Forwarding relays the client's own bytes and the upstream's answer unchanged, so
//! nothing the host resolver says (EDNS, DNSSEC bits, truncation) is lost or re-encoded.
//!
//! The server runs on a thread and a single-threaded Tokio runtime of its own, so a
//! podrun busy with hundreds of pods still answers in milliseconds: a reply that waits
//! for a busy runtime makes the pod's resolver wait its whole timeout (1 s or more).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, setsockopt, socket, sockopt,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::{DnsView, Lookup};

/// TTL of cluster answers: short, because endpoints change as pods come and go.
const CLUSTER_TTL: u32 = 5;

/// How long one upstream gets to answer a forwarded query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest UDP message accepted (EDNS payloads are at most this in practice).
const MAX_UDP: usize = 4096;

/// How long a cluster name asked by a client that no podrun's view claims yet waits for
/// one to claim it (its podrun publishing the view that lists the pod) before it is
/// answered from the views at hand.
const OWNER_WAIT: Duration = Duration::from_millis(500);

/// How often the published views are read again during [`OWNER_WAIT`].
const OWNER_POLL: Duration = Duration::from_millis(20);

/// How long a client that waited [`OWNER_WAIT`] in vain (the host, a hostNetwork pod)
/// is answered without waiting again.
const UNOWNED_MEMORY: Duration = Duration::from_secs(30);

/// A running DNS server; dropping it stops the listeners (the sockets are closed when
/// the drop returns).
pub struct DnsServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the answering code shares across queries.
struct Shared {
    view: Arc<RwLock<DnsView>>,
    domain: String,
    upstreams: Vec<SocketAddr>,
    peers: Option<PathBuf>,
    /// Clients no view claimed within [`OWNER_WAIT`], and when that was found.
    unowned: Mutex<HashMap<IpAddr, Instant>>,
}

// === impl DnsServer ===

impl DnsServer {
    /// Binds UDP and TCP on `addr` and serves until dropped. `upstreams` are the host's
    /// resolvers; the server's own address is left out so a query never loops back to
    /// it. `peers` is the directory where other podruns on the host publish their views
    /// (one file per process id, see [`DnsView::render`]): a cluster name this view does
    /// not know is looked up there before it is NXDOMAIN, so one server answers for
    /// every podrun sharing the bridge.
    pub async fn start(
        addr: SocketAddr,
        view: Arc<RwLock<DnsView>>,
        domain: &str,
        upstreams: &[SocketAddr],
        peers: Option<&Path>,
    ) -> std::io::Result<Self> {
        Self::bind(addr, view, domain, upstreams, peers)
    }

    /// [`DnsServer::start`] without awaiting: the sockets are bound when this returns,
    /// and served on a thread of the server's own (no runtime needed by the caller).
    ///
    /// Both sockets may be bound before the address exists on any interface (the bridge
    /// gets it with the first pod), so the server can answer from the first packet a pod
    /// ever sends. They share the port with the other podruns on the host
    /// (`SO_REUSEPORT`): every instance serves, each answering for all of them through
    /// `peers`, and one exiting leaves the others answering with no gap.
    pub fn bind(
        addr: SocketAddr,
        view: Arc<RwLock<DnsView>>,
        domain: &str,
        upstreams: &[SocketAddr],
        peers: Option<&Path>,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (udp, tcp, addr) = {
            let _inside = runtime.enter();
            let udp = shared_socket(addr, SockType::Datagram)?;
            let udp = Arc::new(UdpSocket::from_std(std::net::UdpSocket::from(udp))?);
            let addr = udp.local_addr()?;
            let tcp = shared_socket(addr, SockType::Stream)?;
            nix::sys::socket::listen(&tcp, Backlog::new(128).map_err(std::io::Error::from)?)
                .map_err(std::io::Error::from)?;
            let tcp = TcpListener::from_std(std::net::TcpListener::from(tcp))?;
            (udp, tcp, addr)
        };
        let shared = Arc::new(Shared {
            view,
            domain: domain.to_string(),
            upstreams: upstreams.iter().copied().filter(|u| *u != addr).collect(),
            peers: peers.map(Path::to_path_buf),
            unowned: Mutex::new(HashMap::new()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("cluster-dns".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::spawn(serve_udp(udp, shared.clone()));
                    tokio::spawn(accept_tcp(tcp, shared));
                    let _ = stopped.await;
                });
                // Dropping the runtime ends every task and closes the sockets.
                drop(runtime);
            })?;
        tracing::info!(%addr, "cluster DNS listening");
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Joined so the sockets are closed when the drop returns: the kernel then hands
        // every query to the servers that remain.
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// Answers UDP queries, each in a task of its own, until the runtime ends.
async fn serve_udp(udp: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
            continue;
        };
        let query = buf[..n].to_vec();
        let shared = shared.clone();
        let udp = udp.clone();
        tokio::spawn(async move {
            if let Some(reply) = shared.answer(&query, false, peer).await {
                let _ = udp.send_to(&reply, peer).await;
            }
        });
    }
}

/// Accepts TCP connections, each served in a task of its own, until the runtime ends.
async fn accept_tcp(tcp: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, peer)) = tcp.accept().await else {
            continue;
        };
        tokio::spawn(serve_tcp(stream, peer, shared.clone()));
    }
}

/// A non-blocking socket bound to `addr` with `SO_REUSEPORT` (shared with the other
/// podruns' servers) and, for IPv4, `IP_FREEBIND` (bound before the address is up).
fn shared_socket(addr: SocketAddr, kind: SockType) -> std::io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        kind,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    if kind == SockType::Stream {
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    if addr.is_ipv4() {
        setsockopt(&fd, sockopt::IpFreebind, &true)?;
    }
    nix::sys::socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(fd)
}

/// Serves length-prefixed queries on one TCP connection until the client closes it.
async fn serve_tcp(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let Some(reply) = shared.answer(&query, true, peer).await else {
            return;
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return;
        };
        if stream.write_all(&n.to_be_bytes()).await.is_err()
            || stream.write_all(&reply).await.is_err()
        {
            return;
        }
    }
}

// === impl Shared ===

impl Shared {
    /// The reply bytes for one query from `client`, or `None` when there is nothing to
    /// say (garbage in, or every upstream silent).
    async fn answer(&self, query: &[u8], tcp: bool, client: SocketAddr) -> Option<Vec<u8>> {
        let request = match Message::from_vec(query) {
            Ok(m) => m,
            Err(_) => {
                // A header we can read gets FORMERR; anything shorter is dropped.
                let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
                return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                    .to_vec()
                    .ok();
            }
        };
        let Some(q) = request.queries.first().cloned() else {
            return self.reply(&request, ResponseCode::FormErr, Vec::new());
        };
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            return self.reply(&request, ResponseCode::NotImp, Vec::new());
        }
        let name = q.name().to_ascii();
        let lookup = self.lookup(&name, client.ip()).await;
        match lookup {
            Lookup::Forward => self
                .forward(query, tcp)
                .await
                .or_else(|| self.reply(&request, ResponseCode::ServFail, Vec::new())),
            Lookup::NxDomain => self.reply(&request, ResponseCode::NXDomain, Vec::new()),
            Lookup::Found(ips) => {
                let wants_a = matches!(q.query_type(), RecordType::A | RecordType::ANY)
                    && matches!(q.query_class(), DNSClass::IN | DNSClass::ANY);
                let answers = if wants_a {
                    ips.into_iter()
                        .map(|ip| {
                            Record::from_rdata(q.name().clone(), CLUSTER_TTL, RData::A(A(ip)))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                self.reply(&request, ResponseCode::NoError, answers)
            }
        }
    }

    /// What `name` is for a query from `client`: the view of the podrun whose pod asked
    /// (this one's, or a live peer's published one). A client no view claims may be a pod
    /// whose podrun has not published it yet: the views are read again for a short while
    /// ([`OWNER_WAIT`]) rather than answer from a view that does not own it. A client
    /// still unclaimed then (the host itself) gets this view and then the first live
    /// peer that knows the name.
    async fn lookup(&self, name: &str, client: IpAddr) -> Lookup {
        let deadline = Instant::now() + OWNER_WAIT;
        loop {
            let fallback = match self.owned_lookup(name, client) {
                Ok(answer) => return answer,
                Err(fallback) => fallback,
            };
            if Instant::now() >= deadline || self.known_unowned(client) {
                self.unowned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(client, Instant::now());
                return fallback;
            }
            tokio::time::sleep(OWNER_POLL).await;
        }
    }

    /// The answer from the view that owns `client` (any answer for a name outside the
    /// cluster domain, where views do not matter), or `Err` with the answer for a client
    /// no view owns.
    fn owned_lookup(&self, name: &str, client: IpAddr) -> Result<Lookup, Lookup> {
        let (own, mine) = {
            let view = self.view.read().unwrap_or_else(|e| e.into_inner());
            let mine = matches!(client, IpAddr::V4(ip) if view.clients.contains(&ip));
            (view.lookup(name, &self.domain), mine)
        };
        if mine || own == Lookup::Forward {
            return Ok(own);
        }
        let peers = self.peer_views();
        if let IpAddr::V4(ip) = client
            && let Some(owner) = peers.iter().find(|v| v.clients.contains(&ip))
        {
            return Ok(owner.lookup(name, &self.domain));
        }
        Err(match own {
            Lookup::NxDomain => peers
                .iter()
                .map(|v| v.lookup(name, &self.domain))
                .find(|l| matches!(l, Lookup::Found(_)))
                .unwrap_or(Lookup::NxDomain),
            other => other,
        })
    }

    /// Whether `client` waited in vain for an owner lately (entries older than
    /// [`UNOWNED_MEMORY`] are forgotten).
    fn known_unowned(&self, client: IpAddr) -> bool {
        let mut unowned = self.unowned.lock().unwrap_or_else(|e| e.into_inner());
        unowned.retain(|_, at| at.elapsed() < UNOWNED_MEMORY);
        unowned.contains_key(&client)
    }

    /// The views live peers have published (a file left by a podrun that died says
    /// nothing any more).
    fn peer_views(&self) -> Vec<DnsView> {
        let Some(dir) = self.peers.as_ref() else {
            return Vec::new();
        };
        let own = std::process::id().to_string();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let pid = entry.file_name().to_string_lossy().into_owned();
                if pid == own
                    || pid.parse::<u32>().is_err()
                    || !Path::new("/proc").join(&pid).exists()
                {
                    return None;
                }
                let text = std::fs::read_to_string(entry.path()).ok()?;
                Some(DnsView::parse(&text))
            })
            .collect()
    }

    fn reply(
        &self,
        request: &Message,
        code: ResponseCode,
        answers: Vec<Record>,
    ) -> Option<Vec<u8>> {
        let mut m = Message::response(request.metadata.id, request.metadata.op_code);
        m.metadata.response_code = code;
        m.metadata.authoritative = true;
        m.metadata.recursion_desired = request.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.add_queries(request.queries.iter().cloned());
        m.add_answers(answers);
        m.to_vec().ok()
    }

    /// Relays the query to each upstream in turn until one answers.
    async fn forward(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        for upstream in &self.upstreams {
            let attempt = async {
                if tcp {
                    forward_tcp(*upstream, query).await
                } else {
                    forward_udp(*upstream, query).await
                }
            };
            match tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await {
                Ok(Ok(reply)) => return Some(reply),
                Ok(Err(e)) => tracing::debug!(%upstream, %e, "upstream DNS failed"),
                Err(_) => tracing::debug!(%upstream, "upstream DNS timed out"),
            }
        }
        None
    }
}

async fn forward_udp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(upstream).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Only the reply to this query counts (same id); stray datagrams are skipped.
        if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn forward_tcp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(query).await?;
    let mut l = [0u8; 2];
    s.read_exact(&mut l).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(l))];
    s.read_exact(&mut reply).await?;
    Ok(reply)
}
