//! A Java trust store for the Service Fabric dialect. MSAL4J (which Java azure-identity uses)
//! never pins `IDENTITY_SERVER_THUMBPRINT`, so a JVM checks the self-signed certificate against
//! its trust store only. `serve` writes, next to the public certificate, a PKCS#12 store holding
//! the platform's CA roots and the Service Fabric certificate; `azbroker env --dialect
//! service-fabric` points `JAVA_TOOL_OPTIONS` at it. `javax.net.ssl.trustStore` replaces the
//! JVM's own CA set for the whole process, hence the roots: the service still reaches Azure.
//!
//! The store has no password, no MAC and no encryption (it holds only public certificates):
//! Java 17 loads such a store with `javax.net.ssl.trustStorePassword` unset, and ignores a
//! password when one is set. Each certificate is a PKCS#12 `certBag` carrying Java's
//! trusted-key-usage attribute, without which Java treats a bare certificate as part of a key's
//! chain and not as a trust anchor.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use yasna::models::ObjectIdentifier;
use yasna::{DERWriter, Tag};

use crate::config::Config;

/// In the runtime directory, next to the public certificate; world-readable.
pub const FILE: &str = "service-fabric-truststore.p12";

/// The store's alias for the Service Fabric certificate.
pub const OWN_ALIAS: &str = "azbroker-service-fabric";

/// `id-data` (PKCS#7).
const DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
/// `certBag` (PKCS#12 bag types).
const CERT_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 3];
/// `x509Certificate` (PKCS#9 certificate types).
const X509_CERTIFICATE: &[u64] = &[1, 2, 840, 113549, 1, 9, 22, 1];
/// `friendlyName` (PKCS#9): the entry's alias.
const FRIENDLY_NAME: &[u64] = &[1, 2, 840, 113549, 1, 9, 20];
/// Oracle's trusted-key-usage attribute: Java loads a certificate bag as a trusted entry only
/// when it carries this.
pub const JAVA_TRUSTED_KEY_USAGE: &[u64] = &[2, 16, 840, 1, 113_894, 746_875, 1, 1];
/// `anyExtendedKeyUsage`: what keytool records for a certificate imported as trusted.
const ANY_EXTENDED_KEY_USAGE: &[u64] = &[2, 5, 29, 37, 0];

/// Where the store lives.
pub fn path(config: &Config) -> PathBuf {
    config.server.runtime_dir.join(FILE)
}

/// The JVM options that adopt the store at `path`. A path with white space is quoted the way
/// the JVM splits `JAVA_TOOL_OPTIONS`.
pub fn java_options(path: &Path) -> String {
    let p = path.display().to_string();
    let p = if p.chars().any(char::is_whitespace) { format!("\"{p}\"") } else { p };
    format!("-Djavax.net.ssl.trustStore={p} -Djavax.net.ssl.trustStoreType=PKCS12")
}

/// `JAVA_TOOL_OPTIONS` for a caller whose own value is `current`: theirs first and ours last
/// (the JVM keeps the last value of a repeated `-D`), unchanged when it already holds ours.
pub fn merge_java_options(current: Option<&str>, ours: &str) -> String {
    match current.map(str::trim) {
        None | Some("") => ours.to_owned(),
        Some(theirs) if theirs.contains(ours) => theirs.to_owned(),
        Some(theirs) => format!("{theirs} {ours}"),
    }
}

/// The platform's CA roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` when set, else the system bundle),
/// as rustls-native-certs finds them. Unreadable entries are logged and skipped.
pub fn system_roots() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "Java trust store: a system CA root could not be read");
    }
    if found.certs.is_empty() {
        tracing::warn!(
            "Java trust store: no system CA roots found; a JVM that adopts it trusts only the Service Fabric certificate"
        );
    }
    found.certs
}

/// The PKCS#12 store: `own` under [`OWN_ALIAS`], then each of `roots` as `system-root-N`, every
/// one a trusted certificate entry.
pub fn pkcs12(own: &CertificateDer<'_>, roots: &[CertificateDer<'_>]) -> Vec<u8> {
    let entries: Vec<(String, &[u8])> = std::iter::once((OWN_ALIAS.to_owned(), own.as_ref()))
        .chain(roots.iter().enumerate().map(|(i, c)| (format!("system-root-{}", i + 1), c.as_ref())))
        .collect();
    let safe_contents = yasna::construct_der(|w| {
        w.write_sequence_of(|w| {
            for (alias, der) in &entries {
                cert_bag(w.next(), alias, der);
            }
        });
    });
    let auth_safe = yasna::construct_der(|w| w.write_sequence_of(|w| data(w.next(), &safe_contents)));
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(3);
            data(w.next(), &auth_safe);
        });
    })
}

/// `ContentInfo { id-data, [0] OCTET STRING }`.
fn data(w: DERWriter<'_>, content: &[u8]) {
    w.write_sequence(|w| {
        w.next().write_oid(&ObjectIdentifier::from_slice(DATA));
        w.next().write_tagged(Tag::context(0), |w| w.write_bytes(content));
    });
}

