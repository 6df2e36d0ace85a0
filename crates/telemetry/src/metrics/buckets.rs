//! The explicit bucket bounds of every histogram in the catalogue
//! (docs/observability.md). `+Inf` is implicit. Changing a layout changes
//! the series Prometheus stores: alert rules and dashboards read `le`.

/// `easel_http_request_duration_seconds`: 5 ms to 10 minutes (a
/// synchronous generation may be held open for minutes).
pub const HTTP_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// `easel_generation_duration_seconds`: dense around the realtime SLO
/// (10 s) and up to the batch SLO (120 s) and beyond.
pub const GENERATION_SECONDS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
    180.0, 300.0, 600.0,
];

/// `easel_stage_duration_seconds`: from half a millisecond (a C2PA
/// signature, one denoising step of a tiny model) to a long queue wait.
pub const STAGE_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// `easel_batch_images`: images per engine call.
pub const BATCH_IMAGES: &[f64] = &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0];

/// `easel_image_quality_score`: the scorer's cosine similarity of image and
/// prompt, dense where the bundled model's scores fall.
pub const QUALITY_SCORE: &[f64] = &[
    -0.2, -0.1, 0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 1.0,
];

/// `easel_model_load_seconds`.
pub const MODEL_LOAD_SECONDS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
