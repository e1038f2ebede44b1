//! Opaque TCP relay: bytes copied both ways, half-close propagated, idle timeout.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Per-direction copy buffer. Small on purpose: idle memory matters more than peak
/// throughput for a sidecar, and 16 KiB already fills a loopback segment burst.
const BUF_SIZE: usize = 16 * 1024;

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both sides closed their write halves.
    Closed,
    /// One side failed (reset); the other was closed at once.
    Error,
    /// No byte moved in either direction for the idle timeout.
    IdleTimeout,
}

/// Byte counts of a finished relay, seen from downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes read from downstream and sent upstream.
    pub received: u64,
    /// Bytes read from upstream and sent downstream.
    pub sent: u64,
    /// How it ended.
    pub end: RelayEnd,
}

async fn pipe<R, W>(
    mut r: R,
    mut w: W,
    count: &AtomicU64,
    last: &AtomicU64,
    epoch: Instant,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            // Half-close: the peer finished sending, so finish our side towards the
            // other end, and keep the opposite direction running.
            w.shutdown().await?;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Relays between `down` and `up` until both directions closed, one failed, or the
/// connection sat idle for `idle_timeout`.
pub async fn relay(mut down: TcpStream, mut up: TcpStream, idle_timeout: Duration) -> RelayStats {
    let received = AtomicU64::new(0);
    let sent = AtomicU64::new(0);
    let last = AtomicU64::new(0);
    let epoch = Instant::now();
    let (dr, dw) = down.split();
    let (ur, uw) = up.split();
    let both = async {
        tokio::try_join!(
            pipe(dr, uw, &received, &last, epoch),
            pipe(ur, dw, &sent, &last, epoch)
        )
    };
    let idle = async {
        loop {
            let last_ms = last.load(Ordering::Relaxed);
            let deadline = epoch + Duration::from_millis(last_ms) + idle_timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    let end = tokio::select! {
        r = both => if r.is_ok() { RelayEnd::Closed } else { RelayEnd::Error },
        () = idle => RelayEnd::IdleTimeout,
    };
    if end == RelayEnd::Error {
        // Make the surviving side see a reset rather than a clean close, as the
        // failing side did.
        let _ = socket2::SockRef::from(&down).set_linger(Some(Duration::ZERO));
        let _ = socket2::SockRef::from(&up).set_linger(Some(Duration::ZERO));
    }
    RelayStats {
        received: received.load(Ordering::Relaxed),
        sent: sent.load(Ordering::Relaxed),
        end,
    }
}
