//! A faithful fake of Microsoft Entra ID's v2 authority over real HTTP on loopback, for tests,
//! benchmarks and the daemon's offline demo (`azbroker serve --local-authority`).
//!
//! [`FakeEntra::start`] binds `127.0.0.1:0` and serves, on the caller's tokio runtime:
//!
//! * `POST /{tenant}/oauth2/v2.0/token` — the `client_credentials` grant (secret in the body or
//!   HTTP Basic; `client_assertion` in permissive mode), minting RS256 JWTs with Entra's v1.0
//!   app-token claims; errors in Entra's exact body shape (PROTOCOLS.md §12.5);
//! * the delegated grants for scripted users: device code (`POST /{tenant}/oauth2/v2.0/devicecode`
//!   and its polling states), authorization code + PKCE (`GET /{tenant}/oauth2/v2.0/authorize`
//!   signs the scripted browser user in and redirects to the loopback `redirect_uri`), and refresh
//!   tokens redeemable in every tenant the user reaches, rotated on every use, revocable, with
//!   MFA / conditional-access demands per tenant;
//! * certificate assertions verified against registered certificates (PS256/RS256, `x5t#S256`,
//!   `aud`, `exp`), and federated assertions it minted itself;
//! * a sliver of ARM: the unauthenticated `GET /subscriptions/{id}` challenge and `GET /tenants`;
//! * `GET /{tenant}/discovery/v2.0/keys` (JWKS), `GET /{tenant}/v2.0/.well-known/openid-configuration`
//!   and `GET /common/discovery/instance`;
//! * `GET /subscriptions` — ARM's subscription list for a bearer token this authority minted (one
//!   subscription in the token's tenant), which `az login --identity` needs.
//!
//! Tests steer it through the handle: registered apps, permissive mode, token lifetime, denied
//! tenants and resources, injected `Fault`s, and request counters. That steering (`steer`), fault
//! injection (`fault`) and the test certificate generator sit behind the `testing` feature: the
//! daemon's `--local-authority` links only the authority itself.
//!
//! Layout: `server` (handle and lifecycle), `state` (shared state and counters), `routes`
//! (HTTP surface), `grant` (one module per grant type), `client_auth`, `scope`, `tenant`,
//! `issue` (claims and signing), `keys` (RSA key, JWKS, verification), `error` (Entra error
//! bodies), `steer` and `fault` (test-only), `form`, `jwt`, `listener`, `time`.
//!
//! This crate never prints to stdout, never logs secrets or tokens (tracing at debug level only),
//! never panics on client input, and listens wherever [`Options::bind`] says (loopback by default).

mod cert;
mod client_auth;
mod error;
#[cfg(feature = "testing")]
mod fault;
mod form;
#[cfg(feature = "fuzz")]
pub mod fuzz;
mod grant;
mod issue;
mod jwt;
mod keys;
mod listener;
mod routes;
mod scope;
mod server;
mod state;
#[cfg(feature = "testing")]
mod steer;
mod tenant;
mod time;
mod users;

#[cfg(feature = "testing")]
pub use cert::TestCertificate;
pub use cert::sha256_thumbprint;
pub use error::EntraError;
#[cfg(feature = "testing")]
pub use fault::Fault;
pub use jwt::decode_claims;
pub use routes::arm_subscriptions::subscription_id;
pub use server::{FakeEntra, Options, PeerFilter};
pub use tenant::tenant_guid;

/// Largest token-request body the fake reads; bigger ones get 413 with an Entra error body.
pub const MAX_TOKEN_REQUEST_BYTES: usize = routes::MAX_BODY_BYTES;
