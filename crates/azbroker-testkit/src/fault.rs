//! Fault injection for the token endpoint: the public [`Fault`] kinds, the FIFO queue they wait
//! in, and the response each one produces. Faults never touch discovery endpoints.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Frame;

use crate::error::EntraError;
use crate::time::{entra_timestamp, unix_now};

/// Something going wrong upstream, injected with [`crate::FakeEntra::inject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long, then answer normally.
    Latency(Duration),
    /// Answer with this status (meant for 5xx) and a `temporarily_unavailable` body.
    Status(u16),
    /// 429 with `Retry-After: <secs>` and a throttling body.
    Throttle {
        /// Value of the integer `Retry-After` header.
        retry_after_secs: u64,
    },
    /// Abort the connection before a complete response is sent.
    Reset,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 400 `invalid_grant` (AADSTS700082, refresh token expired by inactivity).
    InvalidGrant,
    /// 400 `interaction_required` (AADSTS50076, MFA required).
    InteractionRequired,
}

/// What the token endpoint should do with a request that drew a fault.
pub(crate) enum Outcome {
    /// Sleep, then process the request normally.
    Delay(Duration),
    /// Answer with this response instead of processing the request.
    Respond(Response),
}

impl Fault {
    /// `resource` names the resource in messages that mention one (MFA).
    pub(crate) fn outcome(&self, authority: &str, resource: &str) -> Outcome {
        let respond = |err: EntraError| Outcome::Respond(err.into_response(authority));
        match self {
            Fault::Latency(delay) => Outcome::Delay(*delay),
            Fault::Status(code) => {
                let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                respond(EntraError::new(
                    status,
                    "temporarily_unavailable",
                    90_033,
                    "A transient error has occurred. Please try again.",
                ))
            }
            Fault::Throttle { retry_after_secs } => respond(
                EntraError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    90_055,
                    "There are too many incoming requests. Please try again later.",
                )
                .with_retry_after(*retry_after_secs),
            ),
            Fault::Reset => Outcome::Respond(Response::new(Body::new(AbortBody))),
            Fault::Garbage => Outcome::Respond(garbage()),
            Fault::InvalidGrant => {
                let issued = entra_timestamp(unix_now().saturating_sub(91 * 86_400));
                respond(EntraError::bad_request(
                    "invalid_grant",
                    700_082,
                    format!(
                        "The refresh token has expired due to inactivity. The token was issued on \
                         {issued} and was inactive for 90.00:00:00."
                    ),
                ))
            }
            Fault::InteractionRequired => respond(EntraError::bad_request(
                "interaction_required",
                50_076,
                format!(
                    "Due to a configuration change made by your administrator, or because you moved \
                         to a new location, you must use multi-factor authentication to access '{resource}'."
                ),
            )),
        }
    }
}

/// Faults waiting for token requests, oldest first. An entry with `None` remaining stays at the
/// front (and so blocks later entries) until the queue is cleared.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    entries: VecDeque<(Fault, Option<u32>)>,
}

impl FaultQueue {
    pub(crate) fn push(&mut self, fault: Fault, times: Option<u32>) {
        if times != Some(0) {
            self.entries.push_back((fault, times));
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// The fault for the next token request, if any, consuming one use of it.
    pub(crate) fn take(&mut self) -> Option<Fault> {
        let (fault, remaining) = self.entries.front_mut()?;
        let fault = fault.clone();
        if let Some(n) = remaining {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.entries.pop_front();
            }
        }
        Some(fault)
    }
}

fn garbage() -> Response {
    let mut resp = (
        StatusCode::OK,
        "<!DOCTYPE html><html><head><title>Service Unavailable</title></head>\
         <body><h1>Our services aren't available right now</h1></body></html>",
    )
        .into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    resp
}

/// A body whose first frame is an error. hyper has only buffered the response head when it polls
/// the body, so the error makes it drop the connection before anything reaches the client.
struct AbortBody;

impl HttpBody for AbortBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected reset fault",
        ))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_fifo_and_counts_uses() {
        let mut q = FaultQueue::default();
        q.push(Fault::Garbage, Some(2));
        q.push(Fault::Reset, Some(0));
        q.push(Fault::Status(503), Some(1));
        q.push(Fault::InvalidGrant, None);
        assert_eq!(q.take(), Some(Fault::Garbage));
        assert_eq!(q.take(), Some(Fault::Garbage));
        assert_eq!(q.take(), Some(Fault::Status(503)));
        assert_eq!(q.take(), Some(Fault::InvalidGrant));
        assert_eq!(q.take(), Some(Fault::InvalidGrant));
        q.clear();
        assert_eq!(q.take(), None);
    }
}
