//! A small route-netlink client: just the requests a pod network needs (bridge, veth
//! pair, link up, IPv4 address, default route, link removal) and a wait for a link's
//! removal.
//!
//! It speaks `NETLINK_ROUTE` over a plain blocking socket. A netlink socket belongs to the
//! network namespace of the thread that created it, so a socket opened on a thread that
//! has just entered a pod's namespace keeps configuring that namespace from any thread.
//! Requests that do not depend on each other's answers go out in one `sendto` (the kernel
//! handles them in order and acknowledges each). Kept small on purpose: the few messages
//! are fixed, and a hand-written encoder avoids an async stack (and a helper process) per
//! sandbox.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;

const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;

const IFF_UP: u32 = 1;
const NLA_F_NESTED: u16 = 0x8000;

/// Length of `struct ifinfomsg`.
const IFINFOMSG_LEN: usize = 16;
/// Length of `struct nlmsghdr`.
const NLMSGHDR_LEN: usize = 16;

/// The link notification group (`RTNLGRP_LINK`).
const RTNLGRP_LINK: u32 = 1;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const SO_ATTACH_FILTER: libc::c_int = 26;

/// A route-netlink socket in the network namespace it was opened in.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    /// Reply buffer, allocated on the first request and reused by the next ones.
    buf: Vec<u8>,
}

/// A request under construction: header, fixed part, attributes.
struct Message {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Message {
    fn new(kind: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set by `finish`
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        Self {
            buf,
            nests: Vec::new(),
        }
    }

    /// Appends a `struct ifinfomsg`.
    fn ifinfo(&mut self, index: u32, flags: u32, change: u32) {
        self.buf.push(libc::AF_UNSPEC as u8);
        self.buf.push(0);
        self.buf.extend_from_slice(&0u16.to_ne_bytes()); // device type
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    fn attr_str(&mut self, kind: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v);
    }

    fn attr_u32(&mut self, kind: u16, v: u32) {
        self.attr(kind, &v.to_ne_bytes());
    }

