//! API key hashes as the configuration holds them, and new keys.
//!
//! Keys are long random tokens (`easel_sk_` + 43 base64url characters, 256
//! bits), so a fast hash is enough: a slow password hash would add nothing
//! against guessing and cost every request. Only the hash is configured
//! (`[[auth.api_keys]]`); the HTTP layer compares hashes in constant time.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Generate images and cancel jobs; implies `read`.
    Generate,
    /// Read the project's jobs, images and events, and detect watermarks.
    Read,
    /// Review images (the human-review queue); implies `read`.
    Review,
    /// Everything, in every project, including administrative routes.
    Admin,
}

impl Scope {
    /// Every scope, in the order they are documented.
    pub const ALL: [Scope; 4] = [Scope::Generate, Scope::Read, Scope::Review, Scope::Admin];

    /// The scope's name, as written in configs and requests.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Generate => "generate",
            Scope::Read => "read",
            Scope::Review => "review",
            Scope::Admin => "admin",
        }
    }

    /// Whether holding `self` grants `wanted`.
    pub fn grants(self, wanted: Scope) -> bool {
        self == wanted
            || self == Scope::Admin
            || (wanted == Scope::Read && matches!(self, Scope::Generate | Scope::Review))
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scope `{}`; scopes are generate, read, review and admin",
                    s.chars().take(40).collect::<String>()
                )
            })
    }
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
    /// The algorithm of this hash.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// The 32-byte digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

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

/// A new random key secret: `easel_sk_` and 43 base64url characters (256
/// bits from the operating system's generator).
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "easel_sk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A new random API key and the config entry that accepts it.
pub fn create_key(name: &str, scopes: &[Scope]) -> (String, String) {
    let key = new_secret();
    let scopes = scopes
        .iter()
        .map(|s| format!("\"{}\"", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let entry = format!(
        "[[auth.api_keys]]\nname = \"{name}\"\nhash = \"{}\"\nscopes = [{scopes}]\n",
        KeyHash::blake3_of(&key)
    );
    (key, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_hashes_are_rejected_when_parsed() {
        assert!("md5:abcd".parse::<KeyHash>().is_err());
        assert!("blake3:abcd".parse::<KeyHash>().is_err());
        let good = KeyHash::blake3_of("x").to_string();
        assert_eq!(good.parse::<KeyHash>().unwrap(), KeyHash::blake3_of("x"));
    }

    #[test]
    fn scope_names_round_trip_and_imply_read() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(json, format!("\"{}\"", scope.as_str()));
            assert!(scope.grants(Scope::Read) || scope == Scope::Read);
        }
        assert!(!Scope::Read.grants(Scope::Generate));
        assert!(!Scope::Generate.grants(Scope::Admin));
        assert!(!Scope::Review.grants(Scope::Generate));
        assert!(Scope::Admin.grants(Scope::Review));
        assert!("owner".parse::<Scope>().is_err());
    }
}
