//! API keys: hashed in the config (`easel_config::keys`), checked here in
//! constant time. Every configured hash is compared (with `subtle`, no early exit), so the
//! time taken says nothing about which key, or how much of one, matched.

use easel_config::ApiKeyEntry;
pub use easel_config::keys::{HashAlgorithm, KeyHash, Scope, create_key};
use subtle::ConstantTimeEq;

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
            let candidate = match entry.hash.algorithm() {
                HashAlgorithm::Blake3 => &blake,
                HashAlgorithm::Sha256 => &sha,
            };
            if bool::from(candidate.digest().ct_eq(entry.hash.digest())) && found.is_none() {
                found = Some(Principal::Key {
                    name: entry.name.clone(),
                    scopes: entry.scopes.clone(),
                });
            }
        }
        found
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
        #[derive(serde::Deserialize)]
        struct Auth {
            auth: easel_config::AuthConfig,
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
}
