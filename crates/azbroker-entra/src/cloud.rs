//! Azure national clouds and authority hosts: which login and ARM endpoints each cloud uses, and
//! the validation of a custom authority URL (https, or plain http only on loopback, for tests and
//! the offline demo). Pure parsing; no I/O.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use url::{Host, Url};

/// An Azure cloud, named as the Azure CLI names it (`az cloud list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CloudName {
    /// Azure public cloud.
    #[default]
    AzureCloud,
    /// Azure operated by 21Vianet.
    AzureChinaCloud,
    /// Azure Government (US).
    AzureUSGovernment,
}

impl CloudName {
    /// Every cloud, in the order error messages list them.
    pub const ALL: [CloudName; 3] = [Self::AzureCloud, Self::AzureChinaCloud, Self::AzureUSGovernment];

    /// The Entra ID login host, without a trailing slash.
    pub fn authority_host(&self) -> &'static str {
        match self {
            Self::AzureCloud => "https://login.microsoftonline.com",
            Self::AzureChinaCloud => "https://login.chinacloudapi.cn",
            Self::AzureUSGovernment => "https://login.microsoftonline.us",
        }
    }

    /// The Azure Resource Manager endpoint, without a trailing slash.
    pub fn arm_endpoint(&self) -> &'static str {
        match self {
            Self::AzureCloud => "https://management.azure.com",
            Self::AzureChinaCloud => "https://management.chinacloudapi.cn",
            Self::AzureUSGovernment => "https://management.usgovcloudapi.net",
        }
    }

    /// The canonical name (`AzureCloud`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AzureCloud => "AzureCloud",
            Self::AzureChinaCloud => "AzureChinaCloud",
            Self::AzureUSGovernment => "AzureUSGovernment",
        }
    }
}

impl fmt::Display for CloudName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CloudName {
    type Err = String;

    /// Case-insensitive; the error names every accepted value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Self::ALL.into_iter().find(|c| c.as_str().eq_ignore_ascii_case(wanted)).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(CloudName::as_str).collect();
            format!("unknown cloud '{wanted}'; expected one of {}", names.join(", "))
        })
    }
}

