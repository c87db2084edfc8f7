//! The managed-identity dialects and the request path they share.
//!
//! A dialect ([`Dialect`]) owns three things: parsing a request into a [`TokenRequest`] (its
//! auth header, parameter names and check order), the success body its clients parse, and the
//! error body shape. Everything else — profile selection (with the caller's per-user default, or
//! by tenant for the native API), the access decision (caller, resource, rate limit), the engine
//! call, the audit, denial and request log lines — happens once, in [`serve_token`], on the one
//! [`Runtime`] the request loaded, so dialects cannot drift apart on it.
//!
//! Dialects never call upstream, never cache, and never put a token anywhere but a success body.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::response::Response;
use azbroker_core::keys::KeyEntry;
use azbroker_core::{
    CacheState, EngineError, Freshness, Grant, ProfileName, Resource, TenantCandidate, TenantMatch,
};
use http::header::{FORWARDED, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::authorize::{authorize, requester};
use crate::error::RequestError;
use crate::keys;
use crate::query::QueryParams;
use crate::routes::{Endpoint, ListenerKind, RouteCtx};
use crate::runtime::Runtime;
use crate::secrets::SecretId;
use crate::select::{self, PathProfile, Selector};
use crate::state::AppState;

pub(crate) mod app_service;
pub(crate) mod arc;
pub(crate) mod azure_ml;
pub(crate) mod cloud_shell;
pub(crate) mod imds;
pub(crate) mod native;
pub(crate) mod service_fabric;

pub(crate) use app_service::AppService;
pub(crate) use arc::Arc as ArcDialect;
pub(crate) use azure_ml::AzureMl;
pub(crate) use cloud_shell::CloudShell;
pub(crate) use imds::Imds;
pub(crate) use service_fabric::ServiceFabric;

/// Largest form body a POST dialect reads (a `resource=` form is well under 1 KiB).
pub(crate) const MAX_FORM_BYTES: usize = 16 * 1024;

/// One managed-identity protocol.
pub(crate) trait Dialect: Send + Sync + 'static {
    /// Label for logs.
    const NAME: &'static str;
    /// Canonical path (lower-case, no trailing slash) the route table serves it on.
    const PATH: &'static str;

    /// Bytes of request body [`Dialect::parse`] gets; 0 (the default) reads none.
    const BODY_LIMIT: usize = 0;

    /// True when [`Dialect::parse`] checks a secret (identity header, MSI secret): only such
    /// dialects can serve a caller from another host (`allow_remote_callers`).
    const SECRET: bool = false;

    /// The header that carries the dialect's secret, where a client key is accepted too
    /// ([`crate::keys`]); `None` for the secret-less dialects.
    const SECRET_HEADER: Option<&'static str> = None;

    /// True when the dialect's clients may name a tenant, so the tenant ids of its grants are
    /// remembered for matching (the native API).
    const LEARNS_TENANTS: bool = false;

    /// Checks that need only the head, made before any body byte is read (the native API's key).
    fn check_head(_state: &AppState, _parts: &Parts) -> Result<(), RequestError> {
        Ok(())
    }

    /// Checks the request's auth and parameters in this dialect's order. `body` is empty unless
    /// [`Dialect::BODY_LIMIT`] is set.
    fn parse<'r>(
        state: &AppState,
        parts: &'r Parts,
        body: &'r [u8],
    ) -> Result<TokenRequest<'r>, RequestError>;
    /// The 200 body for a granted token.
    fn success(request: &TokenRequest<'_>, grant: &Grant) -> Response;
    /// The error body, status and headers for a refusal.
    fn error(error: &RequestError) -> Response;
}

/// What a dialect extracted from a request.
#[derive(Debug)]
pub(crate) struct TokenRequest<'r> {
    /// Exactly as the client sent it: the cache key and the echoed value.
    pub(crate) resource: Resource,
    pub(crate) selector: Option<Selector<'r>>,
    /// Cached unless the client asked for a different token (Service Fabric).
    pub(crate) freshness: Freshness,
    /// The tenant the client named (the native API): the profile is the one of that tenant.
    pub(crate) tenant: Option<String>,
}

impl<'r> TokenRequest<'r> {
    pub(crate) fn new(resource: Resource, selector: Option<Selector<'r>>) -> Self {
        Self { resource, selector, freshness: Freshness::Cached, tenant: None }
    }
}

/// The token endpoint of dialect `D`: every dialect's route serves this.
pub(crate) struct Token<D>(PhantomData<D>);

