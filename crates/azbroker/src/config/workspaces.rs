//! `[workspaces.NAME]`: Azure ML workspaces. Each names its subscription, resource group and
//! workspace, the login to use and (once discovered by `azbroker workspace add`) the tenant the
//! subscription lives in. A workspace is also a profile of the same name, so its name works
//! wherever a profile name does (`/p/NAME/...`, `--profile NAME`).

use std::collections::BTreeMap;

use azbroker_core::{ProfileName, TenantId};

use super::reader::{Problems, Section};
use super::{Login, Profile};

/// An Azure ML workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub name: ProfileName,
    pub subscription_id: String,
    pub resource_group: String,
    pub workspace_name: String,
    pub login: ProfileName,
    pub tenant: TenantId,
}

impl Workspace {
    /// The `config.json` that azureml's `Workspace.from_config()` (and `MLClient.from_config()`)
    /// read.
    pub fn azureml_config(&self) -> serde_json::Value {
        serde_json::json!({
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "workspace_name": self.workspace_name,
        })
    }
}

/// A subscription id: a GUID.
pub fn subscription_id(raw: &str) -> Result<String, String> {
    let ok = raw.len() == 36
        && raw.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    if ok { Ok(raw.to_ascii_lowercase()) } else { Err("not a subscription id (a GUID)".into()) }
}

/// Parses the section and adds one profile per workspace to `profiles`.
pub fn section(
    s: Option<Section<'_>>,
    logins: &BTreeMap<ProfileName, Login>,
    profiles: &mut BTreeMap<ProfileName, Profile>,
    p: &mut Problems,
) -> BTreeMap<ProfileName, Workspace> {
    let mut out = BTreeMap::new();
    let Some(s) = s else { return out };
    for (name, w) in s.entries(p) {
        let keys = ["subscription_id", "resource_group", "workspace_name", "login", "tenant"];
        w.only(&[&keys[..], super::access::PROFILE_KEYS].concat(), p);
        // Who may use the workspace's tokens: the same keys as a profile's.
        let access = super::access::profile_access(&w, p);
        let Ok(ws_name) = ProfileName::parse(&name) else {
            p.push(&w.path, "workspace names may contain only letters, digits, '-', '_' and '.'");
            continue;
        };
        if azbroker_core::personal::is_reserved(&name) {
            p.push(&w.path, super::RESERVED);
            continue;
        }
        if profiles.contains_key(&ws_name) {
            p.push(
                &w.path,
                format!("'{name}' is also a profile name; a workspace is a profile, so pick another name"),
            );
            continue;
        }
        let sub = w.required_str("subscription_id", p).and_then(|raw| match subscription_id(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                p.push(&format!("{}.subscription_id", w.path), format!("'{raw}': {e}"));
                None
            }
        });
        let group = w.required_str("resource_group", p).map(str::to_owned);
        let workspace = w.required_str("workspace_name", p).map(str::to_owned);
        let login = w.required_str("login", p).and_then(|l| {
            let found = ProfileName::parse(l).ok().and_then(|n| logins.get(&n));
            if found.is_none() {
                p.push(&format!("{}.login", w.path), format!("'{l}' is not a configured login"));
            }
            found
        });
        let tenant = w.parsed("tenant", p, TenantId::parse);
        let (Some(sub), Some(group), Some(workspace), Some(login)) = (sub, group, workspace, login) else {
            continue;
        };
        let tenant = tenant.unwrap_or_else(|| login.tenant.clone());
        profiles.insert(
            ws_name.clone(),
            Profile {
                name: ws_name.clone(),
                login: login.name.clone(),
                tenant: tenant.clone(),
                aliases: vec![],
                accept_any_client_id: false,
                prefetch: vec![],
                listen: vec![],
                access,
            },
        );
        out.insert(
            ws_name.clone(),
            Workspace {
                name: ws_name,
                subscription_id: sub,
                resource_group: group,
                workspace_name: workspace,
                login: login.name.clone(),
                tenant,
            },
        );
    }
    out
}
