//! Body wrappers: a byte-counting request body and the response body that writes
//! the request's access-log line once its last byte was sent (or the client left).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// A body that counts the data bytes passing through it.
#[derive(Debug)]
pub struct Counted<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    /// Wraps `inner`, adding every data frame's length to `count`.
    pub fn new(inner: B, count: Arc<AtomicU64>) -> Self {
        Counted { inner, count }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a response body ended, reported to its [`Finish`] hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every byte was handed to the downstream connection.
    Complete,
    /// The upstream failed mid-body.
    UpstreamError,
    /// The body was dropped early: the downstream went away.
    DownstreamGone,
}

/// Called once when a response body ends, with the body bytes sent.
pub trait Finish: Send + 'static {
    /// The body ended after `bytes_sent` data bytes.
    fn finish(self: Box<Self>, bytes_sent: u64, ending: Ending);
}

enum Source {
    Upstream(Incoming),
    Local(Option<Bytes>),
}

/// The body of every response sent downstream.
pub struct ResponseBody {
    source: Source,
    sent: u64,
    hook: Option<Box<dyn Finish>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    /// A proxied upstream body.
    pub fn upstream(body: Incoming, hook: Option<Box<dyn Finish>>) -> Self {
        ResponseBody {
            source: Source::Upstream(body),
            sent: 0,
            hook,
        }
    }

    /// A body the proxy generated.
    pub fn local(bytes: Bytes, hook: Option<Box<dyn Finish>>) -> Self {
        ResponseBody {
            source: Source::Local((!bytes.is_empty()).then_some(bytes)),
            sent: 0,
            hook,
        }
    }

    fn end(&mut self, ending: Ending) {
        if let Some(hook) = self.hook.take() {
            hook.finish(self.sent, ending);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.source {
            Source::Upstream(b) => Pin::new(b).poll_frame(cx),
            Source::Local(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.sent += d.len() as u64;
                }
                if this.is_end_stream() {
                    this.end(Ending::Complete);
                }
            }
            Poll::Ready(Some(Err(_))) => this.end(Ending::UpstreamError),
            Poll::Ready(None) => this.end(Ending::Complete),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Upstream(b) => b.is_end_stream(),
            Source::Local(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Upstream(b) => b.size_hint(),
            Source::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Bodies of HEAD/204/304 responses are dropped without being polled; an empty
        // body at its end is complete, anything else means the client went away.
        let ending = if self.is_end_stream() {
            Ending::Complete
        } else {
            Ending::DownstreamGone
        };
        self.end(ending);
    }
}
