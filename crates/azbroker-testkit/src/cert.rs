//! Certificates for certificate-credential tests: a self-signed RSA certificate generator (for
//! test fixtures and the demo), the SHA-256/SHA-1 thumbprints Entra matches `x5t#S256`/`x5t`
//! against, and extraction of the public key an assertion must verify under.

use aws_lc_rs::digest;

use crate::jwt::b64;

/// A freshly generated self-signed RSA-2048 certificate and its private key.
#[cfg(feature = "testing")]
#[derive(Clone)]
pub struct TestCertificate {
    /// `-----BEGIN CERTIFICATE-----` PEM.
    pub cert_pem: String,
    /// `-----BEGIN PRIVATE KEY-----` (PKCS#8) PEM.
    pub key_pem: String,
    /// The certificate's DER bytes.
    pub der: Vec<u8>,
    /// The private key as PKCS#8 DER.
    pub key_pkcs8_der: Vec<u8>,
}

#[cfg(feature = "testing")]
impl std::fmt::Debug for TestCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCertificate").field("x5t#S256", &sha256_thumbprint(&self.der)).finish()
    }
}

#[cfg(feature = "testing")]
impl TestCertificate {
    /// Generates a key pair and a certificate for `CN=common_name`. CPU-bound (tens of ms).
    pub fn generate(common_name: &str) -> Result<Self, String> {
        let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .map_err(|e| format!("RSA key generation failed: {e}"))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        let cert = params.self_signed(&key).map_err(|e| format!("certificate signing failed: {e}"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            key_pkcs8_der: key.serialize_der(),
        })
    }

    /// The certificate PEM followed by the key PEM: the `certificate_file` format.
    pub fn combined_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// base64url(SHA-256(DER)): the `x5t#S256` header value.
pub fn sha256_thumbprint(der: &[u8]) -> String {
    b64(digest::digest(&digest::SHA256, der).as_ref())
}

/// base64url(SHA-1(DER)): the legacy `x5t` header value.
pub(crate) fn sha1_thumbprint(der: &[u8]) -> String {
    b64(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref())
}

/// The DER `SubjectPublicKeyInfo` of an X.509 certificate.
pub(crate) fn subject_public_key_info(cert: &[u8]) -> Result<&[u8], String> {
    let (tag, cert_body, _) = tlv(cert)?;
    expect(tag, 0x30, "Certificate")?;
    let (tag, tbs, _) = tlv(cert_body)?;
    expect(tag, 0x30, "TBSCertificate")?;
    let mut rest = tbs;
    // Optional [0] version, then serial, signature, issuer, validity, subject.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    for what in ["serialNumber", "signature", "issuer", "validity", "subject"] {
        rest = tlv(rest).map_err(|e| format!("{what}: {e}"))?.2;
    }
    let (tag, _, after) = tlv(rest)?;
    expect(tag, 0x30, "SubjectPublicKeyInfo")?;
    Ok(&rest[..rest.len() - after.len()])
}

fn expect(tag: u8, want: u8, what: &str) -> Result<(), String> {
    if tag == want { Ok(()) } else { Err(format!("{what}: unexpected DER tag {tag:#x}")) }
}

/// One DER tag-length-value: (tag, contents, the bytes after it).
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("truncated DER")?;
    let (&first, rest) = rest.split_first().ok_or("truncated DER length")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("unsupported DER length".into());
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err("DER value runs past the end".into());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_has_an_rsa_public_key() {
        let cert = TestCertificate::generate("azbroker test").unwrap();
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let spki = subject_public_key_info(&cert.der).unwrap();
        assert_eq!(spki[0], 0x30);
        assert!(spki.len() > 256, "an RSA-2048 key is at least 256 bytes");
        assert_eq!(sha256_thumbprint(&cert.der).len(), 43);
        assert!(subject_public_key_info(&cert.der[..20]).is_err());
    }
}