    fn begin(&mut self, kind: u16) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    /// Opens the peer of a veth: an attribute whose payload is an `ifinfomsg` followed by
    /// attributes (not flagged as nested, as the kernel expects).
    fn begin_peer(&mut self) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&VETH_INFO_PEER.to_ne_bytes());
        self.ifinfo(0, 0, 0);
    }

    fn end(&mut self) {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the fd is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A kernel that never answers must not hang a pod worker.
        set_receive_timeout(&fd, std::time::Duration::from_secs(5));
        Ok(Self {
            fd,
            seq: 1,
            buf: Vec::new(),
        })
    }

    /// Sends one request and waits for its acknowledgement; a kernel error becomes the
    /// matching `io::Error`. Returns the payload of a non-ack reply (for `GETLINK`).
    fn request(&mut self, msg: Message) -> io::Result<Option<Vec<u8>>> {
        let mut reply = None;
        let mut acks = self.exchange(vec![msg], |_, body| reply = Some(body.to_vec()))?;
        acks.pop()
            .unwrap_or_else(|| Err(io::Error::other("no netlink acknowledgement")))?;
        Ok(reply)
    }

    /// Sends `msgs` in one `sendto` and waits until each is acknowledged: one result per
    /// message, in order (the kernel carries on after a failed one). `on_reply` sees the
    /// payload of every non-ack reply with the index of its request.
    fn exchange(
        &mut self,
        msgs: Vec<Message>,
        mut on_reply: impl FnMut(usize, &[u8]),
    ) -> io::Result<Vec<io::Result<()>>> {
        let first = self.seq.wrapping_add(1);
        let mut bytes = Vec::new();
        for msg in msgs {
            self.seq = self.seq.wrapping_add(1);
            bytes.extend_from_slice(&msg.finish(self.seq));
        }
        let count = self.seq.wrapping_sub(first).wrapping_add(1) as usize;
        // SAFETY: an all-zero sockaddr_nl is valid; we set the family.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: sendto with a buffer and address that live across the call.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr() as *const libc::c_void,
                bytes.len(),
                0,
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        // Large enough for any reply to these requests (a link dump of one link is a few
        // KiB); kept across requests so a sandbox does not allocate one per round trip.
        if self.buf.is_empty() {
            self.buf = vec![0u8; 32 * 1024];
        }
        let mut results: Vec<Option<io::Result<()>>> = (0..count).map(|_| None).collect();
        let mut pending = count;
        while pending > 0 {
            let n = recv_into(&self.fd, &mut self.buf)?;
            let buf = &self.buf[..n];
            let mut off = 0usize;
            while off + NLMSGHDR_LEN <= n {
                let (len, kind, rseq) = header(&buf[off..]);
                if len < NLMSGHDR_LEN || off + len > n {
                    return Err(io::Error::other("malformed netlink reply"));
                }
                let body = &buf[off + NLMSGHDR_LEN..off + len];
                let index = rseq.wrapping_sub(first) as usize;
                if index < count && results[index].is_none() {
                    let done = match kind {
                        NLMSG_ERROR => {
                            let code = body
                                .get(0..4)
                                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                                .unwrap_or(-libc::EPROTO);
                            Some(if code == 0 {
                                Ok(())
                            } else {
                                Err(io::Error::from_raw_os_error(-code))
                            })
                        }
                        NLMSG_DONE => Some(Ok(())),
                        _ => {
                            on_reply(index, body);
                            None
                        }
                    };
                    if let Some(r) = done {
                        results[index] = Some(r);
                        pending -= 1;
                    }
                }
                off += (len + 3) & !3;
            }
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// The index of link `name`, or `None` if there is none.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut m = Message::new(RTM_GETLINK, 0);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        match self.request(m) {
            Ok(Some(body)) if body.len() >= IFINFOMSG_LEN => Ok(Some(u32::from_ne_bytes([
                body[4], body[5], body[6], body[7],
            ]))),
            Ok(_) => Err(io::Error::other(format!("no reply for link {name}"))),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates bridge `name` with the hardware address `mac` and sets it up. Returns
    /// false if it already existed.
    ///
    /// A bridge made without an address of its own takes the lowest address among its
    /// ports and changes it whenever that port leaves; one given at creation is kept
    /// (the kernel marks it as set), so the gateway's address in every pod's ARP cache
    /// stays right while pods come and go.
    pub fn create_bridge(&mut self, name: &str, mac: [u8; 6]) -> io::Result<bool> {
        let mut m = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, IFF_UP, IFF_UP);
        m.attr_str(IFLA_IFNAME, name);
        m.attr(IFLA_ADDRESS, &mac);
        m.begin(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "bridge");
        m.end();
        match self.request(m) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a veth pair: `host` here, attached to `master` and up; `peer` created
    /// directly inside the network namespace `peer_netns` (so it never needs a rename). The
    /// peer is left down: the kernel refuses to open one end of a pair before both exist,
    /// so it is brought up from inside its namespace ([`Netlink::configure_pod`]).
    ///
    /// Both ends get one transmit and one receive queue, which is what the kernel leaves a
    /// veth with anyway; asked for up front, it is not reduced to that after registration,
    /// where every reduction waits for an RCU grace period while holding the RTNL lock
    /// (which every other sandbox being made then waits for). The host end is a bridge
    /// port and needs no IPv6 address: its autoconfiguration is turned off before it comes up
    /// (see `no_ipv6_autoconf`). All in
    /// one round trip.
    pub fn create_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        peer_netns: RawFd,
    ) -> io::Result<()> {
        let mut m = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, host);
        m.attr_u32(IFLA_MASTER, master);
        m.attr_u32(IFLA_NUM_TX_QUEUES, 1);
        m.attr_u32(IFLA_NUM_RX_QUEUES, 1);
        m.begin(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth");
        m.begin(IFLA_INFO_DATA);
        m.begin_peer();
        m.attr_str(IFLA_IFNAME, peer);
        m.attr_u32(IFLA_NET_NS_FD, peer_netns as u32);
        m.attr_u32(IFLA_NUM_TX_QUEUES, 1);
        m.attr_u32(IFLA_NUM_RX_QUEUES, 1);
        m.end();
        m.end();
        m.end();
        let mut up = Message::new(RTM_NEWLINK, 0);
        up.ifinfo(0, IFF_UP, IFF_UP);
        up.attr_str(IFLA_IFNAME, host);
        let mut results = self
            .exchange(vec![m, no_ipv6_autoconf(0, Some(host)), up], |_, _| {})?
            .into_iter();
        // A failed creation fails the rest too: report the first error.
        results.next().unwrap_or(Ok(()))?;
        results.next().map(ipv6_optional).unwrap_or(Ok(()))?;
        results.next().unwrap_or(Ok(()))
    }

    /// Sets link `index`'s hardware address to `mac`. The kernel then counts it as set by
    /// the user: a bridge keeps it whatever ports come and go.
    pub fn set_address(&mut self, index: u32, mac: [u8; 6]) -> io::Result<()> {
        let mut m = Message::new(RTM_NEWLINK, 0);
        m.ifinfo(index, 0, 0);
        m.attr(IFLA_ADDRESS, &mac);
        self.request(m).map(drop)
    }

    /// Sets link `index` up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.request(set_up_message(index)).map(drop)
    }

    /// Adds `ip/prefix` to link `index`. Returns false if it was already there.
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<bool> {
        match self.request(address_message(index, ip, prefix)) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds the default route via `gateway` out of link `oif`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr, oif: u32) -> io::Result<()> {
        self.request(default_route_message(gateway, oif)).map(drop)
    }

    /// A pod's side of its network in one round trip: no IPv6 address autoconfiguration
    /// on `eth0` (see `no_ipv6_autoconf`), `lo` and `eth0` up, `ip/prefix` on `eth0`, and the
    /// default route via `gateway` out of `eth0`. A failure names its step.
    pub fn configure_pod(
        &mut self,
        eth0: u32,
        ip: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    ) -> Result<(), (&'static str, io::Error)> {
        const STEPS: [&str; 5] = [
            "turn off IPv6 autoconfiguration on eth0",
            "set lo up",
            "set eth0 up",
            "add pod address",
            "add default route",
        ];
        let msgs = vec![
            no_ipv6_autoconf(eth0, None),
            set_up_message(LOOPBACK_INDEX),
            set_up_message(eth0),
            address_message(eth0, ip, prefix),
            default_route_message(gateway, eth0),
        ];
        let results = self.exchange(msgs, |_, _| {}).map_err(|e| (STEPS[0], e))?;
        for (i, (step, r)) in STEPS.into_iter().zip(results).enumerate() {
            if i == 0 { ipv6_optional(r) } else { r }.map_err(|e| (step, e))?;
        }
        Ok(())
    }

    /// Deletes link `name` (for a veth, both ends). Returns false if there was none.
    pub fn delete_link(&mut self, name: &str) -> io::Result<bool> {
        let mut m = Message::new(RTM_DELLINK, 0);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        match self.request(m) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// `lo`'s index in every network namespace.
const LOOPBACK_INDEX: u32 = 1;

/// Turns off IPv6 address autoconfiguration on link `index` (or `name`, with index 0):
/// no link-local address, so no duplicate address detection, router solicitation or
/// multicast listener reports. The pod network is IPv4; those would only be flooded
/// through the bridge to every other pod, each by a kernel worker holding the RTNL lock
/// that sandboxes being made wait for. Must come before the link is up (an address made
/// then stays).
fn no_ipv6_autoconf(index: u32, name: Option<&str>) -> Message {
    let mut m = Message::new(RTM_NEWLINK, 0);
    m.ifinfo(index, 0, 0);
    if let Some(name) = name {
        m.attr_str(IFLA_IFNAME, name);
    }
    m.begin(IFLA_AF_SPEC);
    m.begin(libc::AF_INET6 as u16);
    m.attr(IFLA_INET6_ADDR_GEN_MODE, &[IN6_ADDR_GEN_MODE_NONE]);
    m.end();
    m.end();
    m
}

/// A kernel without IPv6 has no autoconfiguration to turn off.
fn ipv6_optional(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => Ok(()),
        other => other,
    }
}

