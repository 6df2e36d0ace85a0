//! Checks of a PEM certificate chain and private key before anything is
//! signed with them, so that a bad credential fails at start-up with an
//! error naming its file instead of at the first image.

use c2pa::SigningAlg;
use c2pa::crypto::cose::{CertificateTrustPolicy, check_end_entity_certificate_profile};
use c2pa::crypto::raw_signature::validator_for_signing_alg;
use c2pa::status_tracker::StatusTracker;
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;

use crate::error::MediaError;

/// Signed and verified once to prove the key belongs to the certificate.
const PROBE: &[u8] = b"easel c2pa key probe";

/// Checks `chain_pem` (signing certificate first, then its issuers) and
/// `key_pem` (PKCS#8), naming `chain_path` and `key_path` in errors, and
/// returns the signing algorithm the certificate's key calls for.
pub(crate) fn check(
    chain_pem: &str,
    chain_path: &str,
    key_pem: &str,
    key_path: &str,
) -> Result<SigningAlg, MediaError> {
    let chain = certificates(chain_pem, chain_path)?;
    let parsed = chain
        .iter()
        .map(|der| {
            X509Certificate::from_der(der)
                .map(|(_, cert)| cert)
                .map_err(|e| not_pem(chain_path, format!("a certificate does not parse: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signing = &parsed[0];
    if parsed.len() == 1 && signing.subject().as_raw() == signing.issuer().as_raw() {
        return Err(MediaError::C2paSelfSigned {
            path: chain_path.into(),
        });
    }
    for cert in &parsed {
        let validity = cert.validity();
        if !validity.is_valid() {
            return Err(MediaError::C2paCertificateExpired {
                path: chain_path.into(),
                reason: format!(
                    "\"{}\" is valid from {} to {}",
                    cert.subject(),
                    validity.not_before,
                    validity.not_after
                ),
            });
        }
    }
    if signing.is_ca() {
        return Err(rejected(
            chain_path,
            "the first certificate, which signs, is a CA; put the end-entity certificate first",
        ));
    }
    let alg = signing_alg(signing).ok_or_else(|| {
        rejected(
            chain_path,
            "the signing certificate's key type is not one C2PA signs with \
             (EC P-256/P-384/P-521, Ed25519 or RSA)",
        )
    })?;
    check_profile(&chain[0], chain_path)?;
    check_key_block(key_pem, key_path)?;

    let signer =
        c2pa::create_signer::from_keys(chain_pem.as_bytes(), key_pem.as_bytes(), alg, None)
            .map_err(|e| rejected(key_path, e))?;
    let signature = signer.sign(PROBE).map_err(|e| rejected(key_path, e))?;
    let matches = validator_for_signing_alg(alg).is_some_and(|validator| {
        validator
            .validate(&signature, PROBE, signing.public_key().raw)
            .is_ok()
    });
    if !matches {
        return Err(MediaError::C2paKeyMismatch {
            key_path: key_path.into(),
            chain_path: chain_path.into(),
        });
    }
    Ok(alg)
}

/// The DER of each `CERTIFICATE` block, in order; at least one.
fn certificates(pem: &str, path: &str) -> Result<Vec<Vec<u8>>, MediaError> {
    let blocks = pem_blocks(pem, path)?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE")
        .map(|b| b.contents)
        .collect();
    if certs.is_empty() {
        return Err(not_pem(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The key file must hold an unencrypted PKCS#8 key, the form the c2pa
/// SDK reads.
fn check_key_block(pem: &str, path: &str) -> Result<(), MediaError> {
    let blocks = pem_blocks(pem, path)?;
    if blocks.iter().any(|b| b.label == "PRIVATE KEY") {
        return Ok(());
    }
    let reason = match blocks.first().map(|b| b.label.as_str()) {
        Some("EC PRIVATE KEY" | "RSA PRIVATE KEY") => {
            "a SEC1 or PKCS#1 key; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt`"
        }
        Some("ENCRYPTED PRIVATE KEY") => "an encrypted key; Easel needs it unencrypted",
        _ => "no PRIVATE KEY block",
    };
    Err(not_pem(path, reason))
}

fn pem_blocks(text: &str, path: &str) -> Result<Vec<Pem>, MediaError> {
    if !text.contains("-----BEGIN ") {
        return Err(not_pem(path, "no -----BEGIN line"));
    }
    Pem::iter_from_buffer(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(path, e))
}

/// The C2PA SDK's own check of the signing certificate (§14.5: version,
/// key usage, EKU, key identifiers), run now rather than at the first
/// signature, where it only says "the certificate is invalid".
fn check_profile(der: &[u8], path: &str) -> Result<(), MediaError> {
    let mut log = StatusTracker::default();
    check_end_entity_certificate_profile(der, &CertificateTrustPolicy::default(), &mut log, None)
        .map_err(|e| {
            let details: Vec<String> = log
                .logged_items()
                .iter()
                .map(|item| item.description.to_string())
                .collect();
            rejected(path, format!("{e} ({})", details.join("; ")))
        })
}

/// The algorithm matching the certificate's public key.
fn signing_alg(cert: &X509Certificate<'_>) -> Option<SigningAlg> {
    let spki = cert.public_key();
    match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.10045.2.1" => {
            let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            match curve.to_id_string().as_str() {
                "1.2.840.10045.3.1.7" => Some(SigningAlg::Es256),
                "1.3.132.0.34" => Some(SigningAlg::Es384),
                "1.3.132.0.35" => Some(SigningAlg::Es512),
                _ => None,
            }
        }
        "1.3.101.112" => Some(SigningAlg::Ed25519),
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => Some(SigningAlg::Ps256),
        _ => None,
    }
}

fn not_pem(path: &str, reason: impl ToString) -> MediaError {
    MediaError::C2paCredentialsNotPem {
        path: path.into(),
        reason: reason.to_string(),
    }
}

fn rejected(path: &str, reason: impl ToString) -> MediaError {
    MediaError::C2paCredentialsRejected {
        path: path.into(),
        reason: reason.to_string(),
    }
}
