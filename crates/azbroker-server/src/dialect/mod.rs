//! The managed-identity dialects and the request path they share.
//!
//! A dialect ([`Dialect`]) owns three things: parsing a request into a [`TokenRequest`] (its
//! auth header, parameter names and check order), the success body its clients parse, and the
//! error body shape. Everything else — profile selection, the engine call, the audit and request
//! log lines — happens once, in [`serve_token`], so dialects cannot drift apart on it.
//!
//! Dialects never call upstream, never cache, and never put a token anywhere but a success body.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::response::Response;
use azbroker_core::{CacheState, Freshness, Grant, ProfileName, Resource};
use http::header::{FORWARDED, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, HeaderValue};

use crate::error::RequestError;
use crate::query::QueryParams;
use crate::routes::{Endpoint, RouteCtx};
use crate::select::{self, PathProfile, Selector};
use crate::state::AppState;

pub(crate) mod app_service;
pub(crate) mod imds;

pub(crate) use app_service::AppService;
pub(crate) use imds::Imds;

/// One managed-identity protocol.
pub(crate) trait Dialect: Send + Sync + 'static {
    /// Label for logs.
    const NAME: &'static str;
    /// Canonical path (lower-case, no trailing slash) the route table serves it on.
    const PATH: &'static str;

    /// Checks the request's auth and parameters in this dialect's order.
    fn parse<'r>(state: &AppState, parts: &'r Parts) -> Result<TokenRequest<'r>, RequestError>;
    /// The 200 body for a granted token.
    fn success(resource: &Resource, grant: &Grant) -> Response;
    /// The error body, status and headers for a refusal.
    fn error(error: &RequestError) -> Response;
}

/// What a dialect extracted from a request.
#[derive(Debug)]
pub(crate) struct TokenRequest<'r> {
    /// Exactly as the client sent it: the cache key and the echoed value.
    pub(crate) resource: Resource,
    pub(crate) selector: Option<Selector<'r>>,
}

/// The token endpoint of dialect `D`: every dialect's route serves this.
pub(crate) struct Token<D>(PhantomData<D>);

impl<D: Dialect> Endpoint for Token<D> {
    async fn call(ctx: Arc<RouteCtx>, req: Request) -> Response {
        serve_token::<D>(&ctx, req).await
    }
}

/// Parse, select, fetch, encode — and the request's log lines, written here once for all dialects.
async fn serve_token<D: Dialect>(ctx: &RouteCtx, req: Request) -> Response {
    let started = Instant::now();
    let (parts, _body) = req.into_parts();
    match obtain::<D>(ctx, &parts).await {
        Ok(served) => {
            tracing::info!(
                target: "azbroker::audit",
                profile = %served.profile,
                dialect = D::NAME,
                resource = %served.resource,
                token_hash = %served.grant.token.hash(),
                cache = served.grant.cache.as_str(),
                "token granted"
            );
            let response = D::success(&served.resource, &served.grant);
            log_request(
                &ctx.app,
                D::NAME,
                Some(&served.profile),
                Some(&served.resource),
                &response,
                Ok(served.grant.cache),
                started,
            );
            response
        }
        Err(failed) => {
            let response = D::error(&failed.error);
            if !matches!(failed.error, RequestError::Engine(_)) {
                ctx.app.metrics().denial(failed.error.kind());
            }
            let outcome = Err(failed.error.kind());
            log_request(
                &ctx.app,
                D::NAME,
                failed.profile.as_ref(),
                failed.resource.as_ref(),
                &response,
                outcome,
                started,
            );
            response
        }
    }
}

/// The error body for a request refused before it reached a dialect (guards), in the shape of the
/// dialect that serves `path`.
pub(crate) fn refuse(path: &str, error: &RequestError) -> Response {
    if path == AppService::PATH { AppService::error(error) } else { Imds::error(error) }
}

/// Parses the v1 query every token dialect shares: `api-version` (any non-empty value) and
/// `resource` required, then at most one of `selectors`.
pub(crate) fn parse_v1_query<'r>(
    query: Option<&'r str>,
    selectors: &[&'static str],
) -> Result<TokenRequest<'r>, RequestError> {
    let mut query = QueryParams::parse(query)?;
    query.require("api-version")?;
    let resource = Resource::parse(query.require("resource")?).map_err(RequestError::InvalidResource)?;
    let selector = select::take_selector(&mut query, selectors)?;
    Ok(TokenRequest { resource, selector })
}

/// Refuses requests that came through a proxy: a local proxy must not turn into a way for remote
/// callers to reach the broker (SSRF).
pub(crate) fn reject_forwarded(headers: &HeaderMap) -> Result<(), RequestError> {
    if headers.contains_key("x-forwarded-for") {
        return Err(RequestError::Forwarded { header: "X-Forwarded-For" });
    }
    if headers.contains_key(FORWARDED) {
        return Err(RequestError::Forwarded { header: "Forwarded" });
    }
    Ok(())
}

/// Adds `Retry-After` when (and only when) the error calls for it.
pub(crate) fn with_retry_after(mut response: Response, error: &RequestError) -> Response {
    if let Some(secs) = error.retry_after_secs() {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

struct Served {
    profile: ProfileName,
    resource: Resource,
    grant: Grant,
}

struct Failed {
    profile: Option<ProfileName>,
    resource: Option<Resource>,
    error: RequestError,
}

async fn obtain<D: Dialect>(ctx: &RouteCtx, parts: &Parts) -> Result<Served, Failed> {
    let request =
        D::parse(&ctx.app, parts).map_err(|error| Failed { profile: None, resource: None, error })?;
    let TokenRequest { resource, selector } = request;
    let path_profile = parts.extensions.get::<PathProfile>();
    let profile =
        match select::profile(&ctx.app, path_profile, ctx.listener_profile.as_ref(), selector.as_ref()) {
            Ok(p) => p,
            Err(error) => return Err(Failed { profile: None, resource: Some(resource), error }),
        };
    match ctx.app.engine().get_token_with(profile.as_str(), &resource, &Freshness::Cached).await {
        Ok(grant) => Ok(Served { profile, resource, grant }),
        Err(e) => Err(Failed { profile: Some(profile), resource: Some(resource), error: e.into() }),
    }
}

/// The one debug line per token request, and its count in `/metrics`.
fn log_request(
    app: &AppState,
    dialect: &'static str,
    profile: Option<&ProfileName>,
    resource: Option<&Resource>,
    response: &Response,
    outcome: Result<CacheState, &'static str>,
    started: Instant,
) {
    app.metrics().request(dialect, profile, response.status().as_u16());
    let (cache, error) = match outcome {
        Ok(cache) => (Some(cache.as_str()), None),
        Err(kind) => (None, Some(kind)),
    };
    tracing::debug!(
        dialect,
        profile = profile.map(ProfileName::as_str),
        resource = resource.map(Resource::as_str),
        status = response.status().as_u16(),
        cache,
        error,
        latency_us = started.elapsed().as_micros() as u64,
        "token request"
    );
}