/// `SafeBag { certBag, [0] CertBag { x509Certificate, [0] OCTET STRING }, attributes }`.
fn cert_bag(w: DERWriter<'_>, alias: &str, der: &[u8]) {
    w.write_sequence(|w| {
        w.next().write_oid(&ObjectIdentifier::from_slice(CERT_BAG));
        w.next().write_tagged(Tag::context(0), |w| {
            w.write_sequence(|w| {
                w.next().write_oid(&ObjectIdentifier::from_slice(X509_CERTIFICATE));
                w.next().write_tagged(Tag::context(0), |w| w.write_bytes(der));
            });
        });
        w.next().write_set_of(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&ObjectIdentifier::from_slice(FRIENDLY_NAME));
                w.next().write_set_of(|w| w.next().write_bmp_string(alias));
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&ObjectIdentifier::from_slice(JAVA_TRUSTED_KEY_USAGE));
                w.next().write_set_of(|w| {
                    w.next().write_oid(&ObjectIdentifier::from_slice(ANY_EXTENDED_KEY_USAGE))
                });
            });
        });
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use yasna::{ASN1Result, BERReader};

    /// One entry read back: alias, certificate DER, whether Java's trusted attribute is there.
    #[derive(Debug)]
    pub struct Entry {
        pub alias: String,
        pub der: Vec<u8>,
        pub trusted: bool,
    }

    fn oid(r: BERReader<'_, '_>, want: &[u64]) -> ASN1Result<()> {
        let got = r.read_oid()?;
        assert_eq!(got, ObjectIdentifier::from_slice(want));
        Ok(())
    }

    fn read_data(r: BERReader<'_, '_>) -> ASN1Result<Vec<u8>> {
        r.read_sequence(|r| {
            oid(r.next(), DATA)?;
            r.next().read_tagged(Tag::context(0), |r| r.read_bytes())
        })
    }

    /// Parses a store as [`pkcs12`] writes it (DER, strictly), independently of the writer.
    pub fn parse(p12: &[u8]) -> Vec<Entry> {
        let auth_safe = yasna::parse_der(p12, |r| {
            r.read_sequence(|r| {
                assert_eq!(r.next().read_u8()?, 3, "PFX version");
                read_data(r.next())
            })
        })
        .unwrap();
        let safes = yasna::parse_der(&auth_safe, |r| r.collect_sequence_of(|r| read_data(r))).unwrap();
        let mut out = Vec::new();
        for safe in safes {
            let bags = yasna::parse_der(&safe, |r| {
                r.collect_sequence_of(|r| {
                    r.read_sequence(|r| {
                        oid(r.next(), CERT_BAG)?;
                        let der = r.next().read_tagged(Tag::context(0), |r| {
                            r.read_sequence(|r| {
                                oid(r.next(), X509_CERTIFICATE)?;
                                r.next().read_tagged(Tag::context(0), |r| r.read_bytes())
                            })
                        })?;
                        let (mut alias, mut trusted) = (String::new(), false);
                        r.next().read_set_of(|r| {
                            r.read_sequence(|r| {
                                let id = r.next().read_oid()?;
                                if id == ObjectIdentifier::from_slice(FRIENDLY_NAME) {
                                    alias = r.next().collect_set_of(|r| r.read_bmp_string())?.concat();
                                } else if id == ObjectIdentifier::from_slice(JAVA_TRUSTED_KEY_USAGE) {
                                    let usages = r.next().collect_set_of(|r| r.read_oid())?;
                                    trusted =
                                        usages == [ObjectIdentifier::from_slice(ANY_EXTENDED_KEY_USAGE)];
                                } else {
                                    r.next().read_der()?;
                                }
                                Ok(())
                            })
                        })?;
                        Ok(Entry { alias, der, trusted })
                    })
                })
            })
            .unwrap();
            out.extend(bags);
        }
        out
    }

    #[test]
    fn holds_every_root_and_our_certificate_as_trusted_entries() {
        let own = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x07]);
        let roots = [CertificateDer::from(vec![0x30, 0x00]), CertificateDer::from(vec![0x30, 0x01, 0x05])];
        let entries = parse(&pkcs12(&own, &roots));
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].alias, OWN_ALIAS);
        assert_eq!(entries[0].der, own.as_ref());
        assert_eq!(entries[2].alias, "system-root-2");
        assert_eq!(entries[2].der, roots[1].as_ref());
        assert!(entries.iter().all(|e| e.trusted), "{entries:?}");
        let aliases: std::collections::BTreeSet<_> = entries.iter().map(|e| e.alias.as_str()).collect();
        assert_eq!(aliases.len(), entries.len(), "aliases are unique (Java keys entries by alias)");
    }

    #[test]
    fn this_machines_roots_are_found() {
        // The platform bundle (ca-certificates) is on every machine the daemon supports.
        let roots = system_roots();
        assert!(roots.len() > 10, "only {} system roots", roots.len());
    }

    #[test]
    fn java_options_and_merging() {
        let ours = java_options(Path::new("/run/azbroker/service-fabric-truststore.p12"));
        assert_eq!(
            ours,
            "-Djavax.net.ssl.trustStore=/run/azbroker/service-fabric-truststore.p12 -Djavax.net.ssl.trustStoreType=PKCS12"
        );
        assert!(java_options(Path::new("/a b/x.p12")).contains("trustStore=\"/a b/x.p12\" "));
        assert_eq!(merge_java_options(None, &ours), ours);
        assert_eq!(merge_java_options(Some("  "), &ours), ours);
        assert_eq!(merge_java_options(Some("-Xmx1g"), &ours), format!("-Xmx1g {ours}"));
        let merged = merge_java_options(Some("-Xmx1g"), &ours);
        assert_eq!(merge_java_options(Some(&merged), &ours), merged, "applying twice changes nothing");
    }
}
