//! A request body that must arrive in time: once the server waits for it, the rest of the body
//! has [`Limits::body_read_timeout`](super::Limits::body_read_timeout) to come, after which
//! reading it fails (the dialect answers 400 and the connection closes). Its timer is set only
//! when a read would wait, so a body that is already there — every normal client's — costs none.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `inner`, failing once it has kept its reader waiting for `after` in all.
pub(crate) struct Deadline<B> {
    inner: B,
    after: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> Deadline<B> {
    pub(crate) fn new(inner: B, after: Duration) -> Self {
        Self { inner, after, timer: None }
    }
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
pub(crate) struct BodyTimedOut;

impl<B> Body for Deadline<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let after = this.after;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
