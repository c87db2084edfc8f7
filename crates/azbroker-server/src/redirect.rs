//! The loopback redirect receiver of browser sign-ins: a one-shot HTTP listener on
//! `127.0.0.1:0` whose first request carrying `code` or `error` completes the sign-in. The browser
//! gets a short page saying to return to the terminal. Implements core's [`RedirectListener`], so
//! the upstream crate receives the callback without knowing any HTTP server.
//!
//! It also listens on `[::1]` at the same port when it can, since browsers may resolve
//! `localhost` to ::1 first. The listeners stop when the callback is delivered or its receiver
//! is dropped (flow cancelled or timed out). Other requests (a favicon) get 404.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use azbroker_core::BoxFuture;
use azbroker_core::login::{CallbackParams, Redirect, RedirectListener};
use http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Binds loopback redirect listeners.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopbackRedirect;

type Slot = Arc<Mutex<Option<oneshot::Sender<CallbackParams>>>>;

impl RedirectListener for LoopbackRedirect {
    fn listen(&self) -> BoxFuture<'static, Result<Redirect, String>> {
        Box::pin(async {
            let v4 = TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
            let port = v4.local_addr().map_err(|e| e.to_string())?.port();
            // `localhost` may resolve to ::1 first in the browser: answer there too when we can.
            let v6 = TcpListener::bind(("::1", port)).await.ok();
            let (tx, rx) = oneshot::channel();
            let slot: Slot = Arc::new(Mutex::new(Some(tx)));
            let app = Router::new().route("/", axum::routing::get(callback)).with_state(slot);
            // Both listeners stop once the callback future completes or is dropped.
            let stop = CancellationToken::new();
            for listener in std::iter::once(v4).chain(v6) {
                let (app, stop) = (app.clone(), stop.clone());
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
                });
            }
            let guard = stop.drop_guard();
            Ok(Redirect {
                redirect_uri: format!("http://localhost:{port}/"),
                callback: Box::pin(async move {
                    let _guard = guard;
                    rx.await.map_err(|_| "the redirect listener stopped".to_owned())
                }),
            })
        })
    }
}

async fn callback(State(slot): State<Slot>, Query(params): Query<HashMap<String, String>>) -> Response {
    if !params.contains_key("code") && !params.contains_key("error") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let sender = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    let delivered = sender.is_some_and(|tx| tx.send(params).is_ok());
    let text = if delivered {
        "azbroker received the sign-in. You can close this window and return to the terminal."
    } else {
        "This sign-in is no longer awaited by azbroker. Start it again from the terminal."
    };
    Html(format!(
        "<!DOCTYPE html><html><head><title>azbroker</title></head><body><p>{text}</p></body></html>"
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_callback_with_a_code_completes() {
        let redirect = LoopbackRedirect.listen().await.unwrap();
        assert!(redirect.redirect_uri.starts_with("http://localhost:"));
        let base = redirect.redirect_uri.replace("localhost", "127.0.0.1");
        let http = reqwest_like_get(&format!("{base}favicon.ico")).await;
        assert!(http.starts_with("HTTP/1.1 404"), "{http}");
        let http = reqwest_like_get(&format!("{base}?code=abc&state=xyz")).await;
        assert!(http.starts_with("HTTP/1.1 200") && http.contains("return to the terminal"), "{http}");
        let params = redirect.callback.await.unwrap();
        assert_eq!((params["code"].as_str(), params["state"].as_str()), ("abc", "xyz"));
    }

    #[tokio::test]
    async fn dropping_the_callback_closes_the_listener() {
        let redirect = LoopbackRedirect.listen().await.unwrap();
        let port: u16 =
            redirect.redirect_uri.trim_end_matches('/').rsplit(':').next().unwrap().parse().unwrap();
        assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok());
        drop(redirect);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the listener is still accepting after its callback was dropped");
    }

    /// A minimal HTTP/1.1 GET over a TCP stream (the server crate has no HTTP client).
    async fn reqwest_like_get(url: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
        s.write_all(format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }
}
