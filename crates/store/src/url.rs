//! `database.url`: which backend a URL names, parsed once so that a wrong
//! URL fails before anything is opened, with a message that names the
//! setting and never prints a password.

use std::path::PathBuf;

use crate::error::{Result, StoreError};

/// A database location, by backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DatabaseUrl {
    /// `sqlite://<path>`: a file, created (with its folder) when missing.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, as libpq would read it.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses `url` by its scheme.
    ///
    /// The SQLite path is everything after `sqlite://`, taken literally:
    /// `sqlite://easel-data/easel.db` is relative to the working directory,
    /// `sqlite:///var/lib/easel/easel.db` is absolute. Query parameters are
    /// refused rather than read as part of a file name.
    pub(crate) fn parse(url: &str) -> Result<DatabaseUrl> {
        let invalid = |reason: String| StoreError::InvalidUrl {
            url: redact(url),
            reason,
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid(
                "expected `sqlite://<path>` or `postgres://[user@]host[:port]/database`".into(),
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                if rest.is_empty() {
                    return Err(invalid("a sqlite:// URL needs a file path".into()));
                }
                if rest.contains(['?', '#']) {
                    return Err(invalid(
                        "sqlite:// URLs take a plain file path, without `?` or `#` parameters"
                            .into(),
                    ));
                }
                Ok(DatabaseUrl::Sqlite(PathBuf::from(rest)))
            }
            "postgres" | "postgresql" => {
                if rest.is_empty() {
                    return Err(invalid("a postgres:// URL needs at least a host".into()));
                }
                Ok(DatabaseUrl::Postgres(url.to_string()))
            }
            other => Err(invalid(format!(
                "unknown scheme `{other}`; supported: sqlite, postgres, postgresql"
            ))),
        }
    }
}

/// `url` with the password of its user info, if any, replaced by `***`:
/// what error messages and logs may show.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    match user_info.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_keep_their_path_as_written() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://easel-data/easel.db").unwrap(),
            DatabaseUrl::Sqlite("easel-data/easel.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/easel/easel.db").unwrap(),
            DatabaseUrl::Sqlite("/var/lib/easel/easel.db".into())
        );
    }

    #[test]
    fn both_postgres_schemes_are_accepted() {
        for url in ["postgres://db/easel", "postgresql://u@db:5433/easel"] {
            assert_eq!(
                DatabaseUrl::parse(url).unwrap(),
                DatabaseUrl::Postgres(url.into())
            );
        }
    }

    #[test]
    fn wrong_urls_name_the_setting_and_hide_the_password() {
        for (url, needle) in [
            ("mysql://root:hunter2@db/easel", "unknown scheme `mysql`"),
            ("easel.db", "expected `sqlite://<path>`"),
            ("sqlite://", "needs a file path"),
            ("sqlite://easel.db?mode=ro", "without `?`"),
            ("postgres://", "needs at least a host"),
        ] {
            let err = DatabaseUrl::parse(url).unwrap_err();
            assert_eq!(err.code(), "invalid_database_url");
            let text = err.to_string();
            assert!(text.starts_with("database.url "), "{text}");
            assert!(text.contains(needle), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn redaction_hides_only_the_password() {
        assert_eq!(
            redact("postgres://easel:s3cr:et@db:5432/easel?sslmode=require"),
            "postgres://easel:***@db:5432/easel?sslmode=require"
        );
        assert_eq!(
            redact("postgres://easel@db/easel"),
            "postgres://easel@db/easel"
        );
        assert_eq!(redact("postgres://db/e@x"), "postgres://db/e@x");
        assert_eq!(redact("not a url"), "not a url");
    }
}
