//! The engine's one error type. Every failure the engine can meet is a
//! variant here with a stable [`EngineError::code`]; the engine never panics
//! on bad files or bad parameters.

use std::path::PathBuf;

/// Everything that can go wrong loading a model or generating with it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file the model folder must contain is absent.
    #[error("missing file {path}")]
    MissingFile {
        /// The expected path.
        path: PathBuf,
    },
    /// The folder's config names an architecture the engine does not support.
    #[error("unknown architecture: {detail}")]
    UnknownArchitecture {
        /// What was found and what is supported.
        detail: String,
    },
    /// A config file could not be read or parsed.
    #[error("invalid config {path}: {detail}")]
    InvalidConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A tensor's shape in the weights disagrees with the config.
    #[error(
        "shape mismatch for tensor `{tensor}` in {path}: config expects {expected:?}, weights have {found:?}"
    )]
    ShapeMismatch {
        /// The weights file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// Shape implied by the config.
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },
    /// A tensor the config needs is not in the weights.
    #[error("tensor `{tensor}` not found in {path}")]
    MissingTensor {
        /// The weights file (or folder).
        path: PathBuf,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor is stored in a dtype the engine cannot use.
    #[error(
        "tensor `{tensor}` in {path} has unsupported dtype {dtype} (supported: f32, f16, bf16)"
    )]
    UnsupportedDtype {
        /// The weights file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The dtype found.
        dtype: String,
    },
    /// A safetensors file is truncated or malformed.
    #[error("corrupt weights file {path}: {detail}")]
    CorruptWeights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Width or height is not a multiple of the model's factor or exceeds its limit.
    #[error("invalid size {width}x{height}: {detail}")]
    InvalidSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// The rule broken, naming the limit.
        detail: String,
    },
    /// Zero steps were asked for.
    #[error("steps must be at least 1")]
    ZeroSteps,
    /// The guidance scale is NaN or infinite.
    #[error("guidance_scale must be finite, got {0}")]
    NonFiniteGuidance(f32),
    /// Image-to-image strength outside [0, 1].
    #[error("strength must be between 0 and 1, got {0}")]
    InvalidStrength(f32),
    /// The init image does not match the requested size.
    #[error("init image is {found_w}x{found_h}, expected {width}x{height}")]
    InitImageSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// Init image width.
        found_w: u32,
        /// Init image height.
        found_h: u32,
    },
    /// An inpainting mask was given without an init image.
    #[error("a mask needs an init image to repaint")]
    MaskWithoutInitImage,
    /// The inpainting mask does not match the requested size.
    #[error("mask is {found_w}x{found_h}, expected {width}x{height}")]
    MaskSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// Mask width.
        found_w: u32,
        /// Mask height.
        found_h: u32,
    },
    /// A prompt whose syntax cannot be used (a malformed or out-of-range
    /// weight); its code is the prompt error's (`invalid_prompt_weight`).
    #[error("invalid prompt: {0}")]
    InvalidPrompt(#[from] easel_core::PromptError),
    /// `clip_skip` outside `1..=max`.
    #[error("clip_skip must be between 1 and {max}{detail}, got {value}")]
    InvalidClipSkip {
        /// The value asked for.
        value: u32,
        /// The largest accepted: 12, or the SD 1.x encoder's layer count.
        max: u32,
        /// Why the limit is lower than 12, if it is.
        detail: String,
    },
    /// A batch mixed requests that cannot share one call.
    #[error(
        "requests in one batch must share size, steps, sampler, schedule, guidance, strength and clip_skip: {0}"
    )]
    IncompatibleBatch(String),
    /// An empty batch.
    #[error("a batch needs at least one request")]
    EmptyBatch,
    /// The sampler cannot be used with this model or schedule.
    #[error("sampler {sampler} is not supported here: {detail}")]
    UnsupportedSampler {
        /// The sampler name.
        sampler: String,
        /// Why.
        detail: String,
    },
    /// The requested device cannot be used (e.g. CUDA without the `cuda` feature).
    #[error("unsupported device: {detail}")]
    UnsupportedDevice {
        /// What was asked for and why it cannot be had.
        detail: String,
    },
    /// Cancelled between steps by the caller.
    #[error("cancelled")]
    Cancelled,
    /// A tokenizer failure.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// An I/O failure reading the model folder.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A numeric failure inside the tensor library (a bug or out of memory).
    #[error("tensor computation failed: {0}")]
    Compute(String),
    /// A LoRA file does not exist.
    #[error("LoRA file {path} not found")]
    LoraNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A LoRA file is not a readable LoRA: not safetensors, truncated, or
    /// with a tensor that cannot be used (an unpaired `up`/`down`, ranks
    /// that disagree, a non-scalar alpha, an unsupported dtype).
    #[error("invalid LoRA {path}: {detail}")]
    LoraInvalid {
        /// The LoRA file.
        path: PathBuf,
        /// What is wrong, naming the key.
        detail: String,
    },
    /// A LoRA tensor name is in neither supported layout (kohya, PEFT), or
    /// belongs to an unsupported adapter type (LoHa, LoKr, DoRA, ...).
    #[error("LoRA {path}: key `{key}` is not a LoRA key the engine understands ({detail})")]
    LoraUnknownKey {
        /// The LoRA file.
        path: PathBuf,
        /// The tensor name.
        key: String,
        /// What was expected.
        detail: String,
    },
    /// A LoRA key names a layer this model does not have (a LoRA for
    /// another architecture); nothing is applied.
    #[error("LoRA {path}: key `{key}` matches no layer of this model ({detail})")]
    LoraUnmatchedKey {
        /// The LoRA file.
        path: PathBuf,
        /// The tensor name.
        key: String,
        /// Which component was searched.
        detail: String,
    },
    /// A LoRA's product `up @ down` does not have the shape of the weight it
    /// patches.
    #[error(
        "LoRA {path}: key `{key}` makes a {found:?} update for weight `{tensor}` of shape {expected:?}"
    )]
    LoraShapeMismatch {
        /// The LoRA file.
        path: PathBuf,
        /// The LoRA key (its `down` tensor).
        key: String,
        /// The model weight it patches.
        tensor: String,
        /// The weight's shape.
        expected: Vec<usize>,
        /// The update's shape.
        found: Vec<usize>,
    },
    /// A LoRA's weight in a combination is NaN or infinite.
    #[error("LoRA {path}: weight must be finite, got {weight}")]
    LoraInvalidWeight {
        /// The LoRA file.
        path: PathBuf,
        /// The weight given.
        weight: f32,
    },
}

