//! What the crate logs: one audit line per grant identified by the token's hash, one debug line
//! per request, and never a token or the identity header.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use super::*;

/// Records every event as `target field=value ...`.
#[derive(Clone, Default)]
pub(crate) struct Capture {
    pub(crate) lines: Arc<Mutex<Vec<String>>>,
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line(event.metadata().target().to_owned());
        event.record(&mut line);
        self.lines.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test]
async fn grants_are_audited_by_hash_and_secrets_never_logged() {
    let capture = Capture::default();
    // With a single scoped dispatcher registered, tracing caches the interest of callsites first
    // hit on other test threads from *their* (empty) default, i.e. "never". A second registered
    // dispatcher makes it consult every registered one, so parallel tests cannot mute ours.
    let _second = tracing::Dispatch::new(Capture::default());
    let _guard = tracing::subscriber::set_default(capture.clone());
    let app = app(state());
    let q = "api-version=2018-02-01&resource=https://vault.azure.net";
    let r = send(&app, imds(q)).await;
    let token = r.str("access_token").to_owned();
    send(&app, app_service(q)).await;
    send(&app, get(&format!("/msi/token?{q}")).header("X-IDENTITY-HEADER", format!("{IDENTITY_HEADER}0")))
        .await;
    send(&app, imds(&format!("{q}&client_id=broken"))).await;

    let lines = capture.lines.lock().unwrap().clone();
    let hash = azbroker_core::AccessToken::new(Secret::new(token.clone()), Duration::from_secs(1)).hash();
    let audits: Vec<_> = lines.iter().filter(|l| l.starts_with("azbroker::audit")).collect();
    assert_eq!(audits.len(), 2, "{lines:#?}");
    for audit in &audits {
        assert!(audit.contains(&format!("token_hash={hash}")), "{audit}");
        assert!(audit.contains("profile=contoso"), "{audit}");
        assert!(audit.contains("resource=https://vault.azure.net"), "{audit}");
    }
    assert!(audits[0].contains("cache=\"miss\"") && audits[1].contains("cache=\"hit\""), "{audits:#?}");
    let requests: Vec<_> = lines.iter().filter(|l| l.contains("message=token request dialect=")).collect();
    assert_eq!(requests.len(), 4, "{lines:#?}");
    assert!(requests.iter().all(|l| l.contains("latency_us=")));
    assert!(requests.iter().any(|l| l.contains("error=\"invalid_grant\"") && l.contains("status=400")));
    for line in &lines {
        assert!(!line.contains(&token), "token leaked: {line}");
        assert!(!line.contains(IDENTITY_HEADER), "identity header leaked: {line}");
    }
}

#[tokio::test]
async fn grants_and_denials_are_logged_with_the_callers_uid() {
    let capture = Capture::default();
    let _second = tracing::Dispatch::new(Capture::default());
    let _guard = tracing::subscriber::set_default(capture.clone());
    let st = state();
    st.set_policy(super::policy::restricted());
    let q = "api-version=2018-02-01&resource=https://vault.azure.net";
    send(&super::policy::as_uid(st.clone(), 1000), imds(q)).await;
    send(&super::policy::as_uid(st, 1001), imds(&format!("{q}&client_id=fabrikam"))).await;
    let lines = capture.lines.lock().unwrap().clone();
    let audit = lines.iter().find(|l| l.starts_with("azbroker::audit")).expect("an audit line");
    assert!(audit.contains("uid=1000"), "{audit}");
    let denied = lines.iter().find(|l| l.contains("denied by policy")).expect("a denial line");
    assert!(
        denied.contains("uid=1001")
            && denied.contains("profile=\"fabrikam\"")
            && denied.contains("user_not_allowed"),
        "{denied}"
    );
}
