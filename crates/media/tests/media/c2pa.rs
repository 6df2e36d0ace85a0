//! C2PA Content Credentials: signing what `encode` produces, reading it
//! back, tampering, and credential errors.

use std::path::Path;
use std::time::Instant;

use easel_core::OutputFormat;
use easel_media::{
    C2paSigner, ClaimInfo, DecodeLimits, MediaError, Metadata, decode_untrusted, encode, read_c2pa,
    read_png_text,
};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::helpers::{gradient, info};

pub const TRAINED: &str = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";

pub fn claim() -> ClaimInfo {
    ClaimInfo {
        generator: "Easel".into(),
        version: "0.1.0".into(),
        model_name: "easel-tiny".into(),
        model_hash: "0123456789abcdef".into(),
        title: Some("img_test".into()),
        watermark_id: Some("e5e11234abcd".into()),
    }
}

/// `image` encoded as `format` with A1111 and Easel metadata, unsigned.
pub fn encoded(format: OutputFormat) -> Vec<u8> {
    let metadata = Metadata::builder()
        .generation(info("a red apple"))
        .record(serde_json::json!({ "image_id": "img_test", "seed": 42 }))
        .build();
    encode(&gradient(64, 48), format, None, &metadata).unwrap()
}

/// A signer with credentials generated in a fresh directory.
pub fn generated_signer() -> (tempfile::TempDir, C2paSigner) {
    let dir = tempfile::tempdir().unwrap();
    let signer = C2paSigner::load_or_generate(dir.path(), None).unwrap();
    (dir, signer)
}

/// `signed` with one byte of its image data changed (not of the manifest).
pub fn tamper(signed: &[u8], format: OutputFormat) -> Vec<u8> {
    let mut bytes = signed.to_vec();
    let at = match format {
        OutputFormat::Png => chunk_middle(&bytes, b"IDAT", 8),
        OutputFormat::Webp => chunk_middle(&bytes, b"VP8L", 12),
        // The manifest sits in APP11 segments near the start; the end is
        // entropy-coded scan data, before the two-byte EOI marker.
        OutputFormat::Jpeg => bytes.len() - 10,
    };
    bytes[at] ^= 0x01;
    bytes
}

/// The middle of the first `kind` chunk's data (PNG or RIFF layout).
fn chunk_middle(bytes: &[u8], kind: &[u8; 4], start: usize) -> usize {
    let mut at = start;
    loop {
        let (len, tag, data) = if kind == b"IDAT" {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            (len, &bytes[at + 4..at + 8], at + 8)
        } else {
            let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            (len, &bytes[at..at + 4], at + 8)
        };
        if tag == kind {
            return data + len / 2;
        }
        at = if kind == b"IDAT" {
            data + len + 4
        } else {
            data + len + (len & 1)
        };
    }
}

#[test]
fn signed_images_read_back_valid_and_trusted_with_the_generated_ca() {
    let (_dir, signer) = generated_signer();
    let ca = signer.ca_pem().expect("a generated CA");
    for format in OutputFormat::ALL {
        let unsigned = encoded(*format);
        let started = Instant::now();
        let signed = signer.sign(&unsigned, *format, &claim()).unwrap();
        eprintln!(
            "signed a 64x48 {format} ({} -> {} bytes) in {:?}",
            unsigned.len(),
            signed.len(),
            started.elapsed()
        );

        let untrusted = read_c2pa(&signed, *format, None)
            .unwrap()
            .expect("a manifest");
        assert_eq!(
            untrusted.validation_state, "Valid",
            "{format}: {untrusted:?}"
        );
        let trusted = read_c2pa(&signed, *format, Some(ca)).unwrap().unwrap();
        assert_eq!(trusted.validation_state, "Trusted", "{format}: {trusted:?}");
        assert!(trusted.errors.is_empty(), "{format}: {trusted:?}");

        assert_eq!(trusted.actions, ["c2pa.created"], "{format}");
        assert_eq!(trusted.digital_source_type.as_deref(), Some(TRAINED));
        assert_eq!(trusted.model_hash.as_deref(), Some("0123456789abcdef"));
        assert_eq!(trusted.soft_binding.as_deref(), Some("e5e11234abcd"));
        assert_eq!(trusted.claim_generator.as_deref(), Some("Easel 0.1.0"));

        // Still the same picture for an ordinary decoder.
        let before = decode_untrusted(&unsigned, &DecodeLimits::default()).unwrap();
        let after = decode_untrusted(&signed, &DecodeLimits::default()).unwrap();
        assert_eq!(before, after, "{format}");
    }
}

