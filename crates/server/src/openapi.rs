//! The OpenAPI document served at `/openapi.json` and browsed at `/docs`.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::routes::{
    admin, audit, batch_control, batch_results, batches, content, files, health, image_list,
    images, jobs, keys, loras, me, models, projects, review, rollouts, sdapi, sdapi_info, usage,
    watermark, workers,
};

/// The API description, built from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Easel",
        description = "Image generation with an OpenAI-compatible Images API, native async jobs \
                       and stored, reproducible image records. Every error has the shape \
                       `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}` with a stable `code`. \
                       Backpressure: a submission to a full queue tier answers 429 `queue_full` \
                       with `Retry-After` (whole seconds, from the current drain rate). Deadlines: \
                       `X-Easel-Timeout: <seconds>` on job creation and the synchronous image \
                       routes; a job still queued at its deadline fails with `deadline_exceeded`. \
                       Correlation: every response carries `x-request-id` (the client's, when it \
                       is 1–128 characters of `[A-Za-z0-9._:-]`, else a generated one); jobs and \
                       images record it as `request_id`, and a W3C `traceparent` is continued. \
                       Tenancy: a key acts in one project and sees only that project's jobs and \
                       images (another project's answer 404 like unknown ids); admin keys see all. \
                       Rate limits answer 429 `rate_limit_exceeded` with `Retry-After` and \
                       OpenAI's `x-ratelimit-*` headers."
    ),
    paths(
        images::create_generation,
        images::create_edit,
        images::create_variation,
        sdapi::txt2img,
        sdapi::img2img,
        sdapi::interrupt,
        sdapi::skip,
        sdapi_info::progress,
        sdapi_info::get_options,
        sdapi_info::set_options,
        sdapi_info::sd_models,
        loras::sd_loras,
        loras::refresh_loras,
        loras::refresh_checkpoints,
        sdapi_info::samplers,
        sdapi_info::schedulers,
        sdapi_info::scripts,
        sdapi_info::png_info,
        jobs::create_job,
        jobs::get_job,
        jobs::list_jobs,
        jobs::cancel_job,
        jobs::job_events,
        content::get_image,
        content::get_image_content,
        content::delete_image,
        content::set_legal_hold,
        watermark::detect_watermark,
        files::create_file,
        files::list_files,
        files::get_file,
        files::delete_file,
        files::get_file_content,
        batches::create_batch,
        batches::list_batches,
        batches::get_batch,
        batches::cancel_batch,
        batches::approve_batch,
        batches::update_batch,
        batch_control::pause_batch,
        batch_control::resume_batch,
        batch_results::get_manifest,
        batch_results::get_export,
        models::list_models,
        models::get_model,
        loras::list_loras,
        usage::get_usage,
        me::get_me,
        image_list::list_images,
        admin::load_model,
        admin::unload_model,
        audit::list_audit,
        workers::list_workers,
        workers::drain_worker,
        projects::create_project,
        projects::list_projects,
        projects::get_project,
        projects::update_project,
        keys::create_key,
        keys::list_keys,
        keys::get_key,
        keys::revoke_key,
        keys::rotate_key,
        review::next_item,
        review::record_verdict,
        review::review_stats,
        rollouts::register_version,
        rollouts::create_rollout,
        rollouts::list_rollouts,
        rollouts::get_rollout,
        rollouts::promote_rollout,
        rollouts::abort_rollout,
        health::healthz,
        health::readyz,
    ),
    components(schemas(
        crate::dto::images::CreateImageRequest,
        crate::dto::loras::LoraRequest,
        crate::routes::loras::LoraList,
        crate::routes::loras::LoraObject,
        crate::routes::loras::PoolEntry,
        crate::routes::loras::PoolLora,
        crate::dto::images::ImagesResponse,
        crate::dto::images::ImageData,
        crate::dto::jobs::CreateJobRequest,
        crate::dto::jobs::Job,
        crate::dto::jobs::JobList,
        crate::dto::batches::FileObject,
        crate::dto::batches::FileList,
        crate::dto::batches::FileDeleted,
        crate::dto::batches::CreateBatchRequest,
        crate::dto::batches::BatchObject,
        crate::dto::batches::BatchList,
        crate::dto::batches::RequestCounts,
        crate::dto::batches::BatchTemplate,
        crate::dto::batches::SpendObject,
        crate::dto::batches::UpdateBatchRequest,
        audit::AuditList,
        watermark::DetectResponse,
        watermark::DetectedImage,
        watermark::DetectedTransform,
        watermark::C2paReport,
        audit::AuditEventDto,
        workers::WorkerList,
        workers::WorkerObject,
        content::DeletedImage,
        content::LegalHoldRequest,
        content::LegalHoldState,
        usage::UsageReport,
        me::Me,
        image_list::ImageList,
        usage::UsageEntry,
        projects::ProjectObject,
        projects::ProjectList,
        projects::CreateProject,
        projects::UpdateProject,
        keys::KeyObject,
        keys::KeyList,
        keys::CreateKey,
        keys::RotateKey,
        review::ReviewItemObject,
        review::VerdictBody,
        review::ReviewStats,
        review::VersionReview,
        review::ReviewerCounts,
        rollouts::VersionObject,
        rollouts::RegisterVersion,
        rollouts::RolloutObject,
        rollouts::RolloutList,
        models::ModelVersions,
        sdapi_info::PngInfoRequest,
        crate::error::ErrorBody,
        crate::error::ErrorDetail,
    )),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    tags(
        (name = "images", description = "OpenAI-compatible image routes and stored images"),
        (name = "jobs", description = "Asynchronous jobs and their progress events"),
        (name = "batches", description = "OpenAI's Batch API: upload a JSONL file of image requests, run it as a batch in the batch tier, read the results file"),
        (name = "models", description = "Served models"),
        (name = "usage", description = "Images, device time and cost per project, key, model or day"),
        (name = "admin", description = "Administration (scope `admin`): the warm model pool, the worker registry, the audit log, projects and keys"),
        (name = "review", description = "Human review of sampled and flagged images (scope `review`)"),
        (name = "rollouts", description = "Model versions and guarded canary rollouts (scope `admin`)"),
        (name = "a1111", description = "The AUTOMATIC1111 web UI's API (`/sdapi/v1`) for its existing clients: same keys (bearer, or HTTP Basic with the key as password), limits, policy and pipeline as the rest (docs/a1111.md)"),
        (name = "auth", description = "Who the caller is: project and scopes"),
        (name = "health", description = "Probes"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer API key scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
