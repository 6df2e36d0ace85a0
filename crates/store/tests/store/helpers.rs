//! Shared fixtures.

use easel_core::{GenerationParams, ImageId, ManualClock, OutputFormat, RawParams, Size, Tier};
use easel_store::{Db, NewImage, NewJob, StageTiming};
use tempfile::TempDir;

/// A database in its own temporary folder; the folder lives as long as this.
pub struct TestDb {
    pub db: Db,
    pub dir: TempDir,
    /// The database's clock: it stands still until a test advances it.
    pub clock: ManualClock,
}

/// Opens a fresh database, in a subfolder that does not exist yet (so
/// `Db::open` must create it), on a stopped [`ManualClock`].
pub async fn fresh_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let db = Db::open(dir.path().join("data/easel.db"))
        .await
        .unwrap()
        .with_clock(clock.shared());
    TestDb { db, dir, clock }
}

pub fn params(prompt: &str, n: u32) -> GenerationParams {
    GenerationParams::validate(
        RawParams {
            model: "easel-tiny".into(),
            prompt: prompt.into(),
            n: Some(n.into()),
            ..Default::default()
        },
        Size::new(64, 64).unwrap(),
        20,
        7.5,
        || 1234,
    )
    .unwrap()
}

pub fn new_job(tier: Tier, prompt: &str) -> NewJob {
    NewJob::new(tier, params(prompt, 1))
}

pub fn new_image(params: &GenerationParams, index: u32) -> NewImage {
    let id = ImageId::new();
    NewImage {
        id,
        index_in_job: index,
        prompt: params.prompt.clone(),
        negative_prompt: params.negative_prompt.clone(),
        seed: params.image_seed(index),
        params: params.clone(),
        model: params.model.clone(),
        model_hash: "b3:0123456789abcdef".into(),
        sampler: "euler".into(),
        schedule: "default".into(),
        steps: params.steps,
        guidance: params.guidance_scale,
        width: params.size.width,
        height: params.size.height,
        format: OutputFormat::Png,
        byte_size: 1234,
        sha256: "ab".repeat(32),
        object_key: format!("images/2026/11/26/{id}.png"),
        timings: vec![
            StageTiming {
                stage: "denoise".into(),
                seconds: 0.5,
            },
            StageTiming {
                stage: "encode".into(),
                seconds: 0.01,
            },
        ],
        warnings: vec![],
        watermark_id: None,
        perceptual_hash: None,
        quality_score: None,
        request_id: None,
        moderation: None,
        flags: vec![],
    }
}
