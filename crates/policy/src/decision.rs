//! [`Action`]: what a policy decided, shared by every check.

use serde::{Deserialize, Serialize};

/// What a policy check decided, from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing matched.
    Allow,
    /// Let it through, mark it and count it.
    Flag,
    /// Refuse it.
    Block,
}

impl Action {
    /// The lower-case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Flag => "flag",
            Action::Block => "block",
        }
    }
}
