//! API keys: hashed in the config, checked in constant time.
//!
//! Keys are long random tokens (`easel_sk_` + 43 base64url characters, 256
//! bits), so a fast hash is enough: a slow password hash would add nothing
//! against guessing and cost every request. Only the hash is configured.
//! Every configured hash is compared (with `subtle`, no early exit), so the
//! time taken says nothing about which key, or how much of one, matched.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use crate::config::ApiKeyEntry;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Generate images, manage one's jobs, read images.
    Generate,
    /// Everything, including administrative routes.
    Admin,
}

/// The hash algorithm of a configured key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// BLAKE3 (what `easel keys create` prints).
    Blake3,
    /// SHA-256, for operators whose tooling only has that.
    Sha256,
}

/// A key's hash as written in the config: `blake3:<hex>` or `sha256:<hex>`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHash {
    algorithm: HashAlgorithm,
    digest: [u8; 32],
}

impl KeyHash {
    /// The BLAKE3 hash of `key`.
    pub fn blake3_of(key: &str) -> Self {
        Self {
            algorithm: HashAlgorithm::Blake3,
            digest: *blake3::hash(key.as_bytes()).as_bytes(),
        }
    }

    /// The SHA-256 hash of `key`.
    pub fn sha256_of(key: &str) -> Self {
        Self {
            algorithm: HashAlgorithm::Sha256,
            digest: sha2::Sha256::digest(key.as_bytes()).into(),
        }
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.algorithm {
            HashAlgorithm::Blake3 => "blake3",
            HashAlgorithm::Sha256 => "sha256",
        };
        write!(f, "{prefix}:{}", hex::encode(self.digest))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for KeyHash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, hex_digest) = match s.split_once(':') {
            Some(("blake3", h)) => (HashAlgorithm::Blake3, h),
            Some(("sha256", h)) => (HashAlgorithm::Sha256, h),
            _ => {
                return Err(format!(
                    "API key hash must be `blake3:<64 hex digits>` or `sha256:<64 hex digits>`, got `{}`",
                    s.chars().take(20).collect::<String>()
                ));
            }
        };
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| {
            "API key hash must have exactly 64 hex digits after the colon".to_string()
        })?;
        Ok(Self { algorithm, digest })
    }
}

impl Serialize for KeyHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who a request is acting as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Authentication is off (loopback or `--insecure-no-auth`).
    Anonymous,
    /// A configured key.
    Key {
        /// The key's configured name.
        name: String,
        /// Its scopes.
        scopes: Vec<Scope>,
    },
}

impl Principal {
    /// Whether this principal may act within `scope`. Admin implies all.
    pub fn allows(&self, scope: Scope) -> bool {
        match self {
            Principal::Anonymous => true,
            Principal::Key { scopes, .. } => {
                scopes.contains(&Scope::Admin) || scopes.contains(&scope)
            }
        }
    }

    /// A short name for logs and the audit table.
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::Key { name, .. } => name,
        }
    }
}

/// The user a job is recorded under: the API key's name, or (with
/// authentication off) the request's own `user` field.
pub fn user_id(principal: &Principal, request_user: Option<String>) -> Option<String> {
    match principal {
        Principal::Key { name, .. } => Some(name.clone()),
        Principal::Anonymous => request_user.filter(|u| !u.is_empty()),
    }
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    entries: Vec<ApiKeyEntry>,
}

impl ApiKeys {
    /// From the config's `auth.api_keys`.
    pub fn new(entries: Vec<ApiKeyEntry>) -> Self {
        Self { entries }
    }

    /// Whether requests must present a key.
    pub fn required(&self) -> bool {
        !self.entries.is_empty()
    }

    /// The principal holding `token`, if any key matches.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let blake = KeyHash::blake3_of(token);
        let sha = KeyHash::sha256_of(token);
        let mut found = None;
        for entry in &self.entries {
            let candidate = match entry.hash.algorithm {
                HashAlgorithm::Blake3 => &blake,
                HashAlgorithm::Sha256 => &sha,
            };
            if bool::from(candidate.digest.ct_eq(&entry.hash.digest)) && found.is_none() {
                found = Some(Principal::Key {
                    name: entry.name.clone(),
                    scopes: entry.scopes.clone(),
                });
            }
        }
        found
    }
}

/// A new random API key and the config entry that accepts it.
pub fn create_key(name: &str, scopes: &[Scope]) -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let key = format!(
        "easel_sk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let scopes = scopes
        .iter()
        .map(|s| format!("\"{}\"", serde_plain_name(*s)))
        .collect::<Vec<_>>()
        .join(", ");
    let entry = format!(
        "[[auth.api_keys]]\nname = \"{name}\"\nhash = \"{}\"\nscopes = [{scopes}]\n",
        KeyHash::blake3_of(&key)
    );
    (key, entry)
}

fn serde_plain_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Generate => "generate",
        Scope::Admin => "admin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(entries: &[(&str, KeyHash, Vec<Scope>)]) -> ApiKeys {
        ApiKeys::new(
            entries
                .iter()
                .map(|(name, hash, scopes)| ApiKeyEntry {
                    name: name.to_string(),
                    hash: hash.clone(),
                    scopes: scopes.clone(),
                })
                .collect(),
        )
    }

    #[test]
    fn a_created_key_is_accepted_by_its_printed_entry() {
        let (key, entry) = create_key("ci", &[Scope::Generate]);
        #[derive(Deserialize)]
        struct Auth {
            auth: crate::config::AuthConfig,
        }
        let parsed: Auth = toml::from_str(&entry).unwrap();
        let keys = ApiKeys::new(parsed.auth.api_keys);
        let who = keys.authenticate(&key).unwrap();
        assert_eq!(who.name(), "ci");
        assert!(who.allows(Scope::Generate));
        assert!(!who.allows(Scope::Admin));
        assert!(keys.authenticate("easel_sk_wrong").is_none());
    }

    #[test]
    fn sha256_hashes_are_accepted_too() {
        let k = keys(&[(
            "ops",
            KeyHash::sha256_of("secret-token"),
            vec![Scope::Admin],
        )]);
        assert!(
            k.authenticate("secret-token")
                .unwrap()
                .allows(Scope::Generate)
        );
    }

    #[test]
    fn malformed_hashes_are_rejected_when_parsed() {
        assert!("md5:abcd".parse::<KeyHash>().is_err());
        assert!("blake3:abcd".parse::<KeyHash>().is_err());
        let good = KeyHash::blake3_of("x").to_string();
        assert_eq!(good.parse::<KeyHash>().unwrap(), KeyHash::blake3_of("x"));
    }
}
