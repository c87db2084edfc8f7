//! The test-steering half of the [`FakeEntra`] handle (feature `testing`): registering apps,
//! credentials and subscriptions, deny-lists, injected faults, request counters, and scripting the
//! users of the delegated flows. `azbroker serve --local-authority` needs none of it, so the
//! release binary does not link it; tests, benches and other dev users enable the feature.

use std::time::Duration;

use crate::fault::Fault;
use crate::server::FakeEntra;
use crate::users::DeviceState;

impl FakeEntra {
    /// Registers (or replaces) a confidential client and its secret.
    pub fn register_app(&self, client_id: &str, client_secret: &str) {
        self.state().register_app(client_id, client_secret);
    }

    /// Accept any client id and credential (`true`) or only registered apps (`false`).
    pub fn set_permissive(&self, on: bool) {
        self.state().set_permissive(on);
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state().set_token_lifetime(lifetime);
    }

    /// Token requests for this tenant (by domain or by its [`crate::tenant_guid`]) get 400
    /// `invalid_request` AADSTS90002 "Tenant '...' not found".
    pub fn deny_tenant(&self, tenant: &str) {
        self.state().deny_tenant(tenant);
    }

    /// Token requests for this resource get 400 `invalid_resource` AADSTS500011. Resources
    /// compare case-insensitively, ignoring trailing slashes.
    pub fn deny_resource(&self, resource: &str) {
        self.state().deny_resource(resource);
    }

    /// Queues `fault` for the next `times` token requests (`None`: until [`Self::clear_faults`]).
    /// Queued faults apply in FIFO order; `Some(0)` queues nothing.
    pub fn inject(&self, fault: Fault, times: Option<u32>) {
        self.state().inject(fault, times);
    }

    /// Removes every queued fault.
    pub fn clear_faults(&self) {
        self.state().clear_faults();
    }

    /// Requests to any tenant's token endpoint, whatever their outcome.
    pub fn token_requests(&self) -> u64 {
        self.state().token_requests()
    }

    /// POSTed token requests with this tenant (as written in the URL path), `grant_type` and
    /// `scope` (as sent; `""` when absent).
    pub fn requests_for(&self, tenant: &str, grant_type: &str, scope: &str) -> u64 {
        self.state().requests_for(tenant, grant_type, scope)
    }

    /// Access tokens issued so far.
    pub fn issued_tokens(&self) -> u64 {
        self.state().issued_tokens()
    }

    /// Verifies `jwt`'s RS256 signature against this server's published key and its `exp`
    /// (and `nbf`, with 5 minutes' skew); returns its claims.
    pub fn verify(&self, jwt: &str) -> Result<serde_json::Value, String> {
        self.state().key.verify(jwt)
    }

    /// The `kid` of the signing key, as in the JWKS and token headers.
    pub fn key_id(&self) -> String {
        self.state().key.kid().to_owned()
    }

    // ---- users and delegated flows ----

    /// The user codes of device-code flows waiting for the user, oldest first in no particular
    /// order.
    pub fn pending_user_codes(&self) -> Vec<String> {
        self.state().users().pending_user_codes()
    }

    /// Completes the sign-in of a pending device code as `username`; false if no such code is
    /// pending.
    pub fn approve_device_code(&self, user_code: &str, username: &str) -> bool {
        self.state().users().set_user_code_state(user_code, DeviceState::Approved(username.to_owned()))
    }

    /// The user refuses the sign-in: the next poll answers `authorization_declined`.
    pub fn decline_device_code(&self, user_code: &str) -> bool {
        self.state().users().set_user_code_state(user_code, DeviceState::Declined)
    }

    /// `interval` and `expires_in` of device codes issued from now on (Entra: 5 s and 15 min).
    pub fn set_device_code_timing(&self, interval: Duration, lifetime: Duration) {
        let mut users = self.state().users();
        users.device_interval = Some(interval);
        users.device_lifetime = Some(lifetime);
    }

    /// Refresh-token redemption in `tenant` fails like MFA (50076), conditional access (53003) or
    /// `interaction_required` (any other code) unless the token chain began with an interactive
    /// sign-in at that tenant.
    pub fn require_interaction(&self, tenant: &str, aadsts: u32) {
        self.state().users().require_interaction(crate::tenant_guid(tenant), aadsts);
    }

    pub fn clear_interaction(&self, tenant: &str) {
        self.state().users().clear_interaction(&crate::tenant_guid(tenant));
    }

    /// Revokes every refresh token issued to `username` (password reset, admin revocation);
    /// returns how many were live.
    pub fn revoke_refresh_tokens(&self, username: &str) -> usize {
        self.state().users().revoke_user(username)
    }

    /// When on, a refresh token stops working once it has been redeemed (so a client that does
    /// not keep the rotated one breaks). Entra itself keeps old ones valid.
    pub fn set_rotation_revokes_old(&self, on: bool) {
        self.state().users().rotation_revokes_old = on;
    }

    /// Every refresh token issued so far.
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.state().users().issued_refresh_tokens()
    }

    // ---- other client credentials ----

    /// Lets `client_id` authenticate with assertions signed by this certificate (DER).
    pub fn register_app_certificate(&self, client_id: &str, cert_der: &[u8]) {
        self.state().register_certificate(client_id, cert_der.to_vec());
    }

    /// Lets `client_id` authenticate with federated assertions from [`Self::issue_federated_token`]
    /// carrying this `subject`.
    pub fn register_federated_credential(&self, client_id: &str, subject: &str) {
        let issuer = self.federation_issuer();
        self.state().register_federated(client_id, &issuer, subject);
    }

    /// A federated identity token (as a Kubernetes service account token would be) for `subject`,
    /// signed by this authority, valid for `lifetime`.
    pub fn issue_federated_token(&self, subject: &str, lifetime: Duration) -> Result<String, String> {
        let now = crate::time::unix_now();
        let claims = serde_json::json!({
            "aud": "api://AzureADTokenExchange",
            "iss": self.federation_issuer(),
            "sub": subject,
            "iat": now, "nbf": now, "exp": now + lifetime.as_secs(),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        self.state().key.sign(&claims)
    }

    fn federation_issuer(&self) -> String {
        format!("{}/federation", self.state().authority)
    }
}
