//! [`decide`]: an open_nsfw score against [`ImageThresholds`].

use serde::{Deserialize, Serialize};

use crate::{Action, PolicyError};

/// Where an NSFW score starts to flag and to block.
///
/// Defaults: flag at 0.5, block at 0.8. Yahoo's guidance for open_nsfw is
/// that scores below 0.2 are likely safe and above 0.8 likely NSFW, with the
/// band between needing a second look. Blocking only above 0.8 keeps false
/// refusals rare (the network rates plain skin-coloured shapes highly: the
/// `shapes_300` fixture, two tan ellipses, scores 0.87), while flagging from
/// 0.5 marks the upper half of the uncertain band for review without
/// refusing it; 0.2 would flag most portraits.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ImageThresholds {
    /// At or above this score the image is delivered but flagged. Default 0.5.
    pub flag: f32,
    /// At or above this score the image is withheld. Default 0.8.
    pub block: f32,
}

impl Default for ImageThresholds {
    fn default() -> Self {
        ImageThresholds {
            flag: 0.5,
            block: 0.8,
        }
    }
}

impl ImageThresholds {
    /// Checks `0 <= flag <= block <= 1`; errors name the field
    /// (`image_moderation.flag` or `image_moderation.block`).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let field = |name: &str, message: String| PolicyError::Config {
            field: format!("image_moderation.{name}"),
            message,
        };
        for (name, value) in [("flag", self.flag), ("block", self.block)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(field(name, format!("must be between 0 and 1, got {value}")));
            }
        }
        if self.flag > self.block {
            return Err(field(
                "flag",
                format!("must not exceed block ({}), got {}", self.block, self.flag),
            ));
        }
        Ok(())
    }
}

/// What image moderation decided, with the numbers behind it (recorded on
/// the image and in the audit log).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ImageDecision {
    /// [`Action::Block`] at or above the block threshold, [`Action::Flag`] at
    /// or above the flag threshold, else [`Action::Allow`].
    pub action: Action,
    /// open_nsfw's P(NSFW).
    pub nsfw_score: f32,
    /// The flag threshold applied.
    pub flag_threshold: f32,
    /// The block threshold applied.
    pub block_threshold: f32,
}

/// Compares `nsfw_score` with the thresholds (inclusive). A NaN score, which
/// a working classifier never returns, blocks: moderation fails closed.
pub fn decide(nsfw_score: f32, thresholds: &ImageThresholds) -> ImageDecision {
    let action = if nsfw_score.is_nan() || nsfw_score >= thresholds.block {
        Action::Block
    } else if nsfw_score >= thresholds.flag {
        Action::Flag
    } else {
        Action::Allow
    };
    ImageDecision {
        action,
        nsfw_score,
        flag_threshold: thresholds.flag,
        block_threshold: thresholds.block,
    }
}
