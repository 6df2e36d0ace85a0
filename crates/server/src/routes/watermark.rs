//! `POST /v1/watermark/detect`: reads the invisible watermark of an
//! uploaded image and, when its payload names an image this server stored,
//! returns that image's record (to a caller allowed to see it).
//!
//! The body is the image itself (`Content-Type: image/png`, `image/jpeg` or
//! `image/webp`) or a `multipart/form-data` form with the file in `image`.
//! It is decoded like an edit upload (`limits.max_upload_pixels`,
//! `server.body_limit_bytes`), and decoding and detection run off the async
//! runtime. An image with a side under 96 pixels is 400 `image_too_small`:
//! the mark cannot be read from it, and "not watermarked" would mislead.
//!
//! Who sees the record: an admin key (or anyone, when authentication is
//! off) sees every image; any other key only the images of jobs it
//! submitted. Otherwise `image` is null, exactly as for an id this server
//! never stored, so the answer does not tell a stranger which ids exist.

use axum::Json;
use axum::body::Bytes;
use axum::extract::multipart::Multipart;
use axum::extract::{Extension, FromRequest, Request, State};
use axum::http::{StatusCode, header};
use easel_core::RgbImage;
use easel_media::{DecodeLimits, WatermarkReading};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorKind, from_media_error, payload_too_large};
use crate::state::AppState;

/// Content types of a raw image body.
const IMAGE_TYPES: [&str; 3] = ["image/png", "image/jpeg", "image/webp"];

/// What the watermark says, and the image it points to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DetectResponse {
    /// Whether a valid Easel watermark (its code and CRC check) was found.
    pub watermarked: bool,
    /// The payload id, 12 lowercase hex digits (server tag, then image
    /// number); null when not watermarked.
    pub watermark_id: Option<String>,
    /// How intact the mark is, 0 to 1 (from the bits the code corrected
    /// and the sync peak); null when not watermarked. Any reading is a
    /// mark: a wrong id needs the code and the CRC to fail together.
    pub confidence: Option<f32>,
    /// Which mark was read: `easelmark-v1` (what Easel embeds) or
    /// `dwtDctSvd` (the `invisible-watermark` mark of older images); null
    /// when not watermarked.
    pub method: Option<String>,
    /// The transformation the search recovered (easelmark only): the
    /// image's scale relative to the delivered image, and where the mark's
    /// tile starts (a crop's offset, modulo the tile's period).
    pub transform: Option<DetectedTransform>,
    /// The stored image the payload names; null when not watermarked, when
    /// no stored image has this id, or when the caller may not see it.
    pub image: Option<DetectedImage>,
    /// The file's C2PA manifest, validated (against this server's signing
    /// CA as trust anchor): null when the file carries none (re-encoded and
    /// stripped files usually do not).
    pub c2pa: Option<C2paReport>,
    /// Why a C2PA manifest that is present could not be read at all; null
    /// otherwise.
    pub c2pa_error: Option<String>,
}

/// A C2PA manifest as read from the uploaded file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct C2paReport {
    /// `Trusted` (intact, signed by a certificate chaining to this
    /// server's CA), `Valid` (intact and well signed, signer not trusted)
    /// or `Invalid` (for instance a changed byte).
    pub validation_state: String,
    /// The claim generator, `"name version"`.
    pub claim_generator: Option<String>,
    /// The actions, e.g. `["c2pa.created"]`.
    pub actions: Vec<String>,
    /// The digital source type of the first action (an IPTC URI).
    pub digital_source_type: Option<String>,
    /// The model hash from Easel's generation assertion.
    pub model_hash: Option<String>,
    /// The watermark id of the manifest's soft-binding assertion.
    pub soft_binding: Option<String>,
    /// Validation failure codes (`signingCredential.untrusted`, …).
    pub errors: Vec<String>,
}

impl From<easel_media::C2paSummary> for C2paReport {
    fn from(s: easel_media::C2paSummary) -> Self {
        Self {
            validation_state: s.validation_state,
            claim_generator: s.claim_generator,
            actions: s.actions,
            digital_source_type: s.digital_source_type,
            model_hash: s.model_hash,
            soft_binding: s.soft_binding,
            errors: s.errors,
        }
    }
}

/// Scale and offset recovered by the watermark search.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DetectedTransform {
    /// The uploaded image's size over the delivered image's (0.5: halved).
    pub scale: f64,
    /// Pixels, modulo the tile's period (64 × scale).
    pub offset_x: f64,
    /// Pixels, modulo the tile's period (64 × scale).
    pub offset_y: f64,
}

/// The stored image a watermark points to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DetectedImage {
    /// `img_…`.
    pub id: String,
    /// Its full record: `GET` this path (`/v1/images/{id}`).
    pub url: String,
    /// The job that made it.
    pub job_id: String,
    /// The project that owns it.
    pub project: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Model name.
    pub model: String,
    /// Model content hash, `blake3:…`.
    pub model_hash: String,
}

