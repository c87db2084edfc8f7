//! The device-code grant's polling side (PROTOCOLS.md §12.2): `authorization_pending` until the
//! user acts, `slow_down` when polled faster than the interval, `authorization_declined`,
//! `expired_token` after `expires_in`, `bad_verification_code` for an unknown code; tokens (with
//! a refresh token) once approved. The device authorization endpoint is `routes::devicecode`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::response::Response;

use super::TokenRequest;
use super::delegated::{issue_for_user, user_tid};
use crate::error::EntraError;
use crate::tenant::Tenant;
use crate::users::DeviceState;

pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Polls may come this much early without being told to slow down (timer and network jitter).
const POLL_TOLERANCE: Duration = Duration::from_millis(300);

enum Poll {
    Pending,
    SlowDown,
    Declined,
    Expired,
    Unknown,
    Approved { username: String, scope: String, tenant_path: String },
}

pub(crate) async fn handle(req: &TokenRequest<'_>) -> Result<Response, EntraError> {
    let client_id = req.params.require("client_id")?.to_owned();
    let device_code = req.params.require("device_code")?;
    let poll = {
        let mut users = req.state.users();
        let auto = users.auto_approve.clone();
        let now = Instant::now();
        match users.device_flow_mut(device_code) {
            None => Poll::Unknown,
            Some(flow) if !flow.client_id.eq_ignore_ascii_case(&client_id) => Poll::Unknown,
            Some(flow) if flow.expires <= now => Poll::Expired,
            Some(flow) => {
                let early = flow.last_poll.is_some_and(|t| now + POLL_TOLERANCE < t + flow.interval);
                flow.last_poll = Some(now);
                if flow.state == DeviceState::Pending
                    && let Some(user) = auto
                {
                    flow.state = DeviceState::Approved(user);
                }
                match (&flow.state, early) {
                    (DeviceState::Pending, true) => Poll::SlowDown,
                    (DeviceState::Pending, false) => Poll::Pending,
                    (DeviceState::Declined, _) => Poll::Declined,
                    (DeviceState::Approved(u), _) => Poll::Approved {
                        username: u.clone(),
                        scope: flow.scope.clone(),
                        tenant_path: flow.tenant_path.clone(),
                    },
                }
            }
        }
    };
    match poll {
        Poll::Pending => Err(EntraError::bad_request(
            "authorization_pending",
            70_016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        )),
        Poll::SlowDown => Err(EntraError::bad_request(
            "slow_down",
            70_016,
            "OAuth 2.0 device flow error. Polling too frequently; slow down.",
        )),
        Poll::Unknown => Err(EntraError::bad_request(
            "bad_verification_code",
            70_018,
            "The device code is not valid: it is unknown or was issued to another client.",
        )),
        Poll::Declined => {
            req.state.users().remove_device_flow(device_code);
            Err(EntraError::bad_request(
                "authorization_declined",
                70_000,
                "The user declined the sign-in request on the device.",
            ))
        }
        Poll::Expired => {
            req.state.users().remove_device_flow(device_code);
            Err(EntraError::bad_request(
                "expired_token",
                70_019,
                "Verification code expired. The user did not complete the sign-in in time.",
            ))
        }
        Poll::Approved { username, scope, tenant_path } => {
            req.state.users().remove_device_flow(device_code);
            let user = req.state.users().get(&username).cloned().ok_or_else(|| {
                EntraError::bad_request(
                    "invalid_grant",
                    50_034,
                    "The user account does not exist in this directory.",
                )
            })?;
            let tenant = Tenant::parse(&tenant_path)?;
            let tid = user_tid(&tenant, &user, &client_id)?;
            let interactive = HashSet::from([tid.clone()]);
            issue_for_user(req, &user, &tid, &client_id, &scope, interactive, false).await
        }
    }
}
