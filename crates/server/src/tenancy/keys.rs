//! Making database keys: the secret (shown once), its hash (stored) and
//! its prefix (listed), from a validated request.

use chrono::{DateTime, Utc};
use easel_config::keys::{KeyHash, Scope, new_secret};
use easel_core::{Limits, ProjectId};
use easel_store::{ApiKeyRecord, NewApiKey};

use crate::error::ApiError;

/// How many characters of the secret listings show (`easel_sk_` and 7
/// random characters: 42 of its 256 bits).
pub const PREFIX_LEN: usize = 16;

/// The longest key name.
pub const MAX_NAME_LEN: usize = 64;

/// A key to create, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySpec {
    /// Its project.
    pub project: ProjectId,
    /// Its name.
    pub name: String,
    /// Its scopes, at least one.
    pub scopes: Vec<Scope>,
    /// Its own limits.
    pub limits: Limits,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
}

impl KeySpec {
    /// Checks the name, the scopes and the limits; each error names its
    /// field.
    pub fn validate(
        project: &str,
        name: &str,
        scopes: &[String],
        limits: Limits,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let project: ProjectId = project.parse()?;
        if project.is_reserved() {
            return Err(ApiError::invalid(
                "reserved_project",
                "project",
                format!(
                    "project `{project}` is kept by the server for shadow rollouts; no key can act in it"
                ),
            ));
        }
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_LEN
            || name.chars().any(|c| c.is_control())
        {
            return Err(ApiError::invalid(
                "invalid_name",
                "name",
                format!("name must be 1 to {MAX_NAME_LEN} printable characters"),
            ));
        }
        if scopes.is_empty() {
            return Err(ApiError::invalid(
                "invalid_scopes",
                "scopes",
                "scopes must name at least one of generate, read, review, admin",
            ));
        }
        let mut parsed = Vec::new();
        for scope in scopes {
            let scope: Scope = scope
                .parse()
                .map_err(|e: String| ApiError::invalid("invalid_scopes", "scopes", e))?;
            if !parsed.contains(&scope) {
                parsed.push(scope);
            }
        }
        limits.validate()?;
        if let Some(at) = expires_at
            && at <= now
        {
            return Err(ApiError::invalid(
                "invalid_expiry",
                "expires_at",
                "expires_at must be in the future",
            ));
        }
        Ok(Self {
            project,
            name: name.to_string(),
            scopes: parsed,
            limits,
            expires_at,
        })
    }

    /// The key that replaces `old` in a rotation: same project, name,
    /// scopes, limits and expiry.
    pub fn successor(old: &ApiKeyRecord) -> Self {
        Self {
            project: old.project.clone(),
            name: old.name.clone(),
            scopes: old.scopes.iter().filter_map(|s| s.parse().ok()).collect(),
            limits: old.limits.clone(),
            expires_at: old.expires_at,
        }
    }

    /// A fresh secret and the record that stores its hash.
    pub fn mint(&self) -> (String, NewApiKey) {
        let secret = new_secret();
        let key = NewApiKey {
            id: format!("key_{}", uuid::Uuid::now_v7().simple()),
            project: self.project.clone(),
            name: self.name.clone(),
            hash: KeyHash::blake3_of(&secret).to_string(),
            prefix: secret.chars().take(PREFIX_LEN).collect(),
            scopes: self.scopes.iter().map(|s| s.as_str().to_string()).collect(),
            limits: self.limits.clone(),
            expires_at: self.expires_at,
        };
        (secret, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn a_minted_key_stores_only_its_hash() {
        let spec = KeySpec::validate(
            "acme",
            "ci",
            &["generate".into()],
            Limits::default(),
            None,
            now(),
        )
        .unwrap();
        let (secret, key) = spec.mint();
        assert!(secret.starts_with("easel_sk_"));
        assert_eq!(key.hash, KeyHash::blake3_of(&secret).to_string());
        assert!(!key.hash.contains(&secret));
        assert_eq!(key.prefix.len(), PREFIX_LEN);
        assert!(secret.starts_with(&key.prefix));
        assert!(key.id.starts_with("key_"));
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = |project: &str, name: &str, scopes: &[&str], expires: Option<i64>| {
            let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
            KeySpec::validate(
                project,
                name,
                &scopes,
                Limits::default(),
                expires.map(|s| DateTime::from_timestamp(s, 0).unwrap()),
                now(),
            )
            .unwrap_err()
        };
        assert_eq!(bad("Acme", "ci", &["read"], None).param, Some("project"));
        assert_eq!(bad("acme", "", &["read"], None).param, Some("name"));
        assert_eq!(bad("acme", "ci", &[], None).param, Some("scopes"));
        assert_eq!(bad("acme", "ci", &["owner"], None).param, Some("scopes"));
        assert_eq!(
            bad("acme", "ci", &["read"], Some(1)).param,
            Some("expires_at")
        );
    }
}
