//! A private CA and an end-entity signing certificate, generated when no
//! credentials are configured. Keys are fresh each time; the structure is
//! fixed: P-256 keys, a CA valid 20 years that may issue only end-entity
//! certificates, and a signer valid 10 years with digitalSignature key
//! usage, the emailProtection EKU (one C2PA accepts) and the authority
//! key identifier that the c2pa SDK requires.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

use crate::error::MediaError;

/// Without a timestamp authority a validator checks the certificate's
/// validity window at read time, so images stay valid only this long.
const SIGNER_DAYS: i64 = 3653;
const CA_DAYS: i64 = 7305;

/// PEM texts of freshly generated credentials.
pub(crate) struct Generated {
    /// The CA certificate, for readers' trust anchors.
    pub ca_pem: String,
    /// The signing certificate followed by the CA certificate.
    pub chain_pem: String,
    /// The signing key, PKCS#8.
    pub key_pem: String,
}

pub(crate) fn generate() -> Result<Generated, MediaError> {
    let now = OffsetDateTime::now_utc();
    // A day's slack for clocks behind ours.
    let start = now - Duration::days(1);

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("Easel local C2PA CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = start;
    ca.not_after = now + Duration::days(CA_DAYS);
    let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;

    let signer_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut signer = CertificateParams::default();
    signer.distinguished_name = name("Easel C2PA signer");
    signer.is_ca = IsCa::ExplicitNoCa;
    signer.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    signer.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    signer.use_authority_key_identifier_extension = true;
    signer.not_before = start;
    signer.not_after = now + Duration::days(SIGNER_DAYS);
    let issuer = Issuer::new(ca, ca_key);
    let signer_cert = signer.signed_by(&signer_key, &issuer).map_err(failed)?;

    let ca_pem = ca_cert.pem();
    Ok(Generated {
        chain_pem: format!("{}{}", signer_cert.pem(), ca_pem),
        ca_pem,
        key_pem: signer_key.serialize_pem(),
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Easel");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn failed(e: rcgen::Error) -> MediaError {
    MediaError::C2paCredentialsRejected {
        path: "<generated>".into(),
        reason: format!("cannot generate credentials: {e}"),
    }
}
