//! Typed identifiers. Each is a UUID v7 (time-ordered, so database indexes
//! stay append-mostly) printed with a short prefix that says what it names,
//! e.g. `job_0192…` or `img_0192…`; the prefix makes a pasted id
//! self-describing in logs and support tickets.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id (expected `{prefix}` followed by a UUID)")]
pub struct ParseIdError {
    /// What kind of id was expected ("job", "image").
    pub kind: &'static str,
    /// The prefix the id must start with.
    pub prefix: &'static str,
    /// The rejected input (truncated to 80 characters).
    pub value: String,
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// The textual prefix of this id kind.
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub fn uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0.simple())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = || ParseIdError {
                    kind: $kind,
                    prefix: $prefix,
                    value: s.chars().take(80).collect(),
                };
                let rest = s.strip_prefix($prefix).ok_or_else(err)?;
                Uuid::try_parse(rest).map(Self).map_err(|_| err())
            }
        }
    };
}

typed_id!(
    /// Identifies one job (one request, producing one or more images).
    JobId,
    "job_",
    "job"
);
typed_id!(
    /// Identifies one stored image.
    ImageId,
    "img_",
    "image"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_text_form() {
        let id = JobId::new();
        let text = id.to_string();
        assert!(text.starts_with("job_"));
        assert_eq!(text.parse::<JobId>().unwrap(), id);
    }

    #[test]
    fn an_image_id_is_not_a_job_id() {
        let text = ImageId::new().to_string();
        let err = text.parse::<JobId>().unwrap_err();
        assert_eq!(err.kind, "job");
    }

    #[test]
    fn garbage_is_rejected_with_the_expected_prefix_named() {
        let err = "job_nope".parse::<JobId>().unwrap_err();
        assert!(err.to_string().contains("job_"));
    }
}