#[test]
fn a_signed_png_keeps_its_text_chunks() {
    let (_dir, signer) = generated_signer();
    let unsigned = encoded(OutputFormat::Png);
    let signed = signer.sign(&unsigned, OutputFormat::Png, &claim()).unwrap();
    assert_eq!(
        read_png_text(&signed).unwrap(),
        read_png_text(&unsigned).unwrap()
    );
    let keys: Vec<String> = read_png_text(&signed)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(keys.contains(&"parameters".to_string()), "{keys:?}");
}

#[test]
fn one_changed_image_byte_makes_the_manifest_invalid() {
    let (_dir, signer) = generated_signer();
    let ca = signer.ca_pem().unwrap();
    for format in OutputFormat::ALL {
        let signed = signer.sign(&encoded(*format), *format, &claim()).unwrap();
        let tampered = tamper(&signed, *format);
        let summary = read_c2pa(&tampered, *format, Some(ca))
            .unwrap()
            .expect("the manifest is still there");
        assert_eq!(summary.validation_state, "Invalid", "{format}: {summary:?}");
        assert!(
            summary
                .errors
                .iter()
                .any(|e| e == "assertion.dataHash.mismatch"),
            "{format}: {summary:?}"
        );
    }
}

#[test]
fn an_unsigned_image_has_no_manifest() {
    for format in OutputFormat::ALL {
        assert_eq!(read_c2pa(&encoded(*format), *format, None).unwrap(), None);
    }
}

#[test]
fn generated_credentials_are_written_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let first = C2paSigner::load_or_generate(dir.path(), None).unwrap();
    let chain = std::fs::read_to_string(dir.path().join("chain.pem")).unwrap();
    let second = C2paSigner::load_or_generate(dir.path(), None).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("chain.pem")).unwrap(),
        chain
    );
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "signer + CA");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("signer.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // An image signed by the first load is trusted through the second's CA.
    let signed = first
        .sign(&encoded(OutputFormat::Png), OutputFormat::Png, &claim())
        .unwrap();
    let summary = read_c2pa(&signed, OutputFormat::Png, second.ca_pem())
        .unwrap()
        .unwrap();
    assert_eq!(summary.validation_state, "Trusted");
}

#[test]
fn configured_files_sign_and_carry_no_generated_ca() {
    let (dir, _) = generated_signer();
    let (chain, key) = (dir.path().join("chain.pem"), dir.path().join("signer.key"));
    let other = tempfile::tempdir().unwrap();
    let signer = C2paSigner::load_or_generate(other.path(), Some((&chain, &key))).unwrap();
    assert_eq!(signer.ca_pem(), None);
    assert!(
        !other.path().join("chain.pem").exists(),
        "nothing generated"
    );
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let signed = signer
        .sign(&encoded(OutputFormat::Jpeg), OutputFormat::Jpeg, &claim())
        .unwrap();
    let summary = read_c2pa(&signed, OutputFormat::Jpeg, Some(&ca))
        .unwrap()
        .unwrap();
    assert_eq!(summary.validation_state, "Trusted");

    let from_pem = C2paSigner::from_pem(
        &std::fs::read_to_string(&chain).unwrap(),
        &std::fs::read_to_string(&key).unwrap(),
    );
    assert!(from_pem.is_ok(), "{from_pem:?}");
}

/// `load_or_generate` with configured files written from `chain` and
/// `key`; the error it returns.
fn configured_error(chain: &str, key: &str) -> MediaError {
    let dir = tempfile::tempdir().unwrap();
    let (chain_path, key_path) = (dir.path().join("chain.pem"), dir.path().join("key.pem"));
    std::fs::write(&chain_path, chain).unwrap();
    std::fs::write(&key_path, key).unwrap();
    C2paSigner::load_or_generate(Path::new("/nonexistent"), Some((&chain_path, &key_path)))
        .unwrap_err()
}

fn generated_pems() -> (String, String) {
    let (dir, _) = generated_signer();
    (
        std::fs::read_to_string(dir.path().join("chain.pem")).unwrap(),
        std::fs::read_to_string(dir.path().join("signer.key")).unwrap(),
    )
}

/// A CA and a signer like Easel's, with the signer valid from `from` to
/// `to` days from now; (chain PEM, key PEM).
fn chain_valid(from: i64, to: i64) -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(vec![]).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut ee = CertificateParams::new(vec![]).unwrap();
    ee.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    ee.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    ee.use_authority_key_identifier_extension = true;
    ee.not_before = now + time::Duration::days(from);
    ee.not_after = now + time::Duration::days(to);
    let cert = ee.signed_by(&key, &Issuer::new(ca, ca_key)).unwrap();
    (
        format!("{}{}", cert.pem(), ca_cert.pem()),
        key.serialize_pem(),
    )
}

