//! Who a request acts as: [`Principal`], its project and scopes.
//!
//! Config-file keys are hashed in the config (`easel_config::keys`) and
//! checked here in constant time: every configured hash is compared (with
//! `subtle`, no early exit), so the time taken says nothing about which key,
//! or how much of one, matched. Database keys are found by the BLAKE3 hash
//! of the presented secret (`crate::tenancy::authenticate`): the secret has
//! 256 random bits, so an index lookup on its hash leaks nothing useful.

use easel_config::ApiKeyEntry;
pub use easel_config::keys::{HashAlgorithm, KeyHash, Scope, create_key, new_secret};
use easel_core::{Limits, ProjectId};
use subtle::ConstantTimeEq;

/// Who a request is acting as.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// Authentication is off (loopback or `--insecure-no-auth`, and no key
    /// anywhere): the `default` project, every scope, every project's data.
    Anonymous,
    /// A key, from the config file or the database.
    Key(Box<KeyHolder>),
}

/// The holder of an authenticated key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyHolder {
    /// The key's id (`key_…`) for a database key; `None` for a config key.
    pub id: Option<String>,
    /// The key's name.
    pub name: String,
    /// The project it acts in.
    pub project: ProjectId,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// The key's own limits.
    pub limits: Limits,
    /// Its project's limits (the project's own, else `tenancy.default_limits`).
    pub project_limits: Limits,
    /// Whether its project is billable (named on metrics).
    pub billable: bool,
}

impl KeyHolder {
    /// The `project` label of this key's project on metrics: its name when
    /// billable, else `other`, so the series stay few.
    pub fn metric_project(&self) -> String {
        if self.billable {
            self.project.to_string()
        } else {
            "other".into()
        }
    }
}

impl Principal {
    /// Whether this principal may act within `scope`. Admin implies all,
    /// `generate` and `review` imply `read`.
    pub fn allows(&self, scope: Scope) -> bool {
        match self {
            Principal::Anonymous => true,
            Principal::Key(k) => k.scopes.iter().any(|s| s.grants(scope)),
        }
    }

    /// Whether this principal sees every project (admin keys, and
    /// unauthenticated use of a single-tenant server).
    pub fn sees_all(&self) -> bool {
        self.allows(Scope::Admin)
    }

    /// Whether this principal may see what `project` owns.
    pub fn sees(&self, project: &ProjectId) -> bool {
        match self {
            Principal::Anonymous => true,
            Principal::Key(k) => self.sees_all() || k.project == *project,
        }
    }

    /// The project listings are limited to: `None` for those who see all.
    pub fn listing_scope(&self) -> Option<ProjectId> {
        (!self.sees_all()).then(|| self.project())
    }

    /// The project this principal acts in (what it creates belongs there).
    pub fn project(&self) -> ProjectId {
        match self {
            Principal::Anonymous => ProjectId::default_project(),
            Principal::Key(k) => k.project.clone(),
        }
    }

    /// A short name for logs and the audit table.
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::Key(k) => &k.name,
        }
    }
}

/// The user a job is recorded under: the API key's name, or (with
/// authentication off) the request's own `user` field.
pub fn user_id(principal: &Principal, request_user: Option<String>) -> Option<String> {
    match principal {
        Principal::Key(k) => Some(k.name.clone()),
        Principal::Anonymous => request_user.filter(|u| !u.is_empty()),
    }
}

/// A config-file key that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigKey {
    /// Its name.
    pub name: String,
    /// Its project.
    pub project: ProjectId,
    /// Its scopes.
    pub scopes: Vec<Scope>,
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

    /// The projects config keys name (each must exist in the database).
    pub fn projects(&self) -> Vec<ProjectId> {
        let mut projects: Vec<ProjectId> = self.entries.iter().map(|e| e.project.clone()).collect();
        projects.sort();
        projects.dedup();
        projects
    }

    /// The config key `token` is, if any.
    pub fn authenticate(&self, token: &str) -> Option<ConfigKey> {
        let blake = KeyHash::blake3_of(token);
        let sha = KeyHash::sha256_of(token);
        let mut found = None;
        for entry in &self.entries {
            let candidate = match entry.hash.algorithm() {
                HashAlgorithm::Blake3 => &blake,
                HashAlgorithm::Sha256 => &sha,
            };
            if bool::from(candidate.digest().ct_eq(entry.hash.digest())) && found.is_none() {
                found = Some(ConfigKey {
                    name: entry.name.clone(),
                    project: entry.project.clone(),
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
                    project: ProjectId::default_project(),
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
        assert_eq!(who.name, "ci");
        assert_eq!(who.scopes, vec![Scope::Generate]);
        assert_eq!(who.project, ProjectId::default_project());
        assert!(keys.authenticate("easel_sk_wrong").is_none());
    }

    #[test]
    fn sha256_hashes_are_accepted_too() {
        let k = keys(&[(
            "ops",
            KeyHash::sha256_of("secret-token"),
            vec![Scope::Admin],
        )]);
        assert_eq!(
            k.authenticate("secret-token").unwrap().scopes,
            vec![Scope::Admin]
        );
    }
}
