//! Prompt drift's figures: per hour and API process, the moments of the
//! prompts' embeddings, and a bounded sample of the prompts themselves.
//! The store keeps the vectors as JSON arrays and knows nothing of what
//! they mean.

use super::{Db, on_pool};
use crate::error::{Result, StoreError};
use crate::rows::{self, Columns};

const UPSERT_MOMENTS: &str = "INSERT INTO prompt_moments (window_start, process, count, sum, sum_sq) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (window_start, process) DO UPDATE \
     SET count = excluded.count, sum = excluded.sum, sum_sq = excluded.sum_sq";

const MOMENTS: &str = "SELECT window_start, count, sum, sum_sq FROM prompt_moments \
     WHERE window_start >= $1 AND window_start < $2";

const INSERT_SAMPLE: &str = "INSERT INTO prompt_samples \
     (window_start, process, seq, prompt, prompt_hash, embedding) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (window_start, process, seq) DO UPDATE \
     SET prompt = excluded.prompt, prompt_hash = excluded.prompt_hash, embedding = excluded.embedding";

const SAMPLES: &str = "SELECT prompt, prompt_hash, embedding FROM prompt_samples \
     WHERE window_start >= $1 AND window_start < $2 ORDER BY window_start, process, seq LIMIT $3";

/// One hour's moments from one process.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMoments {
    /// The hour's start, Unix milliseconds.
    pub window_start: i64,
    /// Prompts counted.
    pub count: u64,
    /// Sum of their embeddings.
    pub sum: Vec<f64>,
    /// Sum of their squared norms.
    pub sum_sq: f64,
}

/// One sampled prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSample {
    /// Its text, where kept.
    pub prompt: Option<String>,
    /// Its BLAKE3 hash (hex).
    pub prompt_hash: String,
    /// Its embedding.
    pub embedding: Vec<f32>,
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &'static str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, e))
}

impl Db {
    /// Records `process`'s totals for the hour starting at `window_start`
    /// (replacing what it recorded before for that hour).
    pub async fn upsert_prompt_moments(&self, process: &str, m: &StoredMoments) -> Result<()> {
        let sum = rows::to_json(&m.sum, "prompt_moments.sum")?;
        let count = i64::try_from(m.count).unwrap_or(i64::MAX);
        on_pool!(self, write, p => {
            sqlx::query(UPSERT_MOMENTS)
                .bind(m.window_start)
                .bind(process)
                .bind(count)
                .bind(sum)
                .bind(m.sum_sq)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Every process's moments of the hours starting in `[from, until)`
    /// (Unix milliseconds).
    pub async fn prompt_moments(&self, from: i64, until: i64) -> Result<Vec<StoredMoments>> {
        on_pool!(self, read, p => {
            let found = sqlx::query(MOMENTS).bind(from).bind(until).fetch_all(p).await?;
            found
                .iter()
                .map(|r| {
                    Ok(StoredMoments {
                        window_start: r.int("window_start")?,
                        count: u64::try_from(r.int("count")?).unwrap_or(0),
                        sum: parse(&r.text("sum")?, "prompt_moments.sum")?,
                        sum_sq: r.float("sum_sq")?,
                    })
                })
                .collect()
        })
    }

    /// Keeps one sampled prompt (`seq`: its slot within the hour and
    /// process; a later write to the slot replaces it).
    pub async fn insert_prompt_sample(
        &self,
        window_start: i64,
        process: &str,
        seq: u32,
        sample: &PromptSample,
    ) -> Result<()> {
        let embedding = rows::to_json(&sample.embedding, "prompt_samples.embedding")?;
        on_pool!(self, write, p => {
            sqlx::query(INSERT_SAMPLE)
                .bind(window_start)
                .bind(process)
                .bind(i64::from(seq))
                .bind(&sample.prompt)
                .bind(&sample.prompt_hash)
                .bind(embedding)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Sampled prompts of the hours starting in `[from, until)`, at most
    /// `limit`.
    pub async fn prompt_samples(
        &self,
        from: i64,
        until: i64,
        limit: u32,
    ) -> Result<Vec<PromptSample>> {
        on_pool!(self, read, p => {
            let found = sqlx::query(SAMPLES)
                .bind(from)
                .bind(until)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?;
            found
                .iter()
                .map(|r| {
                    Ok(PromptSample {
                        prompt: r.opt_text("prompt")?,
                        prompt_hash: r.text("prompt_hash")?,
                        embedding: parse(&r.text("embedding")?, "prompt_samples.embedding")?,
                    })
                })
                .collect()
        })
    }
}
