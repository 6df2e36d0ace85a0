//! What one `easel serve` process does in a fleet (`role`, env
//! `EASEL_ROLE`, flag `--role`), and what every process of a fleet must
//! share.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Config;
use crate::config::ConfigError;

/// The parts of Easel one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The public API and a worker: one process does everything (the
    /// default, and the only role on a SQLite database).
    #[default]
    All,
    /// The public API only: loads no model and runs no job, so it can be
    /// replicated freely; model descriptions come from the workers through
    /// the database.
    Api,
    /// A worker only: runs jobs, and serves nothing but `/healthz`,
    /// `/readyz` and `/metrics`.
    Worker,
}

impl Role {
    /// Whether this process serves the public API.
    pub fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    /// Whether this process runs a worker (loads models, claims jobs).
    pub fn runs_worker(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }

    /// The name as configured: `all`, `api` or `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Role::All),
            "api" => Ok(Role::Api),
            "worker" => Ok(Role::Worker),
            other => Err(format!(
                "`{other}` is not a role; expected `all`, `api` or `worker`"
            )),
        }
    }
}

impl Config {
    /// Whether this process is one of several sharing a queue: any role
    /// but `all`. (Several `all` processes on one PostgreSQL database are a
    /// fleet too; they must be given the same secrets the same way, which
    /// startup cannot tell.)
    pub fn is_fleet(&self) -> bool {
        self.role != Role::All
    }

    /// What a fleet's processes must share but this configuration would
    /// let each generate for itself (URL signing key, watermark server tag,
    /// C2PA certificate), named by key; empty outside a fleet. A replica
    /// with a key of its own would sign links the others refuse, or mark
    /// images with a tag the others do not know.
    pub fn unshared_secrets(&self) -> Vec<&'static str> {
        if !self.is_fleet() {
            return Vec::new();
        }
        let mut missing = Vec::new();
        if self.urls.signing_key.is_none() {
            missing.push("urls.signing_key (EASEL_URLS__SIGNING_KEY)");
        }
        if self.provenance.watermark && self.provenance.server_tag.is_none() {
            missing.push("provenance.server_tag (EASEL_PROVENANCE__SERVER_TAG)");
        }
        if self.provenance.c2pa && self.provenance.certificate.is_none() {
            missing.push(
                "provenance.certificate and provenance.private_key \
                 (EASEL_PROVENANCE__CERTIFICATE, EASEL_PROVENANCE__PRIVATE_KEY)",
            );
        }
        missing
    }

    /// Refuses a role this configuration cannot run: `api` or `worker` on a
    /// database no other process can open (SQLite), or on secrets each
    /// replica would generate for itself ([`Config::unshared_secrets`]).
    pub fn check_role(&self) -> Result<(), ConfigError> {
        if self.role != Role::All && !self.database.is_shared() {
            return Err(ConfigError::Unusable(format!(
                "role `{}` needs a database other processes can share: set database.url \
                 (EASEL_DATABASE__URL) to a postgres:// URL, or run with role `all`",
                self.role
            )));
        }
        let unshared = self.unshared_secrets();
        if !unshared.is_empty() {
            return Err(ConfigError::Unusable(format!(
                "role `{}` runs beside other processes on one queue, which must all share \
                 their secrets; set {} (or turn the feature off)",
                self.role,
                unshared.join("; ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    #[test]
    fn one_process_on_sqlite_may_generate_its_own_secrets() {
        assert!(Config::default().unshared_secrets().is_empty());
    }

    #[test]
    fn a_fleet_must_share_every_secret_and_is_told_which() {
        let mut config = Config {
            role: Role::Worker,
            ..Config::default()
        };
        let missing = config.unshared_secrets();
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(missing[0].starts_with("urls.signing_key"));
        config.urls.signing_key = Some(Secret::new("k"));
        config.provenance.server_tag = Some(7);
        config.provenance.c2pa = false;
        assert!(config.unshared_secrets().is_empty());
    }

    #[test]
    fn roles_parse_and_print() {
        for role in [Role::All, Role::Api, Role::Worker] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!(
            "both"
                .parse::<Role>()
                .unwrap_err()
                .contains("`all`, `api` or `worker`")
        );
    }
}