fn set_up_message(index: u32) -> Message {
    let mut m = Message::new(RTM_NEWLINK, 0);
    m.ifinfo(index, IFF_UP, IFF_UP);
    m
}

fn address_message(index: u32, ip: Ipv4Addr, prefix: u8) -> Message {
    let mut m = Message::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    m.buf.push(libc::AF_INET as u8);
    m.buf.push(prefix);
    m.buf.push(0); // flags
    m.buf.push(0); // scope: universe
    m.buf.extend_from_slice(&index.to_ne_bytes());
    m.attr(IFA_LOCAL, &ip.octets());
    m.attr(IFA_ADDRESS, &ip.octets());
    m
}

fn default_route_message(gateway: Ipv4Addr, oif: u32) -> Message {
    let mut m = Message::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    m.buf.push(libc::AF_INET as u8);
    m.buf.push(0); // dst_len: default route
    m.buf.push(0); // src_len
    m.buf.push(0); // tos
    m.buf.push(RT_TABLE_MAIN);
    m.buf.push(RTPROT_BOOT);
    m.buf.push(0); // scope: universe
    m.buf.push(RTN_UNICAST);
    m.buf.extend_from_slice(&0u32.to_ne_bytes());
    m.attr(RTA_GATEWAY, &gateway.octets());
    m.attr_u32(RTA_OIF, oif);
    m
}