#[test]
fn missing_configured_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, key) = generated_pems();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, key).unwrap();
    let chain_path = dir.path().join("absent.pem");
    let err = C2paSigner::load_or_generate(dir.path(), Some((&chain_path, &key_path))).unwrap_err();
    assert_eq!(err.code(), "c2pa_credentials_missing");
    assert!(err.to_string().contains("absent.pem"), "{err}");

    std::fs::write(&chain_path, chain).unwrap();
    let gone = dir.path().join("gone.key");
    let err = C2paSigner::load_or_generate(dir.path(), Some((&chain_path, &gone))).unwrap_err();
    assert_eq!(err.code(), "c2pa_credentials_missing");
    assert!(err.to_string().contains("gone.key"), "{err}");
}

#[test]
fn half_a_generated_pair_is_reported_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    C2paSigner::load_or_generate(dir.path(), None).unwrap();
    std::fs::remove_file(dir.path().join("chain.pem")).unwrap();
    let err = C2paSigner::load_or_generate(dir.path(), None).unwrap_err();
    assert_eq!(err.code(), "c2pa_credentials_missing");
    assert!(err.to_string().contains("chain.pem"), "{err}");
    assert!(dir.path().join("signer.key").exists());
}

#[test]
fn files_that_are_not_pem_are_named() {
    let (chain, key) = generated_pems();
    let err = configured_error("not a certificate", &key);
    assert_eq!(err.code(), "c2pa_credentials_not_pem");
    assert!(err.to_string().contains("chain.pem"), "{err}");
    let err = configured_error(
        &chain,
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
    );
    assert_eq!(err.code(), "c2pa_credentials_not_pem");
    assert!(
        err.to_string().contains("key.pem") && err.to_string().contains("PKCS#8"),
        "{err}"
    );
    // A key where the chain belongs.
    let err = configured_error(&key, &key);
    assert_eq!(err.code(), "c2pa_credentials_not_pem");
}

#[test]
fn a_key_from_another_pair_does_not_match() {
    let (chain, _) = generated_pems();
    let (_, other_key) = generated_pems();
    let err = configured_error(&chain, &other_key);
    assert_eq!(err.code(), "c2pa_key_mismatch");
    assert!(err.to_string().contains("key.pem") && err.to_string().contains("chain.pem"));
}

#[test]
fn a_lone_self_signed_certificate_is_refused() {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![]).unwrap();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    let cert = params.self_signed(&key).unwrap();
    let err = configured_error(&cert.pem(), &key.serialize_pem());
    assert_eq!(err.code(), "c2pa_self_signed_certificate");
    assert!(err.to_string().contains("chain.pem"), "{err}");
}

#[test]
fn an_expired_or_not_yet_valid_certificate_is_refused() {
    let (chain, key) = chain_valid(-30, -1);
    let err = configured_error(&chain, &key);
    assert_eq!(err.code(), "c2pa_certificate_expired");
    assert!(err.to_string().contains("chain.pem"), "{err}");
    let (chain, key) = chain_valid(2, 30);
    assert_eq!(
        configured_error(&chain, &key).code(),
        "c2pa_certificate_expired"
    );
    // The same construction within its window signs.
    let (chain, key) = chain_valid(-1, 30);
    assert!(C2paSigner::from_pem(&chain, &key).is_ok());
}

#[test]
fn a_ca_as_the_signing_certificate_is_refused() {
    let (chain, key) = generated_pems();
    let mut blocks: Vec<&str> = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    blocks.reverse();
    let err = configured_error(&blocks.concat(), &key);
    assert_eq!(err.code(), "c2pa_credentials_rejected");
    assert!(err.to_string().contains("CA"), "{err}");
}

/// `crates/media/tests/fixtures/c2pa/` (made by `tools/c2pa/make_fixtures.sh`).
fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/c2pa")
        .join(name)
}

#[test]
fn an_openssl_made_p384_chain_signs_every_format() {
    // `byo-signer.key` is a committed TEST FIXTURE, not a secret: a
    // throw-away key for a throw-away test CA (see the fixtures' README).
    let (chain, key) = (fixture("byo-chain.pem"), fixture("byo-signer.key"));
    let dir = tempfile::tempdir().unwrap();
    let signer = C2paSigner::load_or_generate(dir.path(), Some((&chain, &key))).unwrap();
    assert!(format!("{signer:?}").contains("Es384"), "{signer:?}");
    let ca = std::fs::read_to_string(fixture("byo-ca.pem")).unwrap();
    for format in OutputFormat::ALL {
        let signed = signer.sign(&encoded(*format), *format, &claim()).unwrap();
        let summary = read_c2pa(&signed, *format, Some(&ca)).unwrap().unwrap();
        assert_eq!(summary.validation_state, "Trusted", "{format}: {summary:?}");
        // Another CA does not make it trusted.
        let (_dir, other) = generated_signer();
        let summary = read_c2pa(&signed, *format, other.ca_pem())
            .unwrap()
            .unwrap();
        assert_eq!(summary.validation_state, "Valid", "{format}: {summary:?}");
    }
}