impl<D: Dialect> Endpoint for Token<D> {
    async fn call(ctx: Arc<RouteCtx>, rt: Arc<Runtime>, req: Request) -> Response {
        serve_token::<D>(&ctx, &rt, req).await
    }
}

/// Parse, select, fetch, encode — and the request's log lines, written here once for all dialects.
pub(crate) async fn serve_token<D: Dialect>(ctx: &RouteCtx, rt: &Runtime, req: Request) -> Response {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    let uid = crate::conn::caller(&parts.extensions).map(|c| c.uid);
    if let Err(error) = keys::authenticate::<D>(ctx, rt, &mut parts) {
        return respond::<D>(ctx, (uid, None), started, Err(Failed::bare(error)));
    }
    let key = keys::of(&parts).cloned();
    let who = (uid, key.as_deref());
    let body = match read_body::<D>(ctx, rt, &parts, body).await {
        Ok(body) => body,
        Err(error) => return respond::<D>(ctx, who, started, Err(Failed::bare(error))),
    };
    let outcome = obtain::<D>(ctx, rt, &parts, &body).await;
    respond::<D>(ctx, who, started, outcome)
}

/// The head checks, then the body (none unless the dialect reads one), bounded. A caller no
/// profile serves is refused from the head, before any body byte is read.
async fn read_body<D: Dialect>(
    ctx: &RouteCtx,
    rt: &Runtime,
    parts: &Parts,
    body: axum::body::Body,
) -> Result<axum::body::Bytes, RequestError> {
    D::check_head(&ctx.app, parts)?;
    if D::BODY_LIMIT == 0 {
        return Ok(Default::default());
    }
    // A client key (checked on the head before this) is its holder's authority, not the uid.
    if keys::of(parts).is_none() {
        let caller = crate::conn::caller(&parts.extensions);
        let who =
            requester(caller.as_ref(), &parts.extensions, ctx.kind == ListenerKind::LinkLocal, D::SECRET);
        crate::authorize::may_use_some_profile(&ctx.app, rt, who).await?;
    }
    axum::body::to_bytes(body, D::BODY_LIMIT)
        .await
        .map_err(|_| RequestError::BadBody("request body too large or unreadable"))
}

/// The answer, the audit line of a grant or the warning of a policy denial, and the request log.
/// `who`: the caller's uid, and the client key it presented.
fn respond<D: Dialect>(
    ctx: &RouteCtx,
    who: (Option<u32>, Option<&KeyEntry>),
    started: Instant,
    outcome: Result<Served<'_>, Failed>,
) -> Response {
    let (uid, key) = who;
    let key_name = key.map(|k| k.record.name.as_str());
    match outcome {
        Ok(served) => {
            if let Some(key) = key {
                key.usage.granted(azbroker_core::unix_now());
            }
            audit(D::NAME, (uid, key_name), &served.profile, &served.request.resource, &served.grant);
            let response = D::success(&served.request, &served.grant);
            let log = RequestLog {
                dialect: D::NAME,
                uid,
                profile: Some(&served.profile),
                resource: Some(&served.request.resource),
                outcome: Ok(served.grant.cache),
                started,
            };
            log_request(&ctx.app, log, &response);
            response
        }
        Err(failed) => {
            // Refusals an operator should hear of, each kind through the denial limiter.
            let refused = match &failed.error {
                RequestError::Denied(denial) => Some((denial.kind(), "token request denied by policy")),
                RequestError::Engine(EngineError::CacheFull { .. }) => {
                    Some(("cache_full", "token request refused: the profile's cache bound is reached"))
                }
                _ => None,
            };
            if let Some((reason, what)) = refused
                && ctx.app.denial_log().should_log(uid, reason, started)
            {
                tracing::warn!(
                    uid,
                    key = key_name,
                    profile = failed.profile.as_ref().map(ProfileName::as_str),
                    dialect = D::NAME,
                    resource = failed.resource.as_ref().map(Resource::as_str),
                    reason,
                    "{what}"
                );
            }
            let response = D::error(&failed.error);
            if refused.is_some() || !matches!(failed.error, RequestError::Engine(_)) {
                ctx.app.metrics().denial(failed.error.kind());
            }
            let log = RequestLog {
                dialect: D::NAME,
                uid,
                profile: failed.profile.as_ref(),
                resource: failed.resource.as_ref(),
                outcome: Err(failed.error.kind()),
                started,
            };
            log_request(&ctx.app, log, &response);
            response
        }
    }
}