/// Length, type and sequence number of the message at the start of `buf` (at least a
/// header long).
fn header(buf: &[u8]) -> (usize, u16, u32) {
    let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let kind = u16::from_ne_bytes([buf[4], buf[5]]);
    let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
    (len, kind, seq)
}

/// One `recv` into `buf`, retried on EINTR.
fn recv_into(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: recv into a buffer we own.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sets how long a `recv` on `fd` may block.
fn set_receive_timeout(fd: &OwnedFd, timeout: std::time::Duration) {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt with a valid timeval of the right size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
}

/// A subscription to the removal of one link, made while the link still exists: the
/// kernel's link notifications reach the socket only if they announce that link's
/// removal (a socket filter drops the rest in the kernel), so many of these can wait at
/// once without each receiving every other link's news.
#[derive(Debug)]
pub struct LinkRemoval {
    nl: Netlink,
    name: String,
}

impl LinkRemoval {
    /// Watches link `name` (in the calling thread's network namespace). `None` if there is
    /// no such link. Only a removal after this returns is seen.
    pub fn watch(name: &str) -> io::Result<Option<Self>> {
        let mut nl = Netlink::open()?;
        let Some(index) = nl.link_index(name)? else {
            return Ok(None);
        };
        // Classic BPF loads are big-endian; the message is in host order.
        let kind = u32::from(u16::from_be_bytes(RTM_DELLINK.to_ne_bytes()));
        let index_be = u32::from_be_bytes(index.to_ne_bytes());
        let ld = |size: u32, k: u32| libc::sock_filter {
            code: (libc::BPF_LD | size | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        };
        let ret = |k: u32| libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let mut program = [
            ld(libc::BPF_H, 4), // nlmsg_type
            jeq(kind, 0, 3),
            ld(libc::BPF_W, (NLMSGHDR_LEN + 4) as u32), // ifi_index
            jeq(index_be, 0, 1),
            ret(u32::MAX),
            ret(0),
        ];
        let prog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        let group = RTNLGRP_LINK;
        // SAFETY: setsockopt with a filter program and a group number that live across
        // the calls.
        let failed = unsafe {
            libc::setsockopt(
                nl.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_FILTER,
                &prog as *const libc::sock_fprog as *const libc::c_void,
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            ) != 0
                || libc::setsockopt(
                    nl.fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    NETLINK_ADD_MEMBERSHIP,
                    &group as *const u32 as *const libc::c_void,
                    std::mem::size_of::<u32>() as libc::socklen_t,
                ) != 0
        };
        if failed {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(Self {
            nl,
            name: name.to_string(),
        }))
    }

    /// Waits up to `timeout` for the link's removal. Returns whether it went.
    pub fn wait(self, timeout: std::time::Duration) -> io::Result<bool> {
        let deadline = std::time::Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            set_receive_timeout(&self.nl.fd, left.max(std::time::Duration::from_millis(1)));
            match recv_into(&self.nl.fd, &mut buf) {
                // Only the removal passes the filter.
                Ok(n) if n >= NLMSGHDR_LEN && header(&buf).1 == RTM_DELLINK => return Ok(true),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                // Notifications were lost: ask instead (on another socket, as this one's
                // filter would drop the answer).
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    if Netlink::open()?.link_index(&self.name)?.is_none() {
                        return Ok(true);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_length_prefixed_and_padded() {
        let mut m = Message::new(RTM_GETLINK, 0);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, "eth0");
        let bytes = m.finish(7);
        // 16 header + 16 ifinfomsg + (4 + 5 → padded 12) attribute
        assert_eq!(bytes.len(), 44);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 44);
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes([bytes[32], bytes[33]]), 9);
    }

    /// Runs `f` on a thread of its own in a new, empty network namespace (which goes with
    /// the thread).
    fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: it creates a network namespace"
        );
        std::thread::spawn(move || {
            // SAFETY: unshare(2) of this thread's network namespace only.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            f()
        })
        .join()
        .unwrap()
    }

    /// A bridge and veth pairs `<name>`/`<name>p` in the calling thread's namespace.
    fn pairs(nl: &mut Netlink, names: &[&str]) {
        nl.create_bridge("br", [0x02, 0, 0, 0, 0, 1]).unwrap();
        let br = nl.link_index("br").unwrap().unwrap();
        let here = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
        for name in names {
            nl.create_veth(name, br, &format!("{name}p"), here.as_raw_fd())
                .unwrap();
        }
    }

    #[test]
    fn a_pod_is_configured_in_one_round_trip_and_a_failure_names_its_step() {
        in_private_netns(|| {
            let mut nl = Netlink::open().unwrap();
            pairs(&mut nl, &["v"]);
            let eth0 = nl.link_index("vp").unwrap().unwrap();
            let ip = Ipv4Addr::new(10, 1, 0, 2);
            let gw = Ipv4Addr::new(10, 1, 0, 1);
            nl.configure_pod(eth0, ip, 24, gw).unwrap();
            // IPv6 works here (lo has ::1) but neither end of the pair made an address.
            let v6 = std::fs::read_to_string("/proc/thread-self/net/if_inet6").unwrap();
            let links: Vec<&str> = v6
                .lines()
                .filter_map(|l| l.split_whitespace().last())
                .collect();
            assert!(links.contains(&"lo"), "{v6}");
            assert!(!links.contains(&"v") && !links.contains(&"vp"), "{v6}");
            // Everything is in place: the address and route exist already.
            assert!(!nl.add_address(eth0, ip, 24).unwrap());
            let again = nl.add_default_route(gw, eth0).unwrap_err();
            assert_eq!(again.raw_os_error(), Some(libc::EEXIST));
            // Each answer is matched to its request: here only the last one fails.
            let (step, e) = nl
                .configure_pod(eth0, Ipv4Addr::new(10, 1, 0, 3), 24, gw)
                .unwrap_err();
            assert_eq!(
                (step, e.raw_os_error()),
                ("add default route", Some(libc::EEXIST))
            );
            let (step, e) = nl.configure_pod(9999, ip, 24, gw).unwrap_err();
            assert_eq!(
                (step, e.raw_os_error()),
                (
                    "turn off IPv6 autoconfiguration on eth0",
                    Some(libc::ENODEV)
                )
            );
        });
    }

    #[test]
    fn a_link_removal_is_seen_and_other_links_removals_are_not() {
        in_private_netns(|| {
            let mut nl = Netlink::open().unwrap();
            pairs(&mut nl, &["a", "b"]);
            assert!(LinkRemoval::watch("missing").unwrap().is_none());
            let watch = LinkRemoval::watch("a").unwrap().unwrap();
            assert!(nl.delete_link("b").unwrap());
            // The socket filter drops b's removal: nothing arrives.
            assert!(!watch.wait(std::time::Duration::from_millis(200)).unwrap());
            let watch = LinkRemoval::watch("a").unwrap().unwrap();
            // Deleting one end removes the pair: the watch on the other end sees it.
            assert!(nl.delete_link("ap").unwrap());
            assert!(watch.wait(std::time::Duration::from_secs(10)).unwrap());
            assert_eq!(nl.link_index("a").unwrap(), None);
        });
    }

    #[test]
    fn nested_attributes_carry_their_total_length() {
        let mut m = Message::new(RTM_NEWLINK, 0);
        m.ifinfo(0, 0, 0);
        m.begin(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth");
        m.end();
        let bytes = m.finish(1);
        let nest_len = u16::from_ne_bytes([bytes[32], bytes[33]]);
        assert_eq!(nest_len as usize, 4 + 12);
        let kind = u16::from_ne_bytes([bytes[34], bytes[35]]);
        assert_eq!(kind, IFLA_LINKINFO | NLA_F_NESTED);
    }
}
