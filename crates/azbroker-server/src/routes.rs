//! The route table, the guard every route passes through, and path canonicalisation.
//!
//! [`Routes`] is one listener's table: a `tower::Service` that canonicalises the path once
//! (collapses repeated slashes and drops `.` segments — MSAL4J sends
//! `//metadata/identity/oauth2/token` —, strips a `/p/{profile}` prefix into a [`PathProfile`]
//! extension, lower-cases, drops a trailing slash; a no-op without allocation for the canonical
//! paths clients normally send), loads the request's [`Runtime`], runs the connection guards, and
//! then matches (listener, method, canonical path) to an endpoint in one `match`, so every dialect
//! gets profile prefixes and lenient matching for free and no route can skip the guards. A path
//! that could name another path once decoded (`%2F`, `%5C`, a backslash, `..`) is never
//! rewritten: it is refused with 400 (a path-normalisation bypass was aad-pod-identity's
//! GHSA-p82q-rxpm-hjpc). The guards and the access policy only ever see the canonical path.
//! Unknown paths and wrong methods get JSON bodies too. This module never looks at query strings
//! or credentials.
//!
//! The table is a plain `match` rather than axum's `Router`: for these dozen fixed paths the
//! router's layers (path trie, method router, boxed handler, content-length pass) cost about
//! 3 000 instructions per request, a tenth of a cache hit (BENCHMARKS.md, "Hot path").

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use azbroker_core::ProfileName;
use http::uri::{PathAndQuery, Uri};
use http::{Method, StatusCode};
use tower::Service;

use crate::dialect::arc::ArcToken;
use crate::dialect::azure_ml::MsiAuthGet;
use crate::dialect::imds::ImdsV2;
use crate::dialect::native::{self, Native};
use crate::dialect::{self, AppService, ArcDialect, AzureMl, CloudShell, Dialect, Imds, ServiceFabric};
use crate::error::RequestError;
use crate::health::{Healthz, Readyz};
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::select::PathProfile;
use crate::state::AppState;
use crate::{body, guard};

/// What every route of one listener shares.
pub(crate) struct RouteCtx {
    pub(crate) app: AppState,
    /// The profile that owns this listener, if any (selection rule 2).
    pub(crate) listener_profile: Option<ProfileName>,
    pub(crate) kind: ListenerKind,
}

/// Which routes a listener serves and which peers count as local there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    /// Plain HTTP on loopback: every dialect but Service Fabric.
    Http,
    /// HTTP on 169.254.169.254:80 (`imds_link_local`): the same routes, and that address counts
    /// as a local peer (a client on this machine connecting to it comes from it).
    LinkLocal,
    /// HTTPS: Service Fabric on `/msi/token`.
    ServiceFabric,
    /// HTTP on a container-facing address (`container_listen`, bound here): the dialects that
    /// carry a secret, served only with a client key; any peer, and `Host` may name this address
    /// or `host.docker.internal`.
    Container(std::net::SocketAddr),
}

/// Something a route serves once the guards have passed.
pub(crate) trait Endpoint: Send + Sync + 'static {
    /// Serves `req` on the generation `rt` the request loaded when it arrived.
    fn call(ctx: Arc<RouteCtx>, rt: Arc<Runtime>, req: Request) -> impl Future<Output = Response> + Send;
}

/// All HTTP dialects + `/healthz` + `/readyz` + `/metrics`. `listener_profile`: the profile that
/// owns this listener, if any (selection rule 2).
pub fn router(state: AppState, listener_profile: Option<ProfileName>) -> Routes {
    Routes::new(RouteCtx { app: state, listener_profile, kind: ListenerKind::Http })
}

/// The routes of the 169.254.169.254:80 listener: the HTTP dialects, with that address accepted
/// as a local peer.
pub fn link_local_router(state: AppState) -> Routes {
    Routes::new(RouteCtx { app: state, listener_profile: None, kind: ListenerKind::LinkLocal })
}