/// The error body for a request refused before it reached a dialect (guards), in the shape of the
/// dialect that serves `path` on a listener of `kind`.
pub(crate) fn refuse(kind: ListenerKind, path: &str, error: &RequestError) -> Response {
    match (kind, path) {
        (ListenerKind::ServiceFabric, _) => ServiceFabric::error(error),
        (_, AppService::PATH) => AppService::error(error),
        (_, AzureMl::PATH) => AzureMl::error(error),
        (_, CloudShell::PATH) => CloudShell::error(error),
        (_, native::PATH) => native::error_body(error),
        _ => Imds::error(error),
    }
}

/// Parses the v1 query every token dialect shares: `api-version` (any non-empty value) and
/// `resource` required, then at most one of `selectors`.
pub(crate) fn parse_v1_query<'r>(
    query: Option<&'r str>,
    selectors: &[&'static str],
) -> Result<TokenRequest<'r>, RequestError> {
    let mut query = QueryParams::parse(query)?;
    query.require("api-version")?;
    let resource = take_resource(&mut query)?;
    let selector = select::take_selector(&mut query, selectors)?;
    Ok(TokenRequest::new(resource, selector))
}

/// The required `resource` parameter, moved out of the query (no second copy when it was
/// decoded, which a URL always is).
fn take_resource(query: &mut QueryParams<'_>) -> Result<Resource, RequestError> {
    query.require("resource")?;
    let raw = query.take("resource").unwrap_or_default();
    Resource::parse_owned(raw.into_owned()).map_err(RequestError::InvalidResource)
}

/// Parses a `resource=...` form body (Cloud Shell and the Azure ML POST): `resource` required,
/// no api-version, then at most one of `selectors`.
pub(crate) fn parse_form<'r>(
    body: &'r [u8],
    selectors: &[&'static str],
) -> Result<TokenRequest<'r>, RequestError> {
    let text = std::str::from_utf8(body).map_err(|_| RequestError::BadBody("the form body is not UTF-8"))?;
    let mut form = QueryParams::parse(Some(text))?;
    let resource = take_resource(&mut form)?;
    let selector = select::take_selector(&mut form, selectors)?;
    Ok(TokenRequest::new(resource, selector))
}

// Header names as values, so a lookup does not parse a name from a string on every request.
static METADATA: HeaderName = HeaderName::from_static("metadata");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// `Metadata: true`, compared case-insensitively (some samples send `True`).
pub(crate) fn require_metadata(headers: &HeaderMap) -> Result<(), RequestError> {
    match headers.get(&METADATA) {
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"true") => Ok(()),
        _ => Err(RequestError::MissingMetadata),
    }
}

/// The check order of the secret-header dialects (App Service, Azure ML, Service Fabric): the
/// secret first (so nothing else is revealed without it), then proxy headers, then the v1 query.
pub(crate) fn parse_with_secret<'r>(
    state: &AppState,
    parts: &'r Parts,
    header: &'static str,
    expected: SecretId,
    selectors: &[&'static str],
) -> Result<TokenRequest<'r>, RequestError> {
    if keys::of(parts).is_none() {
        require_secret(state, &parts.headers, header, expected)?;
    }
    reject_forwarded(&parts.headers)?;
    parse_v1_query(parts.uri.query(), selectors)
}

/// A secret header (`header`) that must equal the runtime secret `expected` (constant-time; the
/// previous value also passes during its rotation grace period).
pub(crate) fn require_secret(
    state: &AppState,
    headers: &HeaderMap,
    header: &'static str,
    expected: SecretId,
) -> Result<(), RequestError> {
    match headers.get(header).map(|v| v.as_bytes()).filter(|v| !v.is_empty()) {
        None => Err(RequestError::Unauthorized { header, missing: true }),
        Some(v) if !state.secret_matches(expected, v) => {
            Err(RequestError::Unauthorized { header, missing: false })
        }
        Some(_) => Ok(()),
    }
}

