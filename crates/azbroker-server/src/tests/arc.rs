//! The Azure Arc challenge flow: 401 + key file, then `Authorization: Basic <contents>`.

use std::path::PathBuf;
use std::sync::Arc;

use http::StatusCode;

use super::*;
use crate::ArcKeys;

const URI: &str =
    "/arc/metadata/identity/oauth2/token?api-version=2020-06-01&resource=https://management.azure.com";

fn arc_app(dir: &std::path::Path) -> (Router, Arc<ArcKeys>) {
    let st = state();
    let keys = Arc::new(ArcKeys::new(dir.join("tokens"), None));
    keys.prepare().unwrap();
    st.set_arc_keys(keys.clone());
    (app(st), keys)
}

/// The challenge's key file path (after checking the header's exact form).
fn realm(r: &Reply) -> PathBuf {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
    let header = r.headers[http::header::WWW_AUTHENTICATE].to_str().unwrap();
    let path = header.strip_prefix("Basic realm=").unwrap_or_else(|| panic!("{header}"));
    assert_eq!(header.split('=').count(), 2, "MSAL Python and .NET split on '=': {header}");
    PathBuf::from(path)
}

#[tokio::test]
async fn challenge_then_key_gets_the_imds_body() {
    let tmp = tempfile::tempdir().unwrap();
    let (app, keys) = arc_app(tmp.path());
    let r = send(&app, get(URI).header("Metadata", "true")).await;
    let path = realm(&r);
    assert_eq!(path.parent().unwrap(), keys.dir());
    let secret = std::fs::read_to_string(&path).unwrap();
    let auth = format!("Basic {secret}");
    let r = send(&app, get(URI).header("Metadata", "true").header("Authorization", &auth)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.json["expires_in"].is_string() && r.json["expires_on"].is_string());
    assert_eq!(r.str("client_id"), CONTOSO_CLIENT_ID);
    // Single use: the same key again is refused, and its file goes away.
    let again = send(&app, get(URI).header("Metadata", "true").header("Authorization", &auth)).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(!again.headers.contains_key(http::header::WWW_AUTHENTICATE));
    for _ in 0..100 {
        if !path.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!path.exists(), "a used key file is deleted");
    assert_eq!(keys.outstanding(), 0);
}

#[tokio::test]
async fn user_assigned_selectors_are_echoed() {
    let tmp = tempfile::tempdir().unwrap();
    let (app, _keys) = arc_app(tmp.path());
    for (param, value, key) in [
        ("client_id", FABRIKAM_CLIENT_ID, "client_id"),
        ("object_id", FABRIKAM_CLIENT_ID, "object_id"),
        ("msi_res_id", CONTOSO_MI_RES_ID, "msi_res_id"),
    ] {
        let uri = format!("{URI}&{param}={value}");
        let path = realm(&send(&app, get(&uri).header("Metadata", "true")).await);
        let auth = format!("Basic {}", std::fs::read_to_string(path).unwrap());
        let r = send(&app, get(&uri).header("Metadata", "true").header("Authorization", auth)).await;
        assert_eq!(r.status, StatusCode::OK, "{param}: {}", r.json);
        assert_eq!(r.str(key), value, "{param}");
    }
}

#[tokio::test]
async fn bad_requests_are_refused_before_any_key_file_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (app, keys) = arc_app(tmp.path());
    let r = send(&app, get(URI)).await;
    assert_eq!(r.json["error_description"], "Required metadata header not specified");
    let r =
        send(&app, get("/arc/metadata/identity/oauth2/token?resource=x").header("Metadata", "true")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(keys.outstanding(), 0);
    assert_eq!(std::fs::read_dir(keys.dir()).unwrap().count(), 0);
    for auth in ["Basic wrong", "Bearer x", "Basic ", "Basic"] {
        let r = send(&app, get(URI).header("Metadata", "true").header("Authorization", auth)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth}");
    }
}

/// The real agent challenges first: an unknown identity or profile still gets the 401 and a key
/// file, and is refused (in the IMDS shape, key spent) only when the key is presented.
#[tokio::test]
async fn unknown_identities_are_challenged_first_and_refused_on_the_second_leg() {
    let tmp = tempfile::tempdir().unwrap();
    let (app, keys) = arc_app(tmp.path());
    for (uri, why) in
        [(format!("{URI}&client_id=nobody"), "Identity not found"), (format!("/p/nosuch{URI}"), "nosuch")]
    {
        let path = realm(&send(&app, get(&uri).header("Metadata", "true")).await);
        let auth = format!("Basic {}", std::fs::read_to_string(&path).unwrap());
        let r = send(&app, get(&uri).header("Metadata", "true").header("Authorization", auth)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.json);
        assert!(r.str("error_description").contains(why), "{uri}: {}", r.json);
    }
    assert_eq!(keys.outstanding(), 0, "both keys were spent");
}

#[tokio::test]
async fn without_a_key_directory_arc_is_a_clear_403() {
    let r = send(&app(state()), get(URI).header("Metadata", "true")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.str("error_description").contains("/var/opt/azcmagent/tokens"));
}