/// The routes of a `container_listen` address (`addr`, as bound): requests need a client key.
pub fn container_router(state: AppState, addr: std::net::SocketAddr) -> Routes {
    Routes::new(RouteCtx { app: state, listener_profile: None, kind: ListenerKind::Container(addr) })
}

/// The routes of the HTTPS listener: Service Fabric on `/msi/token`, plus health.
pub fn service_fabric_router(state: AppState, listener_profile: Option<ProfileName>) -> Routes {
    Routes::new(RouteCtx { app: state, listener_profile, kind: ListenerKind::ServiceFabric })
}

/// One listener's route table (see the module documentation); cheap to clone.
#[derive(Clone)]
pub struct Routes {
    ctx: Arc<RouteCtx>,
}

impl Routes {
    fn new(ctx: RouteCtx) -> Self {
        Self { ctx: Arc::new(ctx) }
    }

    /// Answers `req` (what the connection server calls, without the boxing of the `Service`
    /// impl).
    pub(crate) fn dispatch(&self, req: Request) -> impl Future<Output = Response> + Send + use<> {
        dispatch(self.ctx.clone(), req)
    }

    /// The table behind an axum `Router`, for tests that add layers (`MockConnectInfo`).
    #[cfg(test)]
    pub(crate) fn into_router(self) -> axum::Router {
        axum::Router::new().fallback_service(self)
    }
}

impl Service<Request> for Routes {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let ctx = self.ctx.clone();
        Box::pin(async move { Ok(dispatch(ctx, req).await) })
    }
}

/// Where a (listener, method, canonical path) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Imds,
    AppService,
    AzureMlGet,
    CloudShell,
    Arc,
    Native,
    ImdsV2,
    ServiceFabric,
    KeyOnly,
    Healthz,
    Readyz,
    Metrics,
    MethodNotAllowed,
    NotFound,
}

impl Route {
    fn of(kind: ListenerKind, method: &Method, path: &str) -> Route {
        // As in axum's `get`, HEAD is served where GET is (hyper sends no body for it).
        let get = *method == Method::GET || *method == Method::HEAD;
        let post = *method == Method::POST;
        let when = |allowed: bool, route: Route| if allowed { route } else { Route::MethodNotAllowed };
        let container = matches!(kind, ListenerKind::Container(_));
        match path {
            "/healthz" => return when(get, Route::Healthz),
            "/readyz" => return when(get, Route::Readyz),
            // Per-profile counters are for the host's users, not for containers.
            "/metrics" if !container => return when(get, Route::Metrics),
            // Neither carries a secret, so neither can carry a client key.
            ArcDialect::PATH if container => return Route::KeyOnly,
            p if container && ImdsV2::PATHS.contains(&p) => return Route::KeyOnly,
            _ => {}
        }
        if kind == ListenerKind::ServiceFabric {
            return if path == ServiceFabric::PATH {
                when(get, Route::ServiceFabric)
            } else {
                Route::NotFound
            };
        }
        match path {
            Imds::PATH => when(get, Route::Imds),
            AppService::PATH => when(get, Route::AppService),
            AzureMl::PATH if post => Route::CloudShell,
            AzureMl::PATH => when(get, Route::AzureMlGet),
            CloudShell::PATH => when(get || post, Route::CloudShell),
            ArcDialect::PATH => when(get, Route::Arc),
            native::PATH => when(post, Route::Native),
            p if ImdsV2::PATHS.contains(&p) => Route::ImdsV2,
            _ => Route::NotFound,
        }
    }
}