/// Refuses requests that came through a proxy: a local proxy must not turn into a way for remote
/// callers to reach the broker (SSRF).
pub(crate) fn reject_forwarded(headers: &HeaderMap) -> Result<(), RequestError> {
    if headers.contains_key(&X_FORWARDED_FOR) {
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

struct Served<'r> {
    profile: ProfileName,
    request: TokenRequest<'r>,
    grant: Grant,
}

struct Failed {
    profile: Option<ProfileName>,
    resource: Option<Resource>,
    error: RequestError,
}

impl Failed {
    fn bare(error: RequestError) -> Self {
        Self { profile: None, resource: None, error }
    }
}

async fn obtain<'r, D: Dialect>(
    ctx: &RouteCtx,
    rt: &Runtime,
    parts: &'r Parts,
    body: &'r [u8],
) -> Result<Served<'r>, Failed> {
    let request = D::parse(&ctx.app, parts, body).map_err(Failed::bare)?;
    // A tenant resolved by trying a profile already holds that profile's grant.
    let chosen = match &request.tenant {
        None => select_profile(ctx, rt, parts, &request).map(|p| (p, None)),
        Some(tenant) => by_tenant::<D>(ctx, rt, parts, &request, tenant).await,
    };
    let (profile, granted) = match chosen {
        Ok(chosen) => chosen,
        Err(error) => return Err(Failed { profile: None, resource: Some(request.resource), error }),
    };
    if let Some(grant) = granted {
        return Ok(Served { profile, request, grant });
    }
    match fetch::<D>(ctx, rt, parts, &profile, &request).await {
        Ok(grant) => Ok(Served { profile, request, grant }),
        Err(error) => Err(Failed { profile: Some(profile), resource: Some(request.resource), error }),
    }
}

/// The access decision, then the engine, for `profile` of this generation.
async fn fetch<D: Dialect>(
    ctx: &RouteCtx,
    rt: &Runtime,
    parts: &Parts,
    profile: &ProfileName,
    request: &TokenRequest<'_>,
) -> Result<Grant, RequestError> {
    let caller = crate::conn::caller(&parts.extensions);
    match keys::of(parts) {
        Some(key) => keys::authorize(rt, key, profile, &request.resource)?,
        None => {
            let link_local = ctx.kind == ListenerKind::LinkLocal;
            let who = requester(caller.as_ref(), &parts.extensions, link_local, D::SECRET);
            authorize(&ctx.app, rt, profile, who, &request.resource).await?;
        }
    }
    let binding = rt.binding(profile)?;
    // Case variants of one resource share one entry and one upstream call; the answer still
    // echoes the client's own string. A new entry counts against the caller's share of the
    // profile's cache (callers without a local uid share one).
    let resource = request.resource.cache_form();
    let uid = caller.map(|c| c.uid);
    let grant = ctx.app.engine().get_token_for(binding, &resource, &request.freshness, uid).await?;
    if D::LEARNS_TENANTS {
        rt.remember_tid(profile, &grant);
    }
    Ok(grant)
}

/// The profile of the tenant a request named: an exact match (configured or learned tenant id),
/// else each domain-configured profile this caller may use is asked for a token once and taken
/// only when the token's `tid` is the tenant asked for — then with that token, so it is not
/// authorised (and rate-limited) a second time.
async fn by_tenant<D: Dialect>(
    ctx: &RouteCtx,
    rt: &Runtime,
    parts: &Parts,
    request: &TokenRequest<'_>,
    tenant: &str,
) -> Result<(ProfileName, Option<Grant>), RequestError> {
    let preferred = select_profile(ctx, rt, parts, request).ok();
    // Another user's personal profiles are never candidates, and a key's request can only ever
    // be matched to the key's own profile.
    let uid = crate::conn::caller(&parts.extensions).map(|c| c.uid);
    let key_profile = keys::of(parts).map(|k| &k.profile);
    let learned: Vec<(&ProfileName, Option<String>)> = rt
        .profiles()
        .keys()
        .filter(|name| rt.directory().owner(name).is_none_or(|owner| Some(owner) == uid))
        .filter(|name| key_profile.is_none_or(|k| k == *name))
        .map(|name| (name, rt.learned_tid(name)))
        .collect();
    let candidates = learned.iter().filter_map(|(name, tid)| {
        let binding = rt.profiles().get(*name)?;
        Some(TenantCandidate { name, tenant: &binding.tenant, learned: tid.as_deref() })
    });
    let unresolved = match azbroker_core::select::by_tenant(candidates, tenant, preferred.as_ref()) {
        TenantMatch::Exact(profile) => return Ok((profile, None)),
        TenantMatch::Unresolved(profiles) => profiles,
    };
    for profile in unresolved {
        // A profile that may not be used, or cannot issue a token now, cannot be the one asked for.
        let Ok(grant) = fetch::<D>(ctx, rt, parts, &profile, request).await else { continue };
        if rt.remember_tid(&profile, &grant).is_some_and(|t| t.eq_ignore_ascii_case(tenant)) {
            return Ok((profile, Some(grant)));
        }
    }
    Err(RequestError::UnknownTenant(tenant.to_owned()))
}

