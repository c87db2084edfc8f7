//! The self-service requests of a shared machine (`/v1/self/...`): a user's personal workspaces.
//! Sign-in, sign-out and tenants reuse the login types.

use serde::{Deserialize, Serialize};

/// `POST /v1/self/workspaces`: an Azure ML workspace of the caller's own, served as their
/// profile `name` (private to them; two users may both have `ml`). Its tenant is discovered
/// from the subscription unless given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceRequest {
    pub name: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub workspace_name: String,
    #[serde(default)]
    pub tenant: Option<String>,
}

/// One personal workspace as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalWorkspace {
    pub name: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub workspace_name: String,
    pub tenant: String,
}

/// `DELETE /v1/self/workspaces/{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceRemoved {
    pub removed: bool,
}
