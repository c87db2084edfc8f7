//! Fuzz targets (time-boxed property tests, see `azbroker_testkit::fuzz`): request parsing of
//! every dialect through the real router, the query parser, and the kernel-table parsers behind
//! caller identity. Each must never panic, and every response keeps the invariants [`send`]
//! checks (JSON body, `Content-Type`, `Retry-After` only on 429, no error keys in a 200).

use std::net::{Ipv4Addr, SocketAddr};

use azbroker_testkit::fuzz::fuzz;
use proptest::prelude::*;

use super::*;
use crate::identity::{build_request, parse_proc_net_tcp, parse_reply};
use crate::query::QueryParams;

/// Query keys the dialects know, plus noise.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("api-version".to_owned()),
        Just("resource".to_owned()),
        Just("client_id".to_owned()),
        Just("object_id".to_owned()),
        Just("msi_res_id".to_owned()),
        Just("mi_res_id".to_owned()),
        Just("principal_id".to_owned()),
        Just("msi-res-id".to_owned()),
        "[a-z_%+=&-]{0,8}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(ARM.to_owned()),
        Just("https%3A%2F%2Fvault.azure.net".to_owned()),
        Just("fabrikam".to_owned()),
        Just("broken".to_owned()),
        Just("down".to_owned()),
        Just("throttled".to_owned()),
        Just(CONTOSO_CLIENT_ID.to_owned()),
        "[ -~]{0,40}",
        "(%[0-9A-Fa-f]{0,2}|[a-z/:.]){0,20}",
        ".{0,10}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec((key(), value()), 0..6)
        .prop_map(|pairs| pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
}

fn path() -> impl Strategy<Value = String> {
    let base = prop_oneof![
        Just("/metadata/identity/oauth2/token".to_owned()),
        Just("/msi/token".to_owned()),
        Just("/MSI/Token/".to_owned()),
        Just("/healthz".to_owned()),
        Just("/readyz".to_owned()),
        "/[a-zA-Z0-9/._-]{0,30}",
    ];
    (prop_oneof![Just(""), Just("/p/fabrikam"), Just("/p/nope"), Just("/P/slow")], base)
        .prop_map(|(prefix, base)| format!("{prefix}{base}"))
}

fn header() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        Just(("Metadata".to_owned(), "true".to_owned())),
        Just(("X-IDENTITY-HEADER".to_owned(), IDENTITY_HEADER.to_owned())),
        ("X-IDENTITY-HEADER", "[ -~]{0,40}").prop_map(|(k, v)| (k.to_owned(), v)),
        ("Host", prop_oneof![Just("127.0.0.1:50342".to_owned()), "[ -~]{0,30}"])
            .prop_map(|(k, v)| (k.to_owned(), v)),
        Just(("X-Forwarded-For".to_owned(), "10.0.0.1".to_owned())),
        ("[a-zA-Z-]{1,12}", "[ -~]{0,20}"),
    ]
}

#[test]
fn fuzz_every_dialects_request_parsing() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    let router = app(state());
    let strategy = (path(), query(), prop::collection::vec(header(), 0..5), any::<bool>());
    fuzz("dialect requests", strategy, |(path, query, headers, post)| {
        let uri = if query.is_empty() { path } else { format!("{path}?{query}") };
        let build = || {
            let mut req = Request::builder().method(if post { "POST" } else { "GET" }).uri(&uri);
            for (k, v) in &headers {
                req = req.header(k.as_str(), v.as_str());
            }
            req
        };
        // Strings the http crate itself refuses never reach us.
        if build().body(()).is_err() {
            return Ok(());
        }
        let req = build();
        let reply = rt.block_on(send(&router, req));
        prop_assert!(
            reply.status != StatusCode::INTERNAL_SERVER_ERROR || uri.contains("down"),
            "{uri} {}",
            reply.json
        );
        Ok(())
    });
}

#[test]
fn fuzz_query_parsing() {
    fuzz("query", prop_oneof![query(), ".{0,80}"], |raw| {
        if let Ok(q) = QueryParams::parse(Some(&raw)) {
            // Whatever parses once parses the same way again.
            prop_assert_eq!(format!("{q:?}"), format!("{:?}", QueryParams::parse(Some(&raw)).unwrap()));
        }
        Ok(())
    });
}

fn hex_addr() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9A-F]{8}:[0-9A-F]{4}", "[0-9A-F]{32}:[0-9A-F]{4}", "[0-9A-Fa-f:+-]{0,40}"]
}

#[test]
fn fuzz_proc_net_tcp_parser() {
    let server: SocketAddr = (Ipv4Addr::LOCALHOST, 0xC4EC).into();
    let peer: SocketAddr = (Ipv4Addr::LOCALHOST, 0xD431).into();
    let row = (hex_addr(), hex_addr(), "[0-9A-F]{1,3}", "[0-9a-z ]{0,30}").prop_map(|(l, r, st, rest)| {
        format!("   0: {l} {r} {st} 00000000:00000000 00:00000000 00000000 {rest}")
    });
    let table = prop::collection::vec(prop_oneof![row, ".{0,60}"], 0..8).prop_map(|rows| {
        let mut t =
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n".to_owned();
        t.push_str(&rows.join("\n"));
        t
    });
    fuzz("/proc/net/tcp", table, |text| {
        let _ = parse_proc_net_tcp(&text, server, peer);
        Ok(())
    });
}

#[test]
fn fuzz_sock_diag_reply_parser() {
    let server: SocketAddr = "127.0.0.1:50342".parse().unwrap();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    // Valid-looking replies with bytes flipped, truncated or extended, and plain noise.
    let reply = build_request(server, peer, 1);
    let mutated = (prop::collection::vec((0usize..96, any::<u8>()), 0..6), 0usize..120).prop_map(
        move |(flips, len)| {
            let mut b = reply.clone();
            b.resize(96, 0);
            for (at, v) in flips {
                b[at] = v;
            }
            b.truncate(len);
            b
        },
    );
    fuzz("sock_diag reply", prop_oneof![mutated, prop::collection::vec(any::<u8>(), 0..200)], |bytes| {
        let _ = parse_reply(&bytes, server, peer);
        Ok(())
    });
}

#[test]
fn fuzz_proc_status_groups_parser() {
    fuzz("/proc/pid/status Groups", "(Groups:[0-9 \t]{0,30}\n|[ -~]{0,30}\n){0,5}", |text| {
        let _ = crate::admin::parse_status_groups_for_fuzz(&text);
        Ok(())
    });
}
