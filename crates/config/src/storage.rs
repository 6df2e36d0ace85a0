//! Where the records and the image bytes live: `[database]` and
//! `[storage]`. Every default is listed in `docs/configuration.md`.
//!
//! Secrets are not read from here: an S3 store takes its endpoint, region
//! and credentials from the standard `AWS_*` variables, a database URL may
//! carry a password and is never logged.

use std::path::Path;
use std::time::Duration;

use easel_store::{S3Options, ServerSideEncryption};
use serde::{Deserialize, Serialize};

/// The database of jobs, images and audit events (`[database]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://<file>` or `postgres://user:password@host:port/db`.
    /// Default: `sqlite://<data_dir>/easel.db`. Env: `EASEL_DATABASE__URL`.
    pub url: Option<DatabaseUrl>,
}

impl DatabaseConfig {
    /// The URL in force: the configured one, or SQLite in `data_dir`.
    pub fn url_or_default(&self, data_dir: &Path) -> String {
        match &self.url {
            Some(url) => url.expose().to_string(),
            None => format!("sqlite://{}", data_dir.join("easel.db").display()),
        }
    }

    /// Whether the database can be shared by several processes (a
    /// PostgreSQL URL).
    pub fn is_shared(&self) -> bool {
        self.url.as_ref().is_some_and(|url| {
            let url = url.expose();
            url.starts_with("postgres://") || url.starts_with("postgresql://")
        })
    }
}

/// A database URL. It may hold a password, so it prints (in logs, the
/// audit log and `easel config`) with the password as `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// A URL as configured.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, password included: for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_password(&self.0)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// `scheme://user:secret@host/…` → `scheme://user:***@host/…`; anything
/// else unchanged.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Server-side encryption requested for uploaded objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SseMode {
    /// The bucket's own default.
    #[default]
    None,
    /// SSE-S3 (`AES256`).
    S3,
    /// SSE-KMS with `storage.kms_key_id`.
    Kms,
}

/// The object store of image bytes (`[storage]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `file://<folder>` (or a plain folder path), or
    /// `s3://<bucket>[/<prefix>]`. Default: the data folder. Env:
    /// `EASEL_STORAGE__URL`.
    pub url: Option<String>,
    /// Answer image links with presigned S3 URLs (valid `urls.ttl_seconds`)
    /// instead of the API's signed links that proxy the bytes. Needs an
    /// `s3://` URL. Default: `false`. Env: `EASEL_STORAGE__PRESIGN`.
    pub presign: bool,
    /// Encryption at rest asked of S3 on every upload: `none` (the bucket's
    /// default), `s3` (SSE-S3) or `kms` (SSE-KMS). Default: `none`. Env:
    /// `EASEL_STORAGE__SERVER_SIDE_ENCRYPTION`.
    pub server_side_encryption: SseMode,
    /// The KMS key id or ARN for `server_side_encryption = "kms"`. Env:
    /// `EASEL_STORAGE__KMS_KEY_ID`.
    pub kms_key_id: Option<String>,
    /// Retries of one failed S3 request, with exponential backoff from
    /// 100 ms to 15 s. Default: 10. Env: `EASEL_STORAGE__MAX_RETRIES`.
    pub max_retries: usize,
    /// No retry of a request starts later than this after its first try.
    /// Default: 60. Env: `EASEL_STORAGE__RETRY_TIMEOUT_SECONDS`.
    pub retry_timeout_seconds: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let s3 = S3Options::default();
        Self {
            url: None,
            presign: false,
            server_side_encryption: SseMode::None,
            kms_key_id: None,
            max_retries: s3.max_retries,
            retry_timeout_seconds: s3.retry_timeout.as_secs(),
        }
    }
}

impl StorageConfig {
    /// The URL in force: the configured one, or the data folder.
    pub fn url_or_default(&self, data_dir: &Path) -> String {
        match &self.url {
            Some(url) => url.clone(),
            None => data_dir.display().to_string(),
        }
    }

    /// The S3 backend's settings.
    pub fn s3_options(&self) -> S3Options {
        S3Options {
            max_retries: self.max_retries,
            retry_timeout: Duration::from_secs(self.retry_timeout_seconds),
            encryption: match self.server_side_encryption {
                SseMode::None => None,
                SseMode::S3 => Some(ServerSideEncryption::S3),
                SseMode::Kms => Some(ServerSideEncryption::Kms {
                    key_id: self.kms_key_id.clone().unwrap_or_default(),
                }),
            },
        }
    }

    /// What is wrong with the settings, for a startup error; `None` if
    /// nothing is.
    pub fn problem(&self) -> Option<String> {
        let s3 = self.url.as_deref().is_some_and(|u| u.starts_with("s3://"));
        if self.presign && !s3 {
            return Some(
                "storage.presign needs an s3:// storage.url (a local folder cannot presign links)"
                    .into(),
            );
        }
        if self.server_side_encryption == SseMode::Kms
            && self.kms_key_id.as_deref().is_none_or(str::is_empty)
        {
            return Some(
                "storage.server_side_encryption = \"kms\" needs storage.kms_key_id".into(),
            );
        }
        if self.server_side_encryption != SseMode::None && !s3 {
            return Some(
                "storage.server_side_encryption applies to an s3:// storage.url only".into(),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_everything_in_the_data_folder() {
        let dir = Path::new("/srv/easel");
        assert_eq!(
            DatabaseConfig::default().url_or_default(dir),
            "sqlite:///srv/easel/easel.db"
        );
        let storage = StorageConfig::default();
        assert_eq!(storage.url_or_default(dir), "/srv/easel");
        assert_eq!(storage.problem(), None);
        assert_eq!(storage.s3_options(), S3Options::default());
    }

    #[test]
    fn database_passwords_never_print() {
        let url =
            DatabaseUrl::new("postgres://easel:s3cret@db.internal:5432/easel?sslmode=require");
        assert_eq!(
            url.redacted(),
            "postgres://easel:***@db.internal:5432/easel?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let config = DatabaseConfig { url: Some(url) };
        let toml = toml::to_string(&config).unwrap();
        assert!(
            !toml.contains("s3cret") && toml.contains("easel:***@"),
            "{toml}"
        );
        assert!(config.url_or_default(Path::new("/x")).contains("s3cret"));
        for plain in [
            "sqlite:///srv/easel.db",
            "postgres://db/easel",
            "postgres://u@db/e",
        ] {
            assert_eq!(redact_password(plain), plain);
        }
    }

    #[test]
    fn contradictions_are_refused_naming_the_key() {
        let presign_local = StorageConfig {
            presign: true,
            ..StorageConfig::default()
        };
        assert!(presign_local.problem().unwrap().contains("storage.presign"));
        let kms_without_key = StorageConfig {
            url: Some("s3://b".into()),
            server_side_encryption: SseMode::Kms,
            ..StorageConfig::default()
        };
        assert!(
            kms_without_key
                .problem()
                .unwrap()
                .contains("storage.kms_key_id")
        );
        let kms = StorageConfig {
            kms_key_id: Some("alias/easel".into()),
            ..kms_without_key
        };
        assert_eq!(kms.problem(), None);
        assert_eq!(
            kms.s3_options().encryption,
            Some(ServerSideEncryption::Kms {
                key_id: "alias/easel".into()
            })
        );
    }
}
