//! The prompt policy of `[moderation]`, checked at the API's edge before a
//! job is stored.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use easel_policy::prompt::{Embedder, MiniLmEmbedder, PromptPolicy};

use super::cache::{EMBEDDERS, cached};
use crate::Config;

/// The prompt policy of `config.moderation`, or `None` when it is off.
pub fn prompt_policy(config: &Config) -> anyhow::Result<Option<Arc<PromptPolicy>>> {
    let m = &config.moderation;
    if !m.prompt_enabled {
        return Ok(None);
    }
    let mut rules = m.prompt.clone();
    let embedder: Option<Arc<dyn Embedder>> = match &m.semantic_model {
        Some(dir) if dir.exists() => Some(cached(&EMBEDDERS, dir, |dir| {
            MiniLmEmbedder::load(dir)
                .map(Arc::new)
                .with_context(|| format!("loading moderation.semantic_model {}", dir.display()))
        })?),
        // The shipped default is relative to the repository root: started
        // elsewhere, terms and patterns still apply and the log says the
        // semantic filter is off. A folder the operator named must exist.
        Some(dir) if dir.as_path() == Path::new(easel_policy::DEFAULT_PROMPT_MODEL) => {
            tracing::warn!(
                path = %dir.display(),
                "the semantic prompt filter is OFF: the bundled MiniLM encoder was not found \
                 relative to the working directory; run from the repository root or set \
                 moderation.semantic_model"
            );
            rules.concepts.clear();
            None
        }
        Some(dir) => anyhow::bail!(
            "moderation.semantic_model {} does not exist (unset it and clear \
             moderation.prompt.concepts to run without the semantic filter)",
            dir.display()
        ),
        None => {
            rules.concepts.clear();
            None
        }
    };
    let policy = PromptPolicy::new(rules, embedder)
        .context("building the prompt policy from [moderation.prompt]")?;
    Ok(Some(Arc::new(policy)))
}