/// Parses an authority host such as `https://login.microsoftonline.com`.
///
/// Accepts `https://` anything, and `http://` only when the host is loopback (`localhost`,
/// `127.0.0.0/8`, `[::1]`), so a fake authority can run in tests without TLS while a typo can
/// never send a client secret over plain HTTP. Rejects credentials, a query and a fragment; trims
/// trailing slashes from the path. The error is a sentence fit for a config error report.
pub fn parse_authority_host(raw: &str) -> Result<Url, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("the authority host is empty; expected a URL such as https://login.microsoftonline.com"
            .to_owned());
    }
    let mut url = Url::parse(text).map_err(|e| {
        // Never echo something that may carry a password.
        let shown = if text.contains('@') { "(hidden: contains '@')" } else { text };
        format!("authority host '{shown}' is not a valid URL: {e}")
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the authority host must not contain a user name or password".to_owned());
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_url(&url) => {}
        "http" => {
            return Err(format!(
                "authority host '{text}' uses http://, which is allowed only for a loopback host \
                 (localhost, 127.0.0.0/8, [::1]); use https://"
            ));
        }
        other => return Err(format!("authority host '{text}' uses scheme '{other}'; expected https://")),
    }
    if url.host().is_none() {
        return Err(format!("authority host '{text}' has no host name"));
    }
    if url.query().is_some() {
        return Err(format!("authority host '{text}' must not have a query string ('?...')"));
    }
    if url.fragment().is_some() {
        return Err(format!("authority host '{text}' must not have a fragment ('#...')"));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// True when the URL's host is `localhost`, in `127.0.0.0/8` or `::1`.
pub(crate) fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => Ipv4Addr::is_loopback(&ip),
        Some(Host::Ipv6(ip)) => Ipv6Addr::is_loopback(&ip),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_names_parse_case_insensitively() {
        assert_eq!("AzureCloud".parse(), Ok(CloudName::AzureCloud));
        assert_eq!("azurecloud".parse(), Ok(CloudName::AzureCloud));
        assert_eq!("AZURECHINACLOUD".parse(), Ok(CloudName::AzureChinaCloud));
        assert_eq!(" azureUSGovernment ".parse(), Ok(CloudName::AzureUSGovernment));
        for cloud in CloudName::ALL {
            assert_eq!(cloud.as_str().parse(), Ok(cloud));
            assert_eq!(cloud.to_string(), cloud.as_str());
        }
    }

    #[test]
    fn unknown_cloud_lists_accepted_names() {
        let err = "AzureGermanCloud".parse::<CloudName>().unwrap_err();
        assert!(err.contains("AzureGermanCloud"), "{err}");
        for cloud in CloudName::ALL {
            assert!(err.contains(cloud.as_str()), "{err}");
        }
    }

    #[test]
    fn cloud_endpoints() {
        assert_eq!(CloudName::AzureCloud.authority_host(), "https://login.microsoftonline.com");
        assert_eq!(CloudName::AzureChinaCloud.authority_host(), "https://login.chinacloudapi.cn");
        assert_eq!(CloudName::AzureUSGovernment.authority_host(), "https://login.microsoftonline.us");
        assert_eq!(CloudName::AzureCloud.arm_endpoint(), "https://management.azure.com");
        assert_eq!(CloudName::AzureChinaCloud.arm_endpoint(), "https://management.chinacloudapi.cn");
        assert_eq!(CloudName::AzureUSGovernment.arm_endpoint(), "https://management.usgovcloudapi.net");
        assert_eq!(CloudName::default(), CloudName::AzureCloud);
        for cloud in CloudName::ALL {
            let url = parse_authority_host(cloud.authority_host()).unwrap();
            assert_eq!(url.scheme(), "https");
            assert!(parse_authority_host(cloud.arm_endpoint()).is_ok());
        }
    }

    #[test]
    fn authority_host_accepts() {
        let cases = [
            ("https://login.microsoftonline.com", "https://login.microsoftonline.com/"),
            ("https://login.microsoftonline.com/", "https://login.microsoftonline.com/"),
            ("https://LOGIN.microsoftonline.com//", "https://login.microsoftonline.com/"),
            ("https://login.example.com:8443/prefix/", "https://login.example.com:8443/prefix"),
            ("http://localhost:1234", "http://localhost:1234/"),
            ("http://LocalHost:1234/", "http://localhost:1234/"),
            ("http://127.0.0.1:5000", "http://127.0.0.1:5000/"),
            ("http://127.3.4.5", "http://127.3.4.5/"),
            ("http://[::1]:8080/", "http://[::1]:8080/"),
            ("  https://login.microsoftonline.us  ", "https://login.microsoftonline.us/"),
        ];
        for (raw, want) in cases {
            let got = parse_authority_host(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(got.as_str(), want, "{raw}");
        }
    }

    #[test]
    fn authority_host_rejects() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("login.microsoftonline.com", "not a valid URL"),
            ("http://login.microsoftonline.com", "loopback"),
            ("http://10.0.0.1:80", "loopback"),
            ("http://[::2]:80", "loopback"),
            ("http://localhost.example.com", "loopback"),
            ("ftp://login.microsoftonline.com", "scheme 'ftp'"),
            ("https://user:pw@login.microsoftonline.com", "user name or password"),
            ("ftp://user:pw@login.microsoftonline.com", "user name or password"),
            ("https://login.microsoftonline.com/?x=1", "query"),
            ("https://login.microsoftonline.com/?", "query"),
            ("https://login.microsoftonline.com/#frag", "fragment"),
        ];
        for (raw, want) in cases {
            let err = parse_authority_host(raw).expect_err(raw);
            assert!(err.contains(want), "{raw}: {err}");
        }
    }

    #[test]
    fn credentials_never_echoed() {
        for raw in ["https://user:hunter2@login.microsoftonline.com", "https://user:hunter2@[::zz]/"] {
            let err = parse_authority_host(raw).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