/// Detects the watermark of an uploaded image.
#[utoipa::path(
    post,
    path = "/v1/watermark/detect",
    tag = "images",
    request_body(
        content_type = "image/png",
        description = "The image bytes (`image/png`, `image/jpeg` or `image/webp`), or a `multipart/form-data` form whose `image` field holds them"
    ),
    responses(
        (status = 200, description = "What the watermark says", body = DetectResponse),
        (status = 400, description = "`missing_image` (empty body or no `image` field), `invalid_image` (not a readable PNG, JPEG or WebP; truncated), `image_too_large` (over `limits.max_upload_pixels`) or `image_too_small` (a side under 96 pixels)", body = crate::error::ErrorBody),
        (status = 413, description = "`payload_too_large`: over `server.body_limit_bytes`", body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = crate::error::ErrorBody),
    )
)]
pub async fn detect_watermark(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    request: Request,
) -> Result<Json<DetectResponse>, ApiError> {
    let bytes = read_upload(&state, request).await?;
    let limits = DecodeLimits {
        max_pixels: state.config.limits.max_upload_pixels,
        max_bytes: state.config.server.body_limit_bytes,
        ..Default::default()
    };
    let anchor = trust_anchor(&state).await;
    let (reading, c2pa, c2pa_error) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let image: RgbImage =
            easel_media::decode_untrusted(&bytes, &limits).map_err(from_media_error)?;
        let min = easel_media::WATERMARK_MIN_DETECT_SIDE;
        if image.width.min(image.height) < min {
            return Err(ApiError::invalid(
                "image_too_small",
                "image",
                format!(
                    "the watermark cannot be read from a {}×{} image: each side must be at least {min} pixels",
                    image.width, image.height
                ),
            ));
        }
        let (c2pa, c2pa_error) = match easel_media::sniff_format(&bytes) {
            None => (None, None),
            Some(format) => match easel_media::read_c2pa(&bytes, format, anchor.as_deref()) {
                Ok(summary) => (summary.map(C2paReport::from), None),
                Err(e) => (None, Some(e.to_string())),
            },
        };
        Ok((easel_media::detect_watermark(&image), c2pa, c2pa_error))
    })
    .await
    .map_err(|e| ApiError::internal("detecting a watermark", e))??;
    let Some(WatermarkReading {
        payload,
        confidence,
        method,
        transform,
    }) = reading
    else {
        return Ok(Json(DetectResponse {
            watermarked: false,
            watermark_id: None,
            confidence: None,
            method: None,
            transform: None,
            image: None,
            c2pa,
            c2pa_error,
        }));
    };
    let id = payload.id();
    let image = visible_image(&state, &principal, &id).await?;
    Ok(Json(DetectResponse {
        watermarked: true,
        watermark_id: Some(id),
        confidence: Some(confidence),
        method: Some(method.as_str().into()),
        transform: transform.map(|t| DetectedTransform {
            scale: t.scale,
            offset_x: t.offset_x,
            offset_y: t.offset_y,
        }),
        image,
        c2pa,
        c2pa_error,
    }))
}

/// The PEM this server's C2PA manifests chain to: the configured
/// certificate chain, else the generated CA in `<data_dir>/c2pa/`; `None`
/// when neither can be read (manifests then read as `Valid` at best).
async fn trust_anchor(state: &AppState) -> Option<String> {
    let path = match &state.config.provenance.certificate {
        Some(chain) => chain.clone(),
        None => state.config.data_dir.join("c2pa/ca.pem"),
    };
    tokio::fs::read_to_string(path).await.ok()
}

/// The stored image with this watermark id, if the principal may see it.
async fn visible_image(
    state: &AppState,
    principal: &Principal,
    watermark_id: &str,
) -> Result<Option<DetectedImage>, ApiError> {
    let db = state.jobs.db();
    let Some(image) = db
        .find_image_by_watermark(watermark_id)
        .await
        .map_err(|e| ApiError::store("looking up a watermark id", e))?
    else {
        return Ok(None);
    };
    // Another project's image reads as an unknown id: no existence leak.
    if !principal.sees(&image.project) {
        return Ok(None);
    }
    Ok(Some(DetectedImage {
        url: format!("/v1/images/{}", image.id),
        project: image.project.to_string(),
        id: image.id.to_string(),
        job_id: image.job_id.to_string(),
        created_at: image.created_at.timestamp(),
        model: image.model,
        model_hash: image.model_hash,
    }))
}

/// The uploaded bytes: the body for an image content type, the `image`
/// field of a multipart form. Empty is `missing_image`.
async fn read_upload(state: &AppState, request: Request) -> Result<Bytes, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let bytes = if essence == "multipart/form-data" {
        let mut form = Multipart::from_request(request, state).await?;
        let mut found = None;
        while let Some(field) = form.next_field().await? {
            if field.name() == Some("image") {
                found = Some(field.bytes().await?);
                break;
            }
        }
        found.ok_or_else(|| missing_image("the form has no `image` field"))?
    } else if IMAGE_TYPES.contains(&essence) {
        Bytes::from_request(request, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large().with_param("image")
            } else {
                ApiError::new(ErrorKind::InvalidRequest, "invalid_body", r.body_text())
            }
        })?
    } else {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
            format!(
                "send the image as the body with Content-Type {} or as the `image` field \
                 of a multipart/form-data form, got `{}`",
                IMAGE_TYPES.join(", "),
                essence.chars().take(60).collect::<String>()
            ),
        ));
    };
    if bytes.is_empty() {
        return Err(missing_image("the image is empty"));
    }
    Ok(bytes)
}

fn missing_image(why: &str) -> ApiError {
    ApiError::invalid(
        "missing_image",
        "image",
        format!("{why}: send a PNG, JPEG or WebP image"),
    )
}