/// Canonicalise, load the runtime, guard, route.
async fn dispatch(ctx: Arc<RouteCtx>, mut req: Request) -> Response {
    // A refused path is left as sent; it is answered after the guards.
    let refused = canonicalize(&mut req).err();
    // The one load of the config generation this request will see to its end.
    let rt = ctx.app.runtime();
    let checked = match ctx.kind {
        ListenerKind::Container(addr) => guard::check_container(&req, addr),
        kind => guard::check(&req, rt.allow_remote(), kind == ListenerKind::LinkLocal),
    };
    if let Err(error) = checked {
        ctx.app.metrics().denial(error.kind());
        tracing::debug!(
            peer = ?guard::peer(&req),
            reason = error.kind(),
            status = error.status().as_u16(),
            "request refused by guard"
        );
        return dialect::refuse(ctx.kind, req.uri().path(), &error);
    }
    if let Some(BadPath(what)) = refused {
        ctx.app.metrics().denial("bad_path");
        return dialect::refuse(ctx.kind, req.uri().path(), &RequestError::BadPath(what));
    }
    match Route::of(ctx.kind, req.method(), req.uri().path()) {
        Route::Imds => dialect::Token::<Imds>::call(ctx, rt, req).await,
        Route::AppService => dialect::Token::<AppService>::call(ctx, rt, req).await,
        Route::AzureMlGet => MsiAuthGet::call(ctx, rt, req).await,
        Route::CloudShell => dialect::Token::<CloudShell>::call(ctx, rt, req).await,
        Route::Arc => ArcToken::call(ctx, rt, req).await,
        Route::Native => dialect::Token::<Native>::call(ctx, rt, req).await,
        Route::ImdsV2 => ImdsV2::call(ctx, rt, req).await,
        Route::ServiceFabric => dialect::Token::<ServiceFabric>::call(ctx, rt, req).await,
        Route::KeyOnly => KeyOnly::call(ctx, rt, req).await,
        Route::Healthz => Healthz::call(ctx, rt, req).await,
        Route::Readyz => Readyz::call(ctx, rt, req).await,
        Route::Metrics => Metrics::call(ctx, rt, req).await,
        Route::MethodNotAllowed => body::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "This endpoint does not accept that method",
        ),
        Route::NotFound => body::error(StatusCode::NOT_FOUND, "not_found", "No such endpoint on this broker"),
    }
}

/// Marks a request whose path was refused by [`canonicalize`]: what the path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadPath(pub(crate) &'static str);

/// A secret-less dialect on a container listener: refused in that dialect's shape, saying to use
/// the App Service variables of a client key.
struct KeyOnly;

impl Endpoint for KeyOnly {
    async fn call(ctx: Arc<RouteCtx>, _rt: Arc<Runtime>, req: Request) -> Response {
        let error = RequestError::Key(crate::keys::KeyRefusal::Secretless);
        ctx.app.metrics().denial(error.kind());
        dialect::refuse(ctx.kind, req.uri().path(), &error)
    }
}

/// Rewrites the request path to its canonical form; a no-op (no allocation) when it already is.
/// Refuses, leaving the request alone, a path holding `%2F`, `%5C`, a backslash or `..`.
pub(crate) fn canonicalize(req: &mut Request) -> Result<(), BadPath> {
    if is_canonical(req.uri().path()) {
        return Ok(());
    }
    let collapsed = collapse(req.uri().path())?;
    let (profile, rest) = split_profile(&collapsed);
    let trailing = rest.len() > 1 && rest.ends_with('/');
    if matches!(collapsed, Cow::Borrowed(_))
        && profile.is_none()
        && !trailing
        && !rest.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Ok(());
    }
    let rest = if trailing { &rest[..rest.len() - 1] } else { rest };
    let mut canonical = String::with_capacity(rest.len() + 1 + req.uri().query().map_or(0, |q| q.len() + 1));
    if !rest.starts_with('/') {
        canonical.push('/');
    }
    canonical.extend(rest.chars().map(|c| c.to_ascii_lowercase()));
    if let Some(q) = req.uri().query() {
        canonical.push('?');
        canonical.push_str(q);
    }
    let profile = profile.map(|p| PathProfile(p.to_owned()));
    let mut uri_parts = std::mem::take(req.uri_mut()).into_parts();
    // Built from a valid path and query, so this only fails on a bug; keep the original then.
    let original = uri_parts.path_and_query.clone();
    uri_parts.path_and_query = PathAndQuery::try_from(canonical).ok().or(original);
    *req.uri_mut() = Uri::from_parts(uri_parts).unwrap_or_default();
    if let Some(p) = profile {
        req.extensions_mut().insert(p);
    }
    Ok(())
}

