//! What every handler shares.

use std::sync::Arc;

use axum::http::HeaderMap;
use easel_core::{ImageId, ProjectId};
use easel_jobs::{Jobs, Models};

use crate::auth::ApiKeys;
use crate::signing::UrlSigner;
use easel_config::Config;

/// Shared state of the HTTP layer. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The job handle (store, queue, events).
    pub jobs: Jobs,
    /// The served models: names and defaults to validate requests against,
    /// load state for `/readyz` and `/v1/models`.
    pub models: Models,
    /// Model versions and rollouts.
    pub rollouts: easel_jobs::Rollouts,
    /// Prompt drift, where the prompt policy's embedder runs.
    pub drift: Option<crate::drift::Drift>,
    /// Accepted API keys.
    pub keys: Arc<ApiKeys>,
    /// Signs image links.
    pub signer: Arc<UrlSigner>,
    /// The prompt policy; `None` when `moderation.prompt_enabled` is off.
    pub prompt_policy: Option<Arc<easel_policy::prompt::PromptPolicy>>,
    /// This application's metrics, served at `/metrics` (the job system
    /// records into the same registry).
    pub metrics: easel_telemetry::metrics::Metrics,
    /// This process's worker when it runs one (roles `all` and `worker`),
    /// for `/readyz`: draining, open circuit breakers.
    pub worker: Option<easel_jobs::Worker>,
    /// The running task of each caller of the AUTOMATIC1111-compatible API.
    pub sd_tasks: crate::sdapi::Tasks,
}

impl AppState {
    /// The path of an image's content route.
    pub fn content_path(id: ImageId) -> String {
        format!("/v1/images/{id}/content")
    }

    /// The link a client gets for an image: a presigned S3 link straight to
    /// the bucket when `storage.presign` is on, else [`AppState::signed_url`]
    /// (the API proxies the bytes). Both expire after `urls.ttl_seconds`.
    pub async fn image_url(
        &self,
        image: &easel_store::Image,
        headers: &HeaderMap,
    ) -> Result<String, crate::error::ApiError> {
        self.image_link(image.id, &image.project, &image.object_key, headers)
            .await
    }

    /// [`AppState::image_url`] from an image's id, project and object key.
    pub async fn image_link(
        &self,
        id: ImageId,
        project: &ProjectId,
        object_key: &str,
        headers: &HeaderMap,
    ) -> Result<String, crate::error::ApiError> {
        if self.config.storage.presign {
            let ttl = std::time::Duration::from_secs(self.config.urls.ttl_seconds);
            if let Some(url) = self
                .jobs
                .blobs()
                .presigned_get(object_key, ttl)
                .await
                .map_err(|e| crate::error::ApiError::store("presigning an image link", e))?
            {
                return Ok(url);
            }
        }
        Ok(self.signed_url(id, project, headers))
    }

    /// A signed, expiring absolute link to an image's bytes. The base is
    /// `server.public_url`, or the request's `Host` over plain HTTP.
    /// The link names the image's project and the signature covers it: a
    /// link works only for an image of that project, and stops working
    /// when the image is deleted.
    pub fn signed_url(&self, id: ImageId, project: &ProjectId, headers: &HeaderMap) -> String {
        let path = Self::content_path(id);
        let signed = crate::signing::subject(&path, Some(project.as_str()));
        let query = format!(
            "project={project}&{}",
            self.signer.sign(&signed, self.jobs.db().now().timestamp())
        );
        let base = match &self.config.server.public_url {
            Some(base) => base.trim_end_matches('/').to_string(),
            None => {
                let host = headers
                    .get(axum::http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .filter(|h| !h.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| self.config.server.listen.to_string());
                format!("http://{host}")
            }
        };
        format!("{base}{path}?{query}")
    }
}
