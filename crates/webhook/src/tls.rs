//! TLS material: a generated CA and serving certificate, rustls server configs (ring,
//! TLS 1.2+), certificate expiry, and reloading certificate files when they change.
//!
//! A generated certificate is always a leaf signed by a generated CA: rustls (and so
//! kube-rs clients) reject a self-signed leaf given as its own CA (kube-rs#1767).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Something wrong with TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating a key or certificate failed.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what}: {problem}")]
    Pem {
        /// Which file or input.
        what: String,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the certificate and key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A CA and a serving certificate signed by it, all PEM.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate: the webhook configuration's `caBundle`.
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key (PKCS#8).
    pub key_pem: String,
    /// The serving certificate's notAfter, as a Unix timestamp.
    pub not_after: i64,
}

impl Pki {
    /// Generates a CA (`CN=<ca_name>`) and a serving certificate for `dns_names` and `ips`,
    /// both valid for `days` days from now.
    pub fn generate(
        ca_name: &str,
        dns_names: &[String],
        ips: &[IpAddr],
        days: u32,
    ) -> Result<Self, TlsError> {
        let now = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(unix_now().max(0) as u64);
        let not_before = now - Duration::from_secs(300);
        let not_after = now + Duration::from_secs(u64::from(days) * 86_400);

        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        ca.not_before = not_before;
        ca.not_after = not_after;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate()?;
        let mut leaf = server_params(dns_names, ips)?;
        leaf.not_before = not_before;
        leaf.not_after = not_after;
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: not_after.unix_timestamp(),
        })
    }
}

/// A CA certificate and its key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPair {
    /// The CA certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// A serving certificate and its key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafPair {
    /// The serving certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

fn rcgen_time(unix: i64) -> time::OffsetDateTime {
    rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(unix.max(0) as u64)
}

/// Generates a CA (`CN=<cn>`) valid from `now - 5 min` until `now + validity`.
pub fn generate_ca(cn: &str, now: i64, validity: Duration) -> Result<CaPair, TlsError> {
    let key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name.push(DnType::CommonName, cn);
    ca.not_before = rcgen_time(now - 300);
    ca.not_after = rcgen_time(now) + validity;
    let cert = ca.self_signed(&key)?;
    Ok(CaPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A serving certificate's parameters: the DNS and IP SANs, the first name as CN,
/// server-auth usage. Validity is the caller's.
fn server_params(dns_names: &[String], ips: &[IpAddr]) -> Result<CertificateParams, TlsError> {
    let mut leaf = CertificateParams::new(dns_names.to_vec())?;
    for ip in ips {
        leaf.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let cn = dns_names
        .first()
        .cloned()
        .unwrap_or_else(|| "tandem-webhook".into());
    leaf.distinguished_name.push(DnType::CommonName, cn);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    Ok(leaf)
}

/// Issues a serving certificate for `dns_names` and `ips` signed by `ca`, valid from
/// `now - 5 min` until `now + validity`, but never past `not_after_max` (the CA's end).
pub fn issue_leaf(
    ca: &CaPair,
    dns_names: &[String],
    ips: &[IpAddr],
    now: i64,
    validity: Duration,
    not_after_max: i64,
) -> Result<LeafPair, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut leaf = server_params(dns_names, ips)?;
    leaf.not_before = rcgen_time(now - 300);
    let end = (now.saturating_add(validity.as_secs() as i64)).min(not_after_max);
    leaf.not_after = rcgen_time(end);
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(LeafPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What tandem needs to know about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The certificate (DER), to compare certificates exactly.
    pub der: Vec<u8>,
    /// Subject, as text (`CN=...`).
    pub subject: String,
    /// Issuer, as text.
    pub issuer: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ips: Vec<IpAddr>,
    /// Whether it is a CA (basicConstraints CA:TRUE).
    pub is_ca: bool,
}

impl CertInfo {
    /// Reads one certificate (DER).
    pub fn from_der(der: &[u8]) -> Result<Self, TlsError> {
        use x509_parser::extensions::GeneralName;
        let (_, x) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Pem {
            what: "certificate".into(),
            problem: e.to_string(),
        })?;
        let mut dns_names = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = x.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push((*d).to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            ips.push(IpAddr::from(a));
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            ips.push(IpAddr::from(a));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            der: der.to_vec(),
            subject: x.subject().to_string(),
            issuer: x.issuer().to_string(),
            not_before: x.validity().not_before.timestamp(),
            not_after: x.validity().not_after.timestamp(),
            dns_names,
            ips,
            is_ca: x.is_ca(),
        })
    }

    /// Reads every certificate of a PEM text, in order.
    pub fn all_from_pem(pem: &[u8]) -> Result<Vec<Self>, TlsError> {
        let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Pem {
                what: "certificate".into(),
                problem: e.to_string(),
            })?;
        ders.iter().map(|d| Self::from_der(d)).collect()
    }

    /// Reads the first certificate of a PEM text.
    pub fn first_from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Self::all_from_pem(pem)?
            .into_iter()
            .next()
            .ok_or_else(|| TlsError::Pem {
                what: "certificate".into(),
                problem: "no CERTIFICATE block found".into(),
            })
    }

    /// This certificate as PEM.
    pub fn to_pem(&self) -> String {
        pem_encode(&self.der)
    }
}

