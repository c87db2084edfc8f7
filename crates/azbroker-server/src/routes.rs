//! The route table, the guard every route passes through, and path canonicalisation.
//!
//! Canonical paths (lower-case, no trailing slash, no prefix) — what clients normally send — are
//! routed in one dispatch. Anything else falls through to a rewrite service that canonicalises
//! the path once (collapses repeated slashes and drops `.` segments — MSAL4J sends
//! `//metadata/identity/oauth2/token` —, strips a `/p/{profile}` prefix into a [`PathProfile`]
//! extension, lower-cases, drops a trailing slash) and dispatches again, so every dialect gets
//! profile prefixes and lenient matching for free. A path that could name another path once
//! decoded (`%2F`, `%5C`, a backslash, `..`) is never rewritten: it is refused with 400 (a
//! path-normalisation bypass was aad-pod-identity's GHSA-p82q-rxpm-hjpc). The guards and the
//! access policy only ever see the canonical path. Every route, fallback included, is registered through [`guarded`], so none
//! can skip the connection guards. Unknown paths and wrong methods get JSON bodies too. This
//! module never looks at query strings or credentials.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::routing::{any, get, post};
use azbroker_core::ProfileName;
use http::StatusCode;
use http::uri::{PathAndQuery, Uri};
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
pub fn router(state: AppState, listener_profile: Option<ProfileName>) -> Router {
    build(RouteCtx { app: state, listener_profile, kind: ListenerKind::Http })
}

/// The router for the 169.254.169.254:80 listener: the HTTP dialects, with that address accepted
/// as a local peer.
pub fn link_local_router(state: AppState) -> Router {
    build(RouteCtx { app: state, listener_profile: None, kind: ListenerKind::LinkLocal })
}

/// The router for a `container_listen` address (`addr`, as bound): requests need a client key.
pub fn container_router(state: AppState, addr: std::net::SocketAddr) -> Router {
    build(RouteCtx { app: state, listener_profile: None, kind: ListenerKind::Container(addr) })
}

/// The router for the HTTPS listener: Service Fabric on `/msi/token`, plus health.
pub fn service_fabric_router(state: AppState, listener_profile: Option<ProfileName>) -> Router {
    build(RouteCtx { app: state, listener_profile, kind: ListenerKind::ServiceFabric })
}

fn build(ctx: RouteCtx) -> Router {
    let kind = ctx.kind;
    let ctx = Arc::new(ctx);
    let mut canonical = Router::new();
    if kind == ListenerKind::ServiceFabric {
        canonical = canonical.route(ServiceFabric::PATH, get(guarded::<dialect::Token<ServiceFabric>>));
    } else {
        canonical = canonical
            .route(Imds::PATH, get(guarded::<dialect::Token<Imds>>))
            .route(AppService::PATH, get(guarded::<dialect::Token<AppService>>))
            .route(AzureMl::PATH, get(guarded::<MsiAuthGet>).post(guarded::<dialect::Token<CloudShell>>))
            .route(
                CloudShell::PATH,
                get(guarded::<dialect::Token<CloudShell>>).post(guarded::<dialect::Token<CloudShell>>),
            )
            .route(native::PATH, post(guarded::<dialect::Token<Native>>));
        if let ListenerKind::Container(_) = kind {
            // Neither carries a secret, so neither can carry a client key.
            canonical = canonical.route(ArcDialect::PATH, any(guarded::<KeyOnly>));
            for path in ImdsV2::PATHS {
                canonical = canonical.route(path, any(guarded::<KeyOnly>));
            }
        } else {
            canonical = canonical.route(ArcDialect::PATH, get(guarded::<ArcToken>));
            for path in ImdsV2::PATHS {
                canonical = canonical.route(path, any(guarded::<ImdsV2>));
            }
        }
    }
    if !matches!(kind, ListenerKind::Container(_)) {
        // Per-profile counters are for the host's users, not for containers.
        canonical = canonical.route("/metrics", get(guarded::<Metrics>));
    }
    let canonical = canonical
        .route("/healthz", get(guarded::<Healthz>))
        .route("/readyz", get(guarded::<Readyz>))
        .method_not_allowed_fallback(guarded::<MethodNotAllowed>)
        .fallback(guarded::<NotFound>)
        .with_state(ctx);
    canonical.clone().fallback_service(Canonicalize { routes: canonical })
}

/// The handler behind every route: guards first, then the endpoint.
async fn guarded<E: Endpoint>(State(ctx): State<Arc<RouteCtx>>, req: Request) -> Response {
    // The one load of the config generation this request will see to its end.
    let rt = ctx.app.runtime();
    let checked = match ctx.kind {
        ListenerKind::Container(addr) => guard::check_container(&req, addr),
        kind => guard::check(&req, rt.allow_remote(), kind == ListenerKind::LinkLocal),
    };
    match checked {
        Ok(()) => E::call(ctx, rt, req).await,
        Err(error) => {
            ctx.app.metrics().denial(error.kind());
            tracing::debug!(
                peer = ?guard::peer(&req),
                reason = error.kind(),
                status = error.status().as_u16(),
                "request refused by guard"
            );
            dialect::refuse(ctx.kind, req.uri().path(), &error)
        }
    }
}

/// Canonicalises the path of a request the route table did not match, then dispatches again.
#[derive(Clone)]
struct Canonicalize {
    routes: Router,
}

impl Service<Request> for Canonicalize {
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if let Err(refused) = canonicalize(&mut req) {
            // The path is left as sent, which no route matches: the fallback answers, after the
            // guards, with this refusal.
            req.extensions_mut().insert(refused);
        }
        // `Router` is always ready, so calling it without `poll_ready` is fine.
        self.routes.call(req)
    }
}

/// Marks a request whose path was refused by [`canonicalize`]: what the path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadPath(pub(crate) &'static str);

struct NotFound;

impl Endpoint for NotFound {
    async fn call(ctx: Arc<RouteCtx>, _rt: Arc<Runtime>, req: Request) -> Response {
        if let Some(BadPath(what)) = req.extensions().get::<BadPath>() {
            ctx.app.metrics().denial("bad_path");
            return dialect::refuse(ctx.kind, req.uri().path(), &RequestError::BadPath(what));
        }
        body::error(StatusCode::NOT_FOUND, "not_found", "No such endpoint on this broker")
    }
}

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

struct MethodNotAllowed;

impl Endpoint for MethodNotAllowed {
    async fn call(_ctx: Arc<RouteCtx>, _rt: Arc<Runtime>, _req: Request) -> Response {
        body::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "This endpoint does not accept that method",
        )
    }
}

/// Rewrites the request path to its canonical form; a no-op (no allocation) when it already is.
/// Refuses, leaving the request alone, a path holding `%2F`, `%5C`, a backslash or `..`.
pub(crate) fn canonicalize(req: &mut Request) -> Result<(), BadPath> {
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
