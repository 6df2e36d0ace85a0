//! [`PolicyError`]: everything that can go wrong while deciding, each with a
//! stable [`code`](PolicyError::code).

/// Why a policy could not be built or a decision could not be made. A
/// decision itself (block, flag) is not an error: see [`crate::Action`].
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy configuration is invalid (a bad pattern, a threshold out
    /// of range); names the field.
    #[error("invalid policy configuration: `{field}`: {message}")]
    Config {
        /// The configuration key.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A model file is missing or unreadable; names the file.
    #[error("cannot load `{path}`: {message}")]
    Model {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Running a model failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// An image handed to a check cannot be used (empty, or a pixel buffer
    /// of the wrong length); says which.
    #[error("invalid image: {0}")]
    InvalidImage(String),
}

impl PolicyError {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::Config { .. } => "policy_config_invalid",
            PolicyError::Model { .. } => "policy_model_unavailable",
            PolicyError::Inference(_) => "policy_inference_failed",
            PolicyError::InvalidImage(_) => "policy_image_invalid",
        }
    }
}
