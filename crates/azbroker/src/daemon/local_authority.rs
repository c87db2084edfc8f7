//! `azbroker serve --local-authority`: the embedded fake Entra authority (crate
//! `azbroker-testkit`) for the offline demo, and the demo login and profile it adds to a config
//! without profiles. Behind the `local-authority` cargo feature (on by default); a build without
//! it keeps the flag and refuses it with a clear error instead of serving.
//!
//! Tokens it signs are never valid in Azure; it says so loudly at start. They are still signed by
//! the key the daemon's own tokens are, and its token endpoint issues them without any of the
//! daemon's allow-lists, so it serves only connections whose peer socket belongs to the daemon's
//! own user (asked of the kernel, as for token requests); every other connection is closed
//! unanswered.

use anyhow::Result;

use crate::config::Config;

#[cfg(feature = "local-authority")]
pub(crate) use enabled::{LocalAuthority, start};

#[cfg(not(feature = "local-authority"))]
pub(crate) use disabled::{LocalAuthority, start};

#[cfg(feature = "local-authority")]
mod enabled {
    use anyhow::{Context, Result};
    use azbroker_core::{ProfileName, Secret, TenantId};
    use azbroker_entra::SecretRef;
    use azbroker_testkit::{FakeEntra, Options, PeerFilter};

    use crate::config::{Config, Login, LoginKind, Profile};

    /// The user the local authority signs in without asking.
    const LOCAL_DEMO_USER: &str = "demo@local.azbroker.invalid";
    /// The tenant of the demo user and the demo service principal.
    const LOCAL_TENANT: &str = "local.azbroker.invalid";
    /// A subscription in that tenant, for trying `azbroker workspace add` offline.
    pub(crate) const LOCAL_SUBSCRIPTION: &str = "00000000-0000-4000-8000-00000000a2b0";

    /// The running local authority; it stops on [`LocalAuthority::shutdown`] or when dropped.
    pub(crate) struct LocalAuthority(FakeEntra);

    impl LocalAuthority {
        /// The authority host (`http://127.0.0.1:port`).
        pub(crate) fn url(&self) -> String {
            self.0.url()
        }

        /// The ARM endpoint it also plays (the same host).
        pub(crate) fn arm_url(&self) -> String {
            self.0.arm_url()
        }

        pub(crate) fn shutdown(&self) {
            self.0.shutdown();
        }
    }

    /// Starts the embedded fake authority and, when the config has no profiles (or there is no
    /// config file at all), adds a demo service principal as the default profile. A demo user who
    /// signs in at once is there too, so `azbroker login` can be tried offline.
    pub(crate) async fn start(config: &mut Config) -> Result<LocalAuthority> {
        let me = crate::paths::current_uid();
        let own = PeerFilter(std::sync::Arc::new(move |local, peer| {
            azbroker_server::identity::tcp_owner(local, peer).is_ok_and(|uid| uid == me)
        }));
        let opts = Options { permissive: true, admit: Some(own), ..Default::default() };
        let local = FakeEntra::start_with(opts).await.context("cannot start the local authority")?;
        tracing::warn!(
            authority = %local.url(),
            "LOCAL AUTHORITY MODE: tokens are signed by a key generated at start and are NOT valid in Azure"
        );
        local.add_user(LOCAL_DEMO_USER, &[LOCAL_TENANT]);
        local.register_subscription(LOCAL_SUBSCRIPTION, LOCAL_TENANT);
        local.auto_approve_device_codes(Some(LOCAL_DEMO_USER));
        local.set_browser_user(Some(LOCAL_DEMO_USER));
        // With no config file the built-in user login `me` stays (sign in as the demo user with
        // `azbroker login`), and the demo service principal becomes the default profile.
        if config.profiles.is_empty() || config.origin.is_none() {
            add_demo_profile(config)?;
        }
        Ok(LocalAuthority(local))
    }

    fn add_demo_profile(config: &mut Config) -> Result<()> {
        let name = ProfileName::parse("local").context("built-in profile name")?;
        let tenant = TenantId::parse(LOCAL_TENANT).context("built-in tenant")?;
        config.logins.insert(
            name.clone(),
            Login {
                name: name.clone(),
                tenant: tenant.clone(),
                kind: LoginKind::ServicePrincipal {
                    client_id: "00000000-0000-0000-0000-0000000a2b0c".into(),
                    secret: SecretRef::Inline(Secret::new("local-authority-demo")),
                },
                fingerprint: "local".into(),
            },
        );
        config.profiles.insert(
            name.clone(),
            Profile {
                name: name.clone(),
                login: name.clone(),
                tenant,
                aliases: vec![],
                accept_any_client_id: true,
                prefetch: vec![],
                listen: vec![],
                access: Default::default(),
            },
        );
        config.server.default_profile = Some(name);
        Ok(())
    }
}

#[cfg(not(feature = "local-authority"))]
mod disabled {
    use anyhow::{Result, bail};

    use crate::config::Config;

    /// Never constructed: a build without the feature cannot start a local authority.
    pub(crate) enum LocalAuthority {}

    impl LocalAuthority {
        pub(crate) fn url(&self) -> String {
            match *self {}
        }

        pub(crate) fn arm_url(&self) -> String {
            match *self {}
        }

        pub(crate) fn shutdown(&self) {
            match *self {}
        }
    }

    pub(crate) async fn start(_config: &mut Config) -> Result<LocalAuthority> {
        bail!(
            "--local-authority: this build of azbroker has no local authority (built without the \
             `local-authority` feature); point a profile at a real Entra ID tenant instead"
        )
    }
}

/// Starts the local authority when `wanted` (`--local-authority`); see [`start`].
pub(crate) async fn start_if(wanted: bool, config: &mut Config) -> Result<Option<LocalAuthority>> {
    if wanted { start(config).await.map(Some) } else { Ok(None) }
}