/// The paths clients normally send, found in one byte scan: `/`-separated non-empty segments of
/// lower-case letters, digits, `-` and `_`, no trailing slash, no `/p/` prefix. Everything
/// [`canonicalize`] would change or refuse (case, `.`, `%`, `\\`, `//`, a prefix) fails it.
fn is_canonical(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.len() < 2 || bytes[0] != b'/' || bytes.ends_with(b"/") || bytes.starts_with(b"/p/") {
        return false;
    }
    let mut previous = b'/';
    for &b in &bytes[1..] {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
            b'/' if previous != b'/' => {}
            _ => return false,
        }
        previous = b;
    }
    true
}

/// `path` with repeated slashes collapsed and `.` segments dropped (a trailing slash is kept for
/// the caller to drop); borrowed when there is nothing to do. Refuses anything that a server
/// decoding or resolving the path could read as another path.
fn collapse(path: &str) -> Result<Cow<'_, str>, BadPath> {
    if path.contains('\\') {
        return Err(BadPath("a backslash"));
    }
    if path.contains("..") {
        return Err(BadPath("'..'"));
    }
    // An escaped dot too: `%2E%2E` is `..` to whoever decodes it.
    for (escape, what) in [("%2f", "'%2F'"), ("%5c", "'%5C'"), ("%2e", "'%2E'")] {
        if path.as_bytes().windows(3).any(|w| w.eq_ignore_ascii_case(escape.as_bytes())) {
            return Err(BadPath(what));
        }
    }
    let needs_work = path.contains("//") || path.contains("/./") || path.ends_with("/.");
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || path.ends_with('/') {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// Splits `/p/{profile}/rest` into (`profile`, `/rest`); other paths are returned whole.
fn split_profile(path: &str) -> (Option<&str>, &str) {
    let Some(after) = path.strip_prefix("/p/").or_else(|| path.strip_prefix("/P/")) else {
        return (None, path);
    };
    let (profile, rest) = match after.find('/') {
        Some(i) => after.split_at(i),
        None => (after, ""),
    };
    if profile.is_empty() { (None, path) } else { (Some(profile), rest) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(uri: &str) -> (String, Option<String>) {
        let mut req = Request::builder().uri(uri).body(axum::body::Body::empty()).unwrap();
        assert_eq!(canonicalize(&mut req), Ok(()), "{uri}");
        (req.uri().to_string(), req.extensions().get::<PathProfile>().map(|p| p.0.clone()))
    }

    fn refused(uri: &str) -> &'static str {
        let mut req = Request::builder().uri(uri).body(axum::body::Body::empty()).unwrap();
        let BadPath(what) = canonicalize(&mut req).expect_err(uri);
        assert_eq!(req.uri().to_string(), uri, "a refused path is left as sent");
        assert!(req.extensions().get::<PathProfile>().is_none());
        what
    }

    #[test]
    fn the_fast_check_admits_only_what_canonicalize_leaves_alone() {
        let samples = [
            "/metadata/identity/oauth2/token",
            "/msi/token",
            "/a",
            "/a-b_c/9",
            "/",
            "//a",
            "/a//b",
            "/a/",
            "/A",
            "/p/x",
            "/p",
            "/pp/x",
            "/a/./b",
            "/a/.b",
            "/a/../b",
            "/a%2Fb",
            "/a%41",
            "/a.b",
            "/a~b",
            "a",
        ];
        for path in samples {
            if is_canonical(path) {
                let mut req = Request::builder().uri(path).body(axum::body::Body::empty()).unwrap();
                let before = req.uri().clone();
                // The slow path (the fast check is skipped by going through `collapse` directly).
                let collapsed = collapse(path).expect(path);
                assert!(matches!(collapsed, Cow::Borrowed(_)), "{path}");
                assert_eq!(split_profile(path).0, None, "{path}");
                assert_eq!(canonicalize(&mut req), Ok(()));
                assert_eq!(req.uri(), &before, "{path}");
                assert!(!path.bytes().any(|b| b.is_ascii_uppercase()) && !path.ends_with('/'), "{path}");
            }
        }
        for path in ["/metadata/identity/oauth2/token", "/msi/token", "/a-b_c/9"] {
            assert!(is_canonical(path), "{path}");
        }
        for path in ["/", "//a", "/a//b", "/a/", "/A", "/p/x", "/a/./b", "/a/../b", "/a%2Fb", "/a.b", "a"] {
            assert!(!is_canonical(path), "{path}");
        }
    }

    #[test]
    fn canonical_paths_are_left_alone() {
        assert_eq!(canon("/msi/token?a=B"), ("/msi/token?a=B".into(), None));
        assert_eq!(canon("/"), ("/".into(), None));
    }

    #[test]
    fn case_and_trailing_slash_are_normalised_but_not_the_query() {
        assert_eq!(canon("/MSI/token/?Resource=X"), ("/msi/token?Resource=X".into(), None));
        assert_eq!(
            canon("/Metadata/Identity/OAuth2/Token/"),
            ("/metadata/identity/oauth2/token".into(), None)
        );
    }

    #[test]
    fn profile_prefix_is_extracted_with_its_case() {
        assert_eq!(canon("/p/Fab-1/msi/token?x=1"), ("/msi/token?x=1".into(), Some("Fab-1".into())));
        assert_eq!(canon("/p/fab"), ("/".into(), Some("fab".into())));
        assert_eq!(canon("/p/fab/"), ("/".into(), Some("fab".into())));
    }

    #[test]
    fn repeated_slashes_and_dot_segments_collapse_before_and_after_a_profile_prefix() {
        let token = "/metadata/identity/oauth2/token";
        for uri in [
            "//metadata/identity/oauth2/token",
            "/metadata//identity///oauth2/token",
            "/./metadata/identity/./oauth2/token/.",
            "///metadata/identity/oauth2/token//",
        ] {
            assert_eq!(canon(&format!("{uri}?a=1")), (format!("{token}?a=1"), None), "{uri}");
        }
        let fab = Some("Fab".to_owned());
        for uri in ["/p/Fab//metadata/identity/oauth2/token", "//p/Fab/./metadata//identity/oauth2/token/"] {
            assert_eq!(canon(uri), (token.into(), fab.clone()), "{uri}");
        }
        assert_eq!(canon("/p/Fab//MSI//token"), ("/msi/token".into(), fab));
        // An empty profile name collapses away like any repeated slash.
        assert_eq!(canon("/p//msi/token"), ("/token".into(), Some("msi".into())));
        assert_eq!(canon("//"), ("/".into(), None));
    }

    #[test]
    fn escaped_separators_backslashes_and_dot_dot_are_refused_not_decoded() {
        for (uri, what) in [
            ("/metadata/identity/oauth2%2Ftoken", "'%2F'"),
            ("/metadata/identity/oauth2%2ftoken", "'%2F'"),
            ("/p/fab%2F..%2Fcontoso/msi/token", "'..'"),
            ("/p/fab%2fmsi/token", "'%2F'"),
            ("/msi%5Ctoken", "'%5C'"),
            ("/msi%5ctoken", "'%5C'"),
            ("/msi/%2E%2E/token", "'%2E'"),
            ("/msi/token/..", "'..'"),
            ("/p/contoso/../fab/msi/token", "'..'"),
            ("/p/fab/..", "'..'"),
            ("/msi/token/x/../", "'..'"),
            ("/p/fab//../msi/token", "'..'"),
        ] {
            assert_eq!(refused(uri), what, "{uri}");
        }
        // A backslash cannot be sent unescaped in an http::Uri; one that reaches us is refused.
        assert_eq!(collapse("/msi\\token"), Err(BadPath("a backslash")));
        assert_eq!(collapse("/p/fab\\..\\x"), Err(BadPath("a backslash")));
    }

    #[test]
    fn absolute_form_keeps_its_authority() {
        assert_eq!(canon("http://127.0.0.1:5/MSI/token"), ("http://127.0.0.1:5/msi/token".into(), None));
    }
}
