//! What the batch driver asks the server: whether the content policy
//! admits an item's prompt as it is submitted (as the endpoint would have
//! checked it; a policy that cannot answer leaves the item for the next
//! pass), the output and error files of a finished batch, and the
//! delivery of its completion webhook.

use easel_jobs::batches::{BatchHooks, HookFuture, ItemRequest, OutputFiles, Refusal};
use easel_store::{BatchRecord, NewFile};

use super::output::{self, Part};
use crate::state::AppState;

/// The server's side of the batch driver.
pub struct ServerHooks {
    /// The application.
    pub state: AppState,
    /// The client webhooks are sent with (its timeout is
    /// `batches.webhook_timeout_seconds`; no redirects).
    pub client: reqwest::Client,
}

impl BatchHooks for ServerHooks {
    fn admit<'a>(
        &'a self,
        batch: &'a BatchRecord,
        request: &'a ItemRequest,
    ) -> HookFuture<'a, Result<Option<serde_json::Value>, Refusal>> {
        Box::pin(async move {
            let actor = batch
                .user_id
                .clone()
                .unwrap_or_else(|| "anonymous".to_string());
            crate::responsible::check_prompt_as(&self.state, actor, &request.params.prompt)
                .await
                .map_err(|e| Refusal {
                    status: e.status().as_u16(),
                    code: e.code().to_string(),
                    message: e.message().to_string(),
                })
        })
    }

    fn output_files<'a>(
        &'a self,
        batch: &'a BatchRecord,
    ) -> HookFuture<'a, Result<OutputFiles, String>> {
        Box::pin(async move {
            let mut files = [None, None];
            for (slot, part) in files.iter_mut().zip([Part::Output, Part::Errors]) {
                let (bytes, lines) = output::size(&self.state, batch, part)
                    .await
                    .map_err(|e| e.message().to_string())?;
                if lines > 0 {
                    *slot = Some(NewFile {
                        id: super::new_id("file_"),
                        project: batch.project.clone(),
                        purpose: part.purpose().to_string(),
                        filename: format!("{}_{}.jsonl", batch.id, part.purpose()),
                        bytes,
                        object_key: None,
                        batch_id: Some(batch.id.clone()),
                        expires_at: None,
                    });
                }
            }
            let [out, err] = files;
            Ok((out, err))
        })
    }

    fn notify<'a>(&'a self, batch: &'a BatchRecord) -> HookFuture<'a, Result<(), String>> {
        Box::pin(super::webhook::send(&self.state, &self.client, batch))
    }
}