impl EngineError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::MissingFile { .. } => "model_file_missing",
            EngineError::UnknownArchitecture { .. } => "unknown_architecture",
            EngineError::InvalidConfig { .. } => "invalid_model_config",
            EngineError::ShapeMismatch { .. } => "weight_shape_mismatch",
            EngineError::MissingTensor { .. } => "weight_missing",
            EngineError::UnsupportedDtype { .. } => "unsupported_dtype",
            EngineError::CorruptWeights { .. } => "corrupt_weights",
            EngineError::InvalidSize { .. } => "invalid_size",
            EngineError::ZeroSteps => "invalid_steps",
            EngineError::NonFiniteGuidance(_) => "invalid_guidance_scale",
            EngineError::InvalidStrength(_) => "invalid_strength",
            EngineError::InitImageSize { .. } => "invalid_image",
            EngineError::MaskWithoutInitImage => "mask_without_init_image",
            EngineError::MaskSize { .. } => "invalid_mask",
            EngineError::InvalidPrompt(e) => e.code(),
            EngineError::InvalidClipSkip { .. } => "invalid_clip_skip",
            EngineError::IncompatibleBatch(_) => "incompatible_batch",
            EngineError::EmptyBatch => "empty_batch",
            EngineError::UnsupportedSampler { .. } => "invalid_sampler",
            EngineError::UnsupportedDevice { .. } => "unsupported_device",
            EngineError::Cancelled => "cancelled",
            EngineError::Tokenizer(_) => "tokenizer_error",
            EngineError::Io { .. } => "model_io_error",
            EngineError::Compute(_) => "engine_error",
            EngineError::LoraNotFound { .. } => "lora_not_found",
            EngineError::LoraInvalid { .. } => "lora_invalid",
            EngineError::LoraUnknownKey { .. } => "lora_unknown_key",
            EngineError::LoraUnmatchedKey { .. } => "lora_unmatched_key",
            EngineError::LoraShapeMismatch { .. } => "lora_shape_mismatch",
            EngineError::LoraInvalidWeight { .. } => "lora_invalid_weight",
        }
    }

    /// Whether the caller's request (rather than the model or the machine) is at fault.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            EngineError::InvalidSize { .. }
                | EngineError::ZeroSteps
                | EngineError::NonFiniteGuidance(_)
                | EngineError::InvalidStrength(_)
                | EngineError::InitImageSize { .. }
                | EngineError::MaskWithoutInitImage
                | EngineError::MaskSize { .. }
                | EngineError::UnsupportedSampler { .. }
                | EngineError::InvalidPrompt(_)
                | EngineError::InvalidClipSkip { .. }
        )
    }
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Compute(e.to_string())
    }
}

/// Shorthand for engine results.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
