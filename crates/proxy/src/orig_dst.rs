//! Original-destination lookup: the seam between the listeners and iptables.
//!
//! In a pod, the capture rules REDIRECT a connection to 15001/15006 and the kernel
//! remembers where it was going; [`SoOriginalDst`] reads that back with
//! `SO_ORIGINAL_DST`. In-process tests use [`MockOrigDst`] to say where a connection
//! "was going" without any iptables rule.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Mutex;

use tokio::net::TcpStream;

use crate::config::Direction;

/// Finds where an accepted, captured connection was originally addressed.
pub trait OrigDst: Send + Sync + 'static {
    /// The original destination of `stream`, accepted on `direction`'s listener.
    fn original_dst(&self, stream: &TcpStream, direction: Direction) -> io::Result<SocketAddr>;
}

/// Reads the destination recorded by netfilter's REDIRECT (`SO_ORIGINAL_DST`, and its
/// IPv6 twin `IP6T_SO_ORIGINAL_DST`, both option number 80).
#[derive(Debug, Default, Clone, Copy)]
pub struct SoOriginalDst;

/// `SO_ORIGINAL_DST` / `IP6T_SO_ORIGINAL_DST` (linux/netfilter_ipv4.h, netfilter_ipv6/ip6_tables.h).
const SO_ORIGINAL_DST: libc::c_int = 80;

impl OrigDst for SoOriginalDst {
    fn original_dst(&self, stream: &TcpStream, _direction: Direction) -> io::Result<SocketAddr> {
        let fd = stream.as_raw_fd();
        match stream.local_addr()? {
            SocketAddr::V4(_) => original_dst_v4(fd),
            SocketAddr::V6(local) => {
                // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d; its
                // conntrack entry is IPv4, so ask the IPv4 table.
                if local.ip().to_ipv4_mapped().is_some() {
                    original_dst_v4(fd)
                } else {
                    original_dst_v6(fd)
                }
            }
        }
    }
}

fn original_dst_v4(fd: libc::c_int) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket owned by the caller's TcpStream for the duration of
    // the call; `addr`/`len` point to a properly sized, writable sockaddr_in.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    Ok(SocketAddr::V4(SocketAddrV4::new(
        ip,
        u16::from_be(addr.sin_port),
    )))
}

fn original_dst_v6(fd: libc::c_int) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: as above, with a writable sockaddr_in6.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_IPV6,
            SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in6).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let ip = Ipv6Addr::from(addr.sin6_addr.s6_addr);
    Ok(SocketAddr::V6(SocketAddrV6::new(
        ip,
        u16::from_be(addr.sin6_port),
        addr.sin6_flowinfo,
        addr.sin6_scope_id,
    )))
}

/// A settable original destination per listener, for tests without iptables.
#[derive(Debug, Default)]
pub struct MockOrigDst {
    targets: Mutex<HashMap<Direction, SocketAddr>>,
}

impl MockOrigDst {
    /// No destinations yet: lookups fail with `ENOENT`, like an uncaptured connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every connection on `direction`'s listener pretends it was addressed to `dst`.
    pub fn set(&self, direction: Direction, dst: SocketAddr) {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(direction, dst);
    }
}

impl OrigDst for MockOrigDst {
    fn original_dst(&self, _stream: &TcpStream, direction: Direction) -> io::Result<SocketAddr> {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&direction)
            .copied()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }
}

impl<T: OrigDst> OrigDst for std::sync::Arc<T> {
    fn original_dst(&self, stream: &TcpStream, direction: Direction) -> io::Result<SocketAddr> {
        (**self).original_dst(stream, direction)
    }
}