/// The profile for a parsed request (path prefix, listener, selector, the caller's own default,
/// the global default), by the rules of generation `rt`.
pub(crate) fn select_profile(
    ctx: &RouteCtx,
    rt: &Runtime,
    parts: &Parts,
    request: &TokenRequest<'_>,
) -> Result<ProfileName, RequestError> {
    let path_profile = parts.extensions.get::<PathProfile>();
    if let Some(key) = keys::of(parts) {
        let explicit = path_profile.is_some() || ctx.listener_profile.is_some() || request.selector.is_some();
        let chosen = explicit
            .then(|| {
                select::profile(
                    rt,
                    path_profile,
                    ctx.listener_profile.as_ref(),
                    request.selector.as_ref(),
                    None,
                )
            })
            .transpose()?;
        return keys::pin(key, chosen);
    }
    let uid = crate::conn::caller(&parts.extensions).map(|c| c.uid);
    select::profile(rt, path_profile, ctx.listener_profile.as_ref(), request.selector.as_ref(), uid)
}

/// The `tracing` target of the audit line (the binary formats it on a fast path).
pub const AUDIT_TARGET: &str = "azbroker::audit";

/// One grant's audit record: the fields of the `token granted` line, in its order.
#[derive(Debug, Clone, Copy)]
pub struct AuditRecord<'a> {
    pub uid: Option<u32>,
    /// The name of the client key presented, if any (never the key).
    pub key: Option<&'a str>,
    pub profile: &'a str,
    pub dialect: &'static str,
    pub resource: &'a str,
    /// The first hex digits of the token's SHA-256 — never the token.
    pub token_hash: &'a str,
    pub cache: &'static str,
}

/// Writes an audit record as the installed `tracing` subscriber would write the `token granted`
/// event, byte for byte, without going through its per-field machinery.
pub type AuditWriter = Box<dyn Fn(&AuditRecord<'_>) + Send + Sync>;

static AUDIT_WRITER: std::sync::OnceLock<AuditWriter> = std::sync::OnceLock::new();

/// Installs the process's audit writer (once; the binary does, next to its subscriber, when that
/// subscriber's format has a fast path). Without one, or when the subscriber filters the audit
/// target out, grants are logged through `tracing` as usual. The request path holds no spans, so
/// a span-less writer loses no context.
pub fn set_audit_writer(writer: AuditWriter) -> bool {
    AUDIT_WRITER.set(writer).is_ok()
}

/// The one info-level audit line per token grant — never the token, only its short hash.
pub(crate) fn audit(
    dialect: &'static str,
    (uid, key): (Option<u32>, Option<&str>),
    profile: &ProfileName,
    resource: &Resource,
    grant: &Grant,
) {
    if let Some(write) = AUDIT_WRITER.get()
        && tracing::enabled!(target: AUDIT_TARGET, tracing::Level::INFO)
    {
        write(&AuditRecord {
            uid,
            key,
            profile: profile.as_str(),
            dialect,
            resource: resource.as_str(),
            token_hash: grant.token.short_hash(),
            cache: grant.cache.as_str(),
        });
        return;
    }
    tracing::info!(
        target: AUDIT_TARGET,
        uid,
        key,
        profile = %profile,
        dialect,
        resource = %resource,
        token_hash = %grant.token.short_hash(),
        cache = grant.cache.as_str(),
        "token granted"
    );
}

/// What the per-request log line and counters record of one token request.
pub(crate) struct RequestLog<'a> {
    pub(crate) dialect: &'static str,
    pub(crate) uid: Option<u32>,
    pub(crate) profile: Option<&'a ProfileName>,
    pub(crate) resource: Option<&'a Resource>,
    /// The cache state of a grant, or the kind of the error.
    pub(crate) outcome: Result<CacheState, &'static str>,
    pub(crate) started: Instant,
}

/// The one debug line per token request, and its count in `/metrics`.
pub(crate) fn log_request(app: &AppState, log: RequestLog<'_>, response: &Response) {
    let status = response.status().as_u16();
    app.metrics().request(log.dialect, log.profile, status);
    let (cache, error) = match log.outcome {
        Ok(cache) => (Some(cache.as_str()), None),
        Err(kind) => (None, Some(kind)),
    };
    tracing::debug!(
        dialect = log.dialect,
        uid = log.uid,
        profile = log.profile.map(ProfileName::as_str),
        resource = log.resource.map(Resource::as_str),
        status,
        cache,
        error,
        latency_us = log.started.elapsed().as_micros() as u64,
        "token request"
    );
}
