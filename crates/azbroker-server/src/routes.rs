//! The route table, the guard every route passes through, and path canonicalisation.
//!
//! Canonical paths (lower-case, no trailing slash, no prefix) — what clients normally send — are
//! routed in one dispatch. Anything else falls through to a rewrite service that canonicalises
//! the path (strips a `/p/{profile}` prefix into a [`PathProfile`] extension, lower-cases, drops
//! one trailing slash) and dispatches again, so every dialect gets profile prefixes and lenient
//! matching for free. Every route, fallback included, is registered through [`guarded`], so none
//! can skip the connection guards. Unknown paths and wrong methods get JSON bodies too. This
//! module never looks at query strings or credentials.

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
use crate::dialect::imds::ImdsV2;
use crate::dialect::native::{self, Native};
use crate::dialect::{self, AppService, ArcDialect, AzureMl, CloudShell, Dialect, Imds, ServiceFabric};
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
            .route(
                AzureMl::PATH,
                get(guarded::<dialect::Token<AzureMl>>).post(guarded::<dialect::Token<CloudShell>>),
            )
            .route(CloudShell::PATH, post(guarded::<dialect::Token<CloudShell>>))
            .route(ArcDialect::PATH, get(guarded::<ArcToken>))
            .route(native::PATH, post(guarded::<dialect::Token<Native>>));
        for path in ImdsV2::PATHS {
            canonical = canonical.route(path, any(guarded::<ImdsV2>));
        }
    }
    let canonical = canonical
        .route("/healthz", get(guarded::<Healthz>))
        .route("/readyz", get(guarded::<Readyz>))
        .route("/metrics", get(guarded::<Metrics>))
        .method_not_allowed_fallback(guarded::<MethodNotAllowed>)
        .fallback(guarded::<NotFound>)
        .with_state(ctx);
    canonical.clone().fallback_service(Canonicalize { routes: canonical })
}

/// The handler behind every route: guards first, then the endpoint.
async fn guarded<E: Endpoint>(State(ctx): State<Arc<RouteCtx>>, req: Request) -> Response {
    // The one load of the config generation this request will see to its end.
    let rt = ctx.app.runtime();
    match guard::check(&req, rt.allow_remote(), ctx.kind == ListenerKind::LinkLocal) {
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
        canonicalize(&mut req);
        // `Router` is always ready, so calling it without `poll_ready` is fine.
        self.routes.call(req)
    }
}

struct NotFound;

impl Endpoint for NotFound {
    async fn call(_ctx: Arc<RouteCtx>, _rt: Arc<Runtime>, _req: Request) -> Response {
        body::error(StatusCode::NOT_FOUND, "not_found", "No such endpoint on this broker")
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
pub(crate) fn canonicalize(req: &mut Request) {
    let path = req.uri().path();
    let (profile, rest) = split_profile(path);
    let trailing = rest.len() > 1 && rest.ends_with('/');
    if profile.is_none() && !trailing && !rest.bytes().any(|b| b.is_ascii_uppercase()) {
        return;
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
        canonicalize(&mut req);
        (req.uri().to_string(), req.extensions().get::<PathProfile>().map(|p| p.0.clone()))
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
        assert_eq!(canon("/p//msi/token"), ("/p//msi/token".into(), None));
    }

    #[test]
    fn absolute_form_keeps_its_authority() {
        assert_eq!(canon("http://127.0.0.1:5/MSI/token"), ("http://127.0.0.1:5/msi/token".into(), None));
    }
}
