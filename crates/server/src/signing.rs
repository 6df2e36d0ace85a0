//! Signed, expiring links to stored images.
//!
//! A link is the content route plus
//! `?project=<project>&expires=<unix seconds>&sig=<hex>`, where `sig` is
//! HMAC-SHA256 over `"<path>?project=<project>\n<expires>"` with the server's
//! signing key. The local object store has no presigned URLs, so the server
//! signs its own; the check is a constant-time comparison (`hmac`'s
//! `verify_slice`). Expiry is checked after the signature, so a tampered
//! expiry reads as a bad signature, not as "expired".

use std::io::Write as _;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The signature does not match the path and expiry.
    #[error("the link's signature is invalid")]
    InvalidSignature,
    /// The link was valid but its time is up.
    #[error("the link has expired")]
    Expired,
}

/// Signs and checks links with one key.
#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
    ttl_seconds: u64,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner")
            .field("key", &"***")
            .field("ttl_seconds", &self.ttl_seconds)
            .finish()
    }
}

impl UrlSigner {
    /// A signer with this key; links live `ttl_seconds`.
    pub fn new(key: impl Into<Vec<u8>>, ttl_seconds: u64) -> Self {
        Self {
            key: key.into(),
            ttl_seconds,
        }
    }

    fn mac(&self, path: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The query string (`expires=…&sig=…`) that grants `path` until
    /// `now + ttl`.
    pub fn sign(&self, path: &str, now: i64) -> String {
        let expires = now.saturating_add(self.ttl_seconds as i64);
        let sig = hex::encode(self.mac(path, expires).finalize().into_bytes());
        format!("expires={expires}&sig={sig}")
    }

    /// Checks a link's `expires` and `sig` for `path` at time `now`.
    pub fn verify(&self, path: &str, expires: i64, sig: &str, now: i64) -> Result<(), LinkError> {
        let sig = hex::decode(sig).map_err(|_| LinkError::InvalidSignature)?;
        self.mac(path, expires)
            .verify_slice(&sig)
            .map_err(|_| LinkError::InvalidSignature)?;
        if now > expires {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

/// What a link's signature covers: its path, and the project it was made
/// for (`?project=`), when it names one (links made before projects did
/// not).
pub fn subject(path: &str, project: Option<&str>) -> String {
    match project {
        Some(p) => format!("{path}?project={p}"),
        None => path.to_string(),
    }
}

/// The configured key, or the one kept in `<data_dir>/signing.key`, created
/// (32 random bytes, hex, mode 0600) on first start.
pub fn load_or_create_key(data_dir: &Path, configured: Option<&str>) -> std::io::Result<Vec<u8>> {
    if let Some(key) = configured {
        return Ok(key.as_bytes().to_vec());
    }
    let path = data_dir.join("signing.key");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().as_bytes().to_vec()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let key = hex::encode(rand::random::<[u8; 32]>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&path)?;
    file.write_all(key.as_bytes())?;
    file.sync_all()?;
    Ok(key.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(query: &str) -> (i64, String) {
        let mut expires = 0;
        let mut sig = String::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.parse().unwrap(),
                Some(("sig", v)) => sig = v.to_string(),
                _ => {}
            }
        }
        (expires, sig)
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let s = UrlSigner::new(b"k".to_vec(), 60);
        let (expires, sig) = parts(&s.sign("/v1/images/img_1/content", 1000));
        assert_eq!(expires, 1060);
        assert_eq!(
            s.verify("/v1/images/img_1/content", expires, &sig, 1059),
            Ok(())
        );
        assert_eq!(
            s.verify("/v1/images/img_1/content", expires, &sig, 1061),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn tampering_with_path_expiry_or_signature_is_refused() {
        let s = UrlSigner::new(b"k".to_vec(), 60);
        let (expires, sig) = parts(&s.sign("/a", 0));
        assert_eq!(
            s.verify("/b", expires, &sig, 0),
            Err(LinkError::InvalidSignature)
        );
        assert_eq!(
            s.verify("/a", expires + 1, &sig, 0),
            Err(LinkError::InvalidSignature)
        );
        assert_eq!(
            s.verify("/a", expires, "zz", 0),
            Err(LinkError::InvalidSignature)
        );
        let other = UrlSigner::new(b"other".to_vec(), 60);
        assert_eq!(
            other.verify("/a", expires, &sig, 0),
            Err(LinkError::InvalidSignature)
        );
    }

    #[test]
    fn the_generated_key_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_key(dir.path(), None).unwrap();
        let second = load_or_create_key(dir.path(), None).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create_key(dir.path(), Some("abc")).unwrap(), b"abc");
    }
}