/// PEM text of one certificate (DER).
pub fn pem_encode(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Checks that `leaf_pem` (a serving certificate, optionally followed by intermediates)
/// verifies against the CAs in `bundle_pem` for `server_name` at time `now`, as the API
/// server does with a webhook's `caBundle`. `Err` says why not.
pub fn verify_leaf(
    bundle_pem: &[u8],
    leaf_pem: &[u8],
    server_name: &str,
    now: i64,
) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(bundle_pem) {
        let c = c.map_err(|e| format!("caBundle: {e}"))?;
        roots
            .add(c)
            .map_err(|e| format!("caBundle: unusable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the caBundle holds no certificate".into());
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(leaf_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("serving certificate: {e}"))?;
    let Some((leaf, rest)) = chain.split_first() else {
        return Err("no serving certificate".into());
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("{server_name:?}: {e}"))?;
    let when =
        rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64));
    verifier
        .verify_server_cert(leaf, rest, &name, &[], when)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3, ALPN h2 and http/1.1)
/// from PEM bytes; also returns the leaf's notAfter when it can be read.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Arc<ServerConfig>, Option<i64>), TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what: "certificate".into(),
            problem: e.to_string(),
        })?;
    let Some(first) = certs.first() else {
        return Err(TlsError::Pem {
            what: "certificate".into(),
            problem: "no CERTIFICATE block found".into(),
        });
    };
    let expiry = not_after(first);
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        what: "private key".into(),
        problem: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), expiry))
}

/// Certificate and key files, reloaded when their contents change.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// PEM certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl CertFiles {
    /// Reads both files.
    pub async fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |p: PathBuf| async move {
            tokio::fs::read(&p).await.map_err(|e| TlsError::Pem {
                what: p.display().to_string(),
                problem: e.to_string(),
            })
        };
        Ok((
            read(self.cert.clone()).await?,
            read(self.key.clone()).await?,
        ))
    }
}

/// Reads the notAfter of an X.509 certificate (DER), as a Unix timestamp.
///
/// A small DER walk (Certificate → tbsCertificate → validity) so as not to pull an
/// X.509 parser in for one field; `None` for anything it doesn't understand.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (cert, _) = der_item(der, 0x30)?;
    let (tbs, _) = der_item(cert, 0x30)?;
    let mut rest = tbs;
    // Optional [0] EXPLICIT version.
    if rest.first() == Some(&0xa0) {
        rest = der_item(rest, 0xa0)?.1;
    }
    rest = der_item(rest, 0x02)?.1; // serialNumber
    rest = der_item(rest, 0x30)?.1; // signature AlgorithmIdentifier
    rest = der_item(rest, 0x30)?.1; // issuer
    let (validity, _) = der_item(rest, 0x30)?;
    let after = der_skip(validity)?; // notBefore
    let tag = *after.first()?;
    let (time, _) = der_item(after, tag)?;
    parse_time(tag, time)
}

/// Splits `input` into the content of its first item (which must have `tag`) and the rest.
fn der_item(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*input.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((input.get(header..end)?, input.get(end..)?))
}

fn der_skip(input: &[u8]) -> Option<&[u8]> {
    der_item(input, *input.first()?).map(|(_, rest)| rest)
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18).
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(text).ok()?;
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = s.get(0..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(0..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| -> Option<i64> { rest.get(r)?.parse().ok() };
    let (month, day, hour, min, sec) =
        (num(0..2)?, num(2..4)?, num(4..6)?, num(6..8)?, num(8..10)?);
    Some(days_from_civil(year, month, day)? * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;

    #[test]
    fn generated_pki_serves_and_reports_expiry() {
        let pki = Pki::generate(
            "test-ca",
            &["localhost".into()],
            &["127.0.0.1".parse().unwrap()],
            30,
        )
        .unwrap();
        let (_config, expiry) =
            server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap();
        assert_eq!(expiry, Some(pki.not_after));
        let in_30_days = unix_now() + 30 * 86_400;
        assert!((pki.not_after - in_30_days).abs() < 5);
        // The leaf verifies against the CA (what the API server does with caBundle).
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let leaf = CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).unwrap();
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .unwrap();
    }

    #[test]
    fn bad_pem_is_an_error() {
        assert!(server_config(b"nope", b"nope").is_err());
        let pki = Pki::generate("ca", &["a".into()], &[], 1).unwrap();
        assert!(server_config(pki.cert_pem.as_bytes(), b"garbage").is_err());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(parse_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x18, b"20500101000000Z"), Some(2_524_608_000));
        assert_eq!(not_after(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(not_after(&[]), None);
    }
}
