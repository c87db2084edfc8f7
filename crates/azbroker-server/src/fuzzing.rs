//! Entry points for the coverage-guided fuzz targets in `fuzz/` (feature `fuzzing`, never in a
//! release build): each takes arbitrary bytes and drives the code that reads what a client sends.
//! They must never panic; everything they find wrong is an error value.
//!
//! * [`request_head`]: a raw HTTP/1.1 request head, parsed the way hyper parses it (`httparse`),
//!   then everything of ours that reads a head before a token is asked for: path
//!   canonicalisation, the loopback and `Host` guards, and the IMDS/Arc parse (`Metadata`, proxy
//!   headers, the v1 query, selectors, the resource and its cache form).
//! * [`query`]: the query decoder ([`crate::query`]) on any string, and a form body on any bytes.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::extract::connect_info::MockConnectInfo;

use crate::dialect::{self, imds};
use crate::query::QueryParams;
use crate::routes;

/// Header fields read at most (hyper's default bound is 100).
const MAX_HEADERS: usize = 64;
/// The selectors every IMDS-shaped dialect knows.
const SELECTORS: &[&str] = &["client_id", "object_id", "msi_res_id", "mi_res_id"];

/// Parses `data` as a request head and runs the head's checks on it.
pub fn request_head(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(data) else { return };
    let mut builder =
        http::Request::builder().method(parsed.method.unwrap_or("GET")).uri(parsed.path.unwrap_or("/"));
    for h in parsed.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    let Ok(mut req): Result<Request, _> = builder.body(axum::body::Body::empty()) else { return };
    // Both peers the guards tell apart: loopback, and another host.
    let peer = if data.len().is_multiple_of(2) { [127, 0, 0, 1] } else { [10, 0, 0, 1] };
    req.extensions_mut().insert(MockConnectInfo(SocketAddr::from((peer, 40000))));
    if routes::canonicalize(&mut req).is_err() {
        return;
    }
    let _ = crate::guard::check(&req, false, data.first().is_some_and(|b| b & 1 == 1));
    let (parts, _) = req.into_parts();
    if let Ok(request) = imds::parse_with(&parts, SELECTORS) {
        let form = request.resource.cache_form();
        assert!(form.as_str().eq_ignore_ascii_case(request.resource.as_str()));
    }
    let _ = dialect::parse_v1_query(parts.uri.query(), SELECTORS);
}

/// Decodes `data` as a query string (when it is UTF-8) and as a form body.
pub fn query(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(params) = QueryParams::parse(Some(text))
    {
        let _ = params.get("resource");
    }
    let _ = dialect::parse_form(data, SELECTORS);
}
