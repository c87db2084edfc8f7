//! The fake authority's HTTP surface: which path goes to which handler. Handlers live in one
//! module per endpoint family; this file only wires them.

mod arm;
pub(crate) mod arm_subscriptions;
mod discovery;
mod token;
mod user_flows;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, get, post};

use crate::state::State;

pub(crate) use token::MAX_BODY_BYTES;

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", any(token::token))
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::keys_v2))
        .route("/{tenant}/discovery/keys", get(discovery::keys_v1))
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/common/discovery/instance", get(discovery::instance))
        .route("/subscriptions", get(arm_subscriptions::list))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(user_flows::devicecode))
        .route("/{tenant}/oauth2/v2.0/authorize", get(user_flows::authorize))
        .route("/subscriptions/{id}", get(arm::subscription))
        .route("/tenants", get(arm::tenants))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
}
