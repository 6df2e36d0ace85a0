//! The media crate's one error type.

/// Everything that can go wrong turning pixels into bytes or bytes into pixels.
///
/// Each variant has a stable machine-readable [`code`](MediaError::code);
/// the server maps codes to HTTP statuses in one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The bytes are not an image, or a damaged or truncated one.
    #[error("not a valid image: {reason}")]
    InvalidImage {
        /// What was wrong.
        reason: String,
    },

    /// An image in a format Easel does not accept (only PNG, JPEG and WebP are).
    #[error("unsupported image format {format}; expected PNG, JPEG or WebP")]
    UnsupportedFormat {
        /// The detected format, e.g. `gif`.
        format: String,
    },

    /// An image whose dimensions exceed the configured limits. Raised from
    /// the header alone, before any pixel memory is allocated.
    #[error(
        "image is {width}x{height} pixels; the limit is {max_side} pixels per side \
         and {max_pixels} pixels in all"
    )]
    ImageTooLarge {
        /// Width claimed by the header.
        width: u32,
        /// Height claimed by the header.
        height: u32,
        /// The longest side allowed.
        max_side: u32,
        /// The most pixels allowed.
        max_pixels: u64,
    },

    /// An upload larger than the configured byte limit.
    #[error("image file is {size} bytes; the limit is {max} bytes")]
    FileTooLarge {
        /// Size of the upload.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// Dimensions that cannot describe an image: zero, or not matching the
    /// pixel buffer.
    #[error("invalid dimensions: {reason}")]
    InvalidDimensions {
        /// What was wrong.
        reason: String,
    },

    /// A quality or compression level outside 0..=100.
    #[error("output_compression must be between 0 and 100, got {0}")]
    InvalidQuality(u8),

    /// An image too small to carry an invisible watermark.
    #[error(
        "image is {width}x{height} pixels; a watermark needs at least {min_side} pixels per side"
    )]
    ImageTooSmall {
        /// The image's width.
        width: u32,
        /// The image's height.
        height: u32,
        /// The smallest side accepted.
        min_side: u32,
    },

    /// A C2PA credentials file (certificate chain or private key) that does
    /// not exist.
    #[error("C2PA credentials file {path} does not exist")]
    C2paCredentialsMissing {
        /// The file.
        path: String,
    },

    /// A C2PA credentials file that exists but cannot be read or written.
    #[error("cannot access C2PA credentials file {path}: {reason}")]
    C2paCredentialsUnreadable {
        /// The file.
        path: String,
        /// The operating system's message.
        reason: String,
    },

    /// A C2PA credentials file that is not PEM, or whose PEM holds no
    /// certificate or PKCS#8 private key.
    #[error("C2PA credentials file {path} is not a usable PEM file: {reason}")]
    C2paCredentialsNotPem {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },

    /// A private key that does not belong to the chain's signing certificate.
    #[error("the private key in {key_path} does not match the signing certificate in {chain_path}")]
    C2paKeyMismatch {
        /// The key file.
        key_path: String,
        /// The certificate chain file.
        chain_path: String,
    },

    /// A chain that is one self-signed certificate: C2PA validators reject
    /// it, so a CA and an end-entity certificate are needed.
    #[error(
        "the C2PA chain in {path} is a single self-signed certificate; C2PA needs an \
         end-entity certificate issued by a CA"
    )]
    C2paSelfSigned {
        /// The certificate chain file.
        path: String,
    },

    /// A certificate outside its validity window now.
    #[error("a certificate in {path} is not valid now: {reason}")]
    C2paCertificateExpired {
        /// The certificate chain file.
        path: String,
        /// Which certificate and its window.
        reason: String,
    },

    /// A certificate or key that parses but that C2PA cannot sign with
    /// (a CA as the signing certificate, a missing extension, an
    /// unsupported key type).
    #[error("C2PA cannot sign with the credentials in {path}: {reason}")]
    C2paCredentialsRejected {
        /// The file at fault.
        path: String,
        /// What was wrong.
        reason: String,
    },

    /// Signing an image's C2PA manifest failed.
    #[error("cannot sign the C2PA manifest: {reason}")]
    C2paSign {
        /// The SDK's message.
        reason: String,
    },

    /// Reading an image's C2PA manifest failed for another reason than a
    /// failed validation (which is reported in the summary instead).
    #[error("cannot read the C2PA manifest: {reason}")]
    C2paRead {
        /// The SDK's message.
        reason: String,
    },

    /// The encoder failed (an internal error: valid pixels always encode).
    #[error("cannot encode {format}: {reason}")]
    Encode {
        /// The output format.
        format: &'static str,
        /// The encoder's message.
        reason: String,
    },
}

impl MediaError {
    /// The stable snake_case code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            MediaError::InvalidImage { .. } => "invalid_image",
            MediaError::UnsupportedFormat { .. } => "unsupported_image_format",
            MediaError::ImageTooLarge { .. } => "image_too_large",
            MediaError::FileTooLarge { .. } => "payload_too_large",
            MediaError::InvalidDimensions { .. } => "invalid_dimensions",
            MediaError::InvalidQuality(_) => "invalid_output_compression",
            MediaError::Encode { .. } => "encode_failed",
            MediaError::C2paCredentialsMissing { .. } => "c2pa_credentials_missing",
            MediaError::C2paCredentialsUnreadable { .. } => "c2pa_credentials_unreadable",
            MediaError::C2paCredentialsNotPem { .. } => "c2pa_credentials_not_pem",
            MediaError::C2paKeyMismatch { .. } => "c2pa_key_mismatch",
            MediaError::C2paSelfSigned { .. } => "c2pa_self_signed_certificate",
            MediaError::C2paCertificateExpired { .. } => "c2pa_certificate_expired",
            MediaError::C2paCredentialsRejected { .. } => "c2pa_credentials_rejected",
            MediaError::C2paSign { .. } => "c2pa_sign_failed",
            MediaError::C2paRead { .. } => "c2pa_read_failed",
            MediaError::ImageTooSmall { .. } => "image_too_small",
        }
    }

    pub(crate) fn invalid(reason: impl ToString) -> Self {
        MediaError::InvalidImage {
            reason: reason.to_string(),
        }
    }
}
